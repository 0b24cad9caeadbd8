/* The control protocol (docs/PROTOCOL.md), in one place for both sides.
 *
 * One JSON object per line. A request is at most PROTO_LINE_MAX bytes including the '\n';
 * a reply or streamed line at most PROTO_REPLY_MAX (`list` of a few hundred bindings is
 * larger than 64 KiB).
 * Request:  {"v":1, "cmd":"add", ...arguments...}
 * Reply:    {"v":1, "ok":true, ...result...}
 *           {"v":1, "ok":false, "error":"sentence for people", "code":"not-found"}
 * Streams (logs -f, connect) answer with one {"v":1,"event":{...}} line per event.
 *
 * Only this module encodes and decodes the wire format; every key, command and value is
 * spelled by its name in protocol-keys.h, which both sides use. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "protocol-keys.h"

#define PROTO_VERSION 1
#define PROTO_LINE_MAX (64 * 1024)
#define PROTO_REPLY_MAX (16 * 1024 * 1024)

enum proto_code {
        PROTO_CODE_OK,
        PROTO_CODE_EXISTS,
        PROTO_CODE_NOT_FOUND,
        PROTO_CODE_INVALID,
        PROTO_CODE_CONFIG_OWNED,
        PROTO_CODE_PERMISSION,
        PROTO_CODE_UNAVAILABLE,
        PROTO_CODE_INTERNAL,
        _PROTO_CODE_MAX,
};
const char *proto_code_to_string(enum proto_code c);
enum proto_code proto_code_from_string(const char *s);   /* unknown -> PROTO_CODE_INTERNAL */

/* One tunnel of a binding (its relay, in direct mode): an item of the binding's "relays". */
struct proto_relay {
        char *server;              /* "host:port", "[v6]:port" */
        char *state;               /* connecting|up|backoff|failed */
        char *last_error;
        uint64_t connected_since;  /* realtime usec, 0 = null */
        char *tunnel_id;           /* API mode: this tunnel's id at the API; NULL (direct mode) = null */
        uint16_t relay_port;       /* the port forwarded on the relay; 0 = unknown (null) */
};

/* What a binding looks like on the wire: the `list --json` / `show --json` object.
 * Strings are owned by the struct (proto_binding_clear frees them); NULL means JSON null. */
struct proto_binding {
        char *name;
        char *source;              /* "config" | "runtime" */
        char *type;                /* http|https|tcp|tls */
        char *host;
        uint16_t port;
        char *display_name;
        bool protected_;
        char *username;            /* never the password: it is not sent back */
        uint16_t remote_port;      /* 0 = unset */
        char *remote_host;         /* direct mode: the tcpip-forward address asked; NULL = localhost */
        char *state;               /* resolving|connecting|up|backoff|failed|removing */
        char *public_url;
        char *socket_id;
        char *tunnel_id;
        uint16_t relay_port;       /* 0 = unknown (JSON null) */
        uint64_t connected_since;  /* realtime usec, 0 = null */
        uint64_t reconnects;
        uint64_t connections_active;
        uint64_t connections_total;
        uint64_t connections_refused;  /* relay channels refused over max_connections */
        uint64_t max_connections;  /* 0 = no limit */
        uint64_t bytes_in;
        uint64_t bytes_out;
        char *last_error;
        uint64_t local_errors;
        char *last_local_error;    /* kept after the service is back; NULL = none yet */
        bool local_failing;        /* no local connect succeeded since last_local_error */
        char *cipher;              /* negotiated with the relay while up, else NULL */
        char *mac;                 /* NULL too when the cipher is AEAD (no separate MAC) */
        uint64_t next_attempt;     /* realtime usec, 0 = null */
        char *defined_at;          /* "file:line" for config bindings, the state file for runtime ones */
        uint64_t tunnels_up;       /* how many of the n_relays tunnels are up */
        struct proto_relay *relays;   /* one per tunnel; the count is "tunnels" */
        size_t n_relays;
};
void proto_binding_clear(struct proto_binding *b);
cJSON *proto_binding_to_json(const struct proto_binding *b);
/* Returns 0, or -EINVAL with *error set to a sentence (caller frees) naming the bad key. */
int proto_binding_from_json(const cJSON *o, struct proto_binding *b, char **error);

/* A local forward on the wire (forward_list's items, forward_add's result); NULL = null. */
struct proto_forward {
        char *name;
        char *source;              /* "config" | "runtime" */
        char *listen;
        char *target;
        char *state;               /* connecting|up|backoff|failed */
        uint64_t connected_since;  /* realtime usec, 0 = null */
        uint64_t reconnects;
        uint64_t connections_active;
        uint64_t connections_total;
        uint64_t connections_refused;
        uint64_t connections_unserved;
        uint64_t bytes_in;
        uint64_t bytes_out;
        char *last_error;
        char *last_refusal;
        uint64_t next_attempt;     /* realtime usec, 0 = null */
        char *defined_at;
};
void proto_forward_clear(struct proto_forward *f);
cJSON *proto_forward_to_json(const struct proto_forward *f);

/* What `add` carries: the settings of a new binding. */
struct proto_add {
        char *name;
        char *host;                /* NULL = default */
        uint16_t port;
        char *type;                /* NULL = default */
        char *display_name;
        bool protected_;
        char *username;
        char *password;
        char *socket_id;
        uint16_t remote_port;
        uint64_t max_connections;  /* 0 = no limit (key absent) */
        char *remote_host;
        bool remote_port_any;      /* "remote_port": 0, the relay chooses (direct mode) */
        char *edge_log;            /* "auto" | "yes" | "no"; NULL = auto */
        uint64_t tunnels;          /* API mode: 1-8; 0 = 1 (key absent) */
};
void proto_add_clear(struct proto_add *a);
cJSON *proto_add_to_json(const struct proto_add *a);
/* Also checks the name (binding_name_valid), the type and that no unknown key is present. */
int proto_add_from_json(const cJSON *o, struct proto_add *a, char **error);

/* True for the binding types the protocol knows: http, https, tcp, tls. */
bool proto_type_valid(const char *type);

/* One entry of `logs`: {"time","priority","binding","event","message"}; NULL = JSON null. */
struct proto_event {
        uint64_t time;             /* realtime usec */
        char *priority;            /* "debug"|"info"|"notice"|"warning"|"error" */
        char *binding;
        char *event;
        char *message;
};
void proto_event_clear(struct proto_event *e);
cJSON *proto_event_to_json(const struct proto_event *e);
int proto_event_from_json(const cJSON *o, struct proto_event *e, char **error);
/* Wraps an event object (taking ownership) as a streamed line: {"v":1,"event":{...}}. */
cJSON *proto_event_line(cJSON *event);

/* Requests. proto_request_new() returns {"v":1,"cmd":cmd}; add arguments with cJSON_Add*. */
cJSON *proto_request_new(const char *cmd);
/* Parses one request line (without the '\n'). On success *ret owns the object and *cmd
 * points into it. On failure returns -EINVAL and *error is a sentence (caller frees). */
int proto_request_parse(const char *line, size_t len, cJSON **ret, const char **cmd, char **error);

/* o[key] = the RFC 3339 time of usec (CLOCK_REALTIME), or null when usec is 0. */
void proto_add_time_or_null(cJSON *o, const char *key, uint64_t usec);

/* Typed argument getters: a missing key gives the default; a key of the wrong type is an
 * error (-EINVAL, *error set). Strings returned point into the object. */
int proto_get_string(const cJSON *o, const char *key, bool required, const char **ret, char **error);
int proto_get_bool(const cJSON *o, const char *key, bool def, bool *ret, char **error);
int proto_get_uint(const cJSON *o, const char *key, uint64_t max, uint64_t def, uint64_t *ret, char **error);
/* The lax getter for what a reader only shows: the string at key (pointing into o), or NULL
 * when o is not an object, the key is absent, or it is not a string. */
const char *proto_str_of(const cJSON *o, const char *key);

/* Adds key: the RFC 3339 form of a CLOCK_REALTIME usec time, or null for 0 (how the
 * protocol writes every time: a binding's, an event's, status's). */
void proto_add_time_or_null(cJSON *o, const char *key, uint64_t usec);

/* Replies. proto_reply_ok() returns {"v":1,"ok":true}; add the result to it. */
cJSON *proto_reply_ok(void);
cJSON *proto_reply_error(enum proto_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a message the caller built: takes ownership of message (freed here). */
cJSON *proto_reply_error_take(enum proto_code code, char *message);
/* Parses a reply line, or a streamed {"v":1,"event":{...}} line. Returns 0 with *ret owning the object (ok or not), or -EINVAL with
 * *error set when the line is not a well-formed reply. */
int proto_reply_parse(const char *line, size_t len, cJSON **ret, char **error);
/* For a parsed reply: true if ok; else *code and *message (pointing into the object). */
bool proto_reply_is_ok(const cJSON *reply, enum proto_code *code, const char **message);

/* Serializes o as one line: compact JSON plus '\n'. Caller frees. Returns NULL if the
 * encoding would exceed PROTO_REPLY_MAX (a sender of requests checks PROTO_LINE_MAX). */
char *proto_encode_line(const cJSON *o, size_t *len);

/* For _cleanup_(proto_json_freep) cJSON *o = ...; */
static inline void proto_json_freep(cJSON **p) {
        cJSON_Delete(*p);
}
