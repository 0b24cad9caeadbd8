/* The configuration (SPEC §3): defaults, then parse (inih), then validate.
 * Only conf.c includes inih. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define CONF_DEFAULT_PATH "/etc/mysocketd/mysocketd.ini"
/* A config file, drop-in or runtime binding larger than this is refused. */
#define CONF_FILE_MAX (1u << 20)

enum host_key_check {
        HOST_KEY_CHECK_STRICT,
        HOST_KEY_CHECK_ACCEPT_NEW,
        HOST_KEY_CHECK_PINNED,       /* conf.host_key_fingerprint holds "SHA256:..." */
        _HOST_KEY_CHECK_MAX,
};

/* The most tunnels one binding may ask for (`tunnels =`, API mode). */
#define CONF_TUNNELS_MAX 8

/* One relay of `[ssh] server = a, b:2222`. */
#define CONF_RELAYS_MAX 8
struct relay_conf {
        char *host;                  /* brackets removed from IPv6 literals */
        uint16_t port;               /* 0: the [ssh] port */
};

enum binding_source {
        BINDING_SOURCE_CONFIG,       /* mysocketd.ini or conf.d: cannot be removed at run time */
        BINDING_SOURCE_RUNTIME,      /* state_dir/bindings.d/NAME.ini, from `mysocketctl add` */
};

/* edge_log: read the relay's log lines on a shell session; auto = only in API mode. */
enum { EDGE_LOG_AUTO, EDGE_LOG_YES, EDGE_LOG_NO };
const char *conf_edge_log_to_string(int e);          /* "auto", "yes", "no" */
int conf_edge_log_from_string(const char *s);        /* or -EINVAL */

struct binding_conf {
        char *name;
        char *host;                  /* default "127.0.0.1" */
        uint16_t port;               /* required */
        enum socket_type type;       /* default http */
        char *display_name;          /* NULL: "NAME on HOSTNAME" */
        bool protected_;
        char *username;
        char *password;
        char *socket_id;
        uint16_t remote_port;        /* direct mode: required; 0 = unset */
        bool remote_port_any;        /* remote_port = 0 was given: the relay chooses (direct mode) */
        char *remote_host;           /* direct mode: the tcpip-forward address; NULL = "localhost" */
        char *public_url_pattern;    /* POSIX ERE; its first group in a relay log line is public_url */
        unsigned max_connections;    /* open relay channels at once; 0 = no limit */
        unsigned tunnels;            /* API mode: tunnels (SSH sessions) serving the socket, 1-CONF_TUNNELS_MAX; 0 = 1 */
        int edge_log;                /* EDGE_LOG_AUTO (0), EDGE_LOG_YES, EDGE_LOG_NO */

        enum binding_source source;
        char *file;                  /* where it is defined */
        unsigned line;               /* line of its [binding "NAME"] header */
};

/* [forward "NAME"]: a local forward (like `ssh -L`), SPEC §10. Names follow the binding
 * rule; runtime ones are in STATE_DIR/forwards.d/NAME.ini. */
struct forward_conf {
        char *name;
        char *listen;                /* "127.0.0.1:5433" or "[::1]:5433" (numeric, parse_listen_address) */
        char *target_host;           /* as seen from the relay: a name or an address (no brackets) */
        uint16_t target_port;
        enum binding_source source;
        char *file;
        unsigned line;
        bool bad_value;              /* a value was reported as wrong: no "missing" on top */
};

struct config {
        /* [daemon] */
        char *state_dir;             /* /var/lib/mysocketd */
        char *control_socket;        /* /run/mysocketd/control.sock */
        char *control_group;         /* mysocketd */
        int log_level;               /* LOG_INFO */
        int log_format;              /* enum log_format: LOG_FORMAT_TEXT */
        char *metrics_listen;        /* "127.0.0.1:9431", "[::1]:9431"; NULL = no HTTP listener */

        /* [api]: present => API mode */
        bool api;
        char *api_url;               /* https://api.mysocket.io */
        char *api_email;
        char *api_password_file;
        char *api_token_file;

        /* [ssh] */
        char *ssh_server;            /* ssh.mysocket.io; the first relay of the list */
        struct relay_conf ssh_relays[CONF_RELAYS_MAX];   /* every relay of [ssh] server */
        size_t n_ssh_relays;         /* 0: just ssh_server at ssh_port (the default) */
        uint16_t ssh_port;           /* 22 */
        char *ssh_user;              /* NULL: from the API (required in direct mode) */
        char *identity_file;         /* /etc/mysocketd/id_ed25519 */
        char *known_hosts;           /* STATE_DIR/known_hosts */
        enum host_key_check host_key_check;   /* accept-new */
        char *host_key_fingerprint;  /* "SHA256:..." when pinned */
        unsigned keepalive_interval; /* 15 s */
        unsigned keepalive_count;    /* 3 */
        char *ssh_proxy;             /* http://[user:pass@]host:port, socks5[h]://host:port; NULL = none.
                                      * May hold a password: never logged or shown as it is */

        /* [backoff], seconds */
        unsigned backoff_initial;    /* 1 */
        unsigned backoff_max;        /* 300 */
        unsigned stable_after;       /* 60 */

        struct binding_conf **bindings;
        size_t n_bindings;
        struct forward_conf **forwards;
        size_t n_forwards;

        char *path;                  /* the main file this was loaded from */
};

/* Loads the main file, then its conf.d/ *.ini in name order (conf.d beside the main
 * file), then the runtime bindings in STATE_DIR/bindings.d/ *.ini. Every problem is
 * appended to `errors` as "FILE:LINE: [section] key: what is wrong"; a problem in a runtime
 * binding file is appended to `warnings` instead and that binding is skipped (the file is
 * kept). Returns 0 and *ret on success, -EINVAL if errors is non-empty (nothing in *ret),
 * other negative errno when the main file cannot be read (also described in errors). */
int conf_load(const char *path, struct config **ret, struct strv *errors, struct strv *warnings);
void conf_free(struct config *c);

/* Checks one binding against the config it would join (mode-dependent rules: remote_port
 * in direct mode, protected needs username+password and type http/https, values that
 * cannot be written back to INI). Appends sentences to errors, each prefixed with
 * `[binding "NAME"] key: `. c == NULL skips the mode rules; host == NULL means the
 * default host. Returns 0 or -EINVAL. */
int conf_binding_validate(const struct config *c, const struct binding_conf *b, struct strv *errors);

/* The binding of list[0..n) (other than b's namesake) that asks the relay for b's
 * remote_port, or NULL: in direct mode every binding shares the one relay. */
const struct binding_conf *conf_remote_port_clash(struct binding_conf *const *list, size_t n,
                                                  const struct binding_conf *b);

/* The INI text of a runtime binding file: a comment, [binding "NAME"] and a line for every
 * set field; conf_load reads back an equal binding when b passed conf_binding_validate.
 * Caller frees. */
char *conf_binding_to_ini(const struct binding_conf *b);

/* Deep copy / compare (compare ignores source, file and line; a NULL host equals
 * "127.0.0.1" and an empty string equals NULL, as "key =" leaves a key unset). */
struct binding_conf *conf_binding_dup(const struct binding_conf *b);
bool conf_binding_equal(const struct binding_conf *a, const struct binding_conf *b);
/* How many tunnels b wants: its `tunnels`, 1 when unset. */
unsigned conf_binding_tunnels(const struct binding_conf *b);
void conf_binding_free(struct binding_conf *b);

/* conf-forward.c: one forward's checks (missing or unsafe values), sentences appended to
 * errors as `[forward "NAME"] key: ...`; returns 0 or -EINVAL. */
int conf_forward_validate(const struct forward_conf *f, struct strv *errors);
/* Parses "host:port" / "[v6]:port" (a target); 0, or -EINVAL with *why (caller frees). */
int conf_forward_parse_target(const char *v, char **host, uint16_t *port, char **why);
/* "host:port", IPv6 in brackets (caller frees). */
char *conf_forward_target(const struct forward_conf *f);
/* The forward of list[0..n) other than f's namesake that listens on f's address, or NULL. */
const struct forward_conf *conf_forward_listen_clash(struct forward_conf *const *list, size_t n,
                                                     const struct forward_conf *f);
/* The INI text of STATE_DIR/forwards.d/NAME.ini (caller frees). */
char *conf_forward_to_ini(const struct forward_conf *f);
struct forward_conf *conf_forward_dup(const struct forward_conf *f);
bool conf_forward_equal(const struct forward_conf *a, const struct forward_conf *b);   /* ignores source, file, line */
void conf_forward_free(struct forward_conf *f);

/* How many relays [ssh] server lists (at least 1), and relay i's host and port. */
size_t conf_relay_count(const struct config *c);
void conf_relay(const struct config *c, size_t i, const char **host, uint16_t *port);
/* An [ssh] proxy URL in parts (conf_proxy_parse); user and password NULL when absent. */
struct conf_proxy {
        char *scheme;                /* "http", "socks5" or "socks5h" */
        char *host;                  /* IPv6 without brackets */
        uint16_t port;
        char *user;
        char *password;
};
/* Parses scheme://[user[:password]@]host:port[/]. Returns 0 and *ret (conf_proxy_clear it),
 * -EPROTONOSUPPORT for another scheme, -EINVAL otherwise. */
int conf_proxy_parse(const char *url, struct conf_proxy *ret);
/* Frees the parts and wipes the password. */
void conf_proxy_clear(struct conf_proxy *p);
/* What may be shown of a proxy URL, never its credentials: "host:port" (IPv6 in brackets)
 * for sentences, "scheme://host:port" for status. Caller frees. */
char *conf_proxy_name(const char *url);
char *conf_proxy_display(const char *url);
/* Registers (add) or forgets the config's own secrets with scrub.h while it is in force:
 * the [ssh] proxy password. */
void conf_scrub_secrets(const struct config *c, bool add);

/* Settings that, when changed by a reload, require every tunnel to restart ([ssh], [api]). */
bool conf_transport_equal(const struct config *a, const struct config *b);
