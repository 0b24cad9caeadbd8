/* The config's key table, {section, key, parser, offset}, and the parsers of its values:
 * each turns one value's text into its field, or says what is wrong with it. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base64.h"
#include "conf-internal.h"
#include "conf.h"
#include "log.h"
#include "scrub.h"
#include "util.h"

#define FIELD(base, k, type) ((type *) ((char *) (base) + (k)->offset))

static char *parse_string(const struct key *k, const char *v, void *base) {
        char **p = FIELD(base, k, char *);
        free(*p);
        *p = xstrdup(v);
        return NULL;
}

static char *parse_path(const struct key *k, const char *v, void *base) {
        if (v[0] != '/')
                return xasprintf("\"%s\" is not an absolute path", v);
        return parse_string(k, v, base);
}

static char *parse_url(const struct key *k, const char *v, void *base) {
        if ((strncmp(v, "http://", 7) != 0 || !v[7]) && (strncmp(v, "https://", 8) != 0 || !v[8]))
                return xasprintf("\"%s\" is not an http:// or https:// URL", v);
        return parse_string(k, v, base);
}

/* A host as people write it in URLs: an IPv6 address may come in brackets, which go. The
 * relay is checked here; a binding's host with the rest of the binding. */
static char *parse_host(const struct key *k, const char *v, void *base) {
        size_t len = strlen(v);
        _cleanup_(freep) char *bare = v[0] == '[' && len > 2 && v[len - 1] == ']' ? strndup(v + 1, len - 2) : NULL;
        struct in6_addr a6;
        if (bare && inet_pton(AF_INET6, bare, &a6) == 1)
                v = bare;
        if (k->section == SECTION_SSH) {
                char *why = conf_host_problem(v);
                if (why)
                        return why;
        }
        return parse_string(k, v, base);
}

/* One relay of [ssh] server: host, host:port, [v6]:port, [v6] or a bare IPv6 literal. */
static char *parse_relay(const char *v, struct relay_conf *ret) {
        _cleanup_(freep) char *host = NULL;
        const char *port = NULL;
        struct in6_addr a6;
        if (v[0] == '[') {
                const char *end = strchr(v, ']');
                if (!end || (end[1] && end[1] != ':'))
                        return xasprintf("\"%s\" is not [IPV6] or [IPV6]:PORT", v);
                host = strndup(v + 1, (size_t) (end - v - 1));
                if (inet_pton(AF_INET6, host, &a6) != 1)
                        return xasprintf("\"%s\" is not an IPv6 address", host);
                port = end[1] ? end + 2 : NULL;
        } else if (strchr(v, ':') && strchr(v, ':') != strrchr(v, ':')) {
                host = xstrdup(v);              /* a bare IPv6 literal: no port */
        } else {
                const char *colon = strchr(v, ':');
                host = colon ? strndup(v, (size_t) (colon - v)) : xstrdup(v);
                port = colon ? colon + 1 : NULL;
        }
        char *why = conf_host_problem(host);
        if (why)
                return why;
        ret->port = 0;
        if (port && parse_port(port, &ret->port) < 0)
                return xasprintf("\"%s\" is not a port (1-65535)", port);
        ret->host = host;
        host = NULL;
        return NULL;
}

/* [ssh] server: one or more relays, comma-separated; each binding holds its forward on
 * every one of them. ssh_server is the first one's host. */
static char *parse_servers(const struct key *k, const char *v, void *base) {
        struct config *c = base;
        struct relay_conf relays[CONF_RELAYS_MAX] = {};
        size_t n = 0;
        char *why = NULL;
        _cleanup_(freep) char *copy = xstrdup(v);
        (void) k;
        for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                item += strspn(item, " \t");
                size_t len = strlen(item);
                while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
                        item[--len] = 0;
                if (n == CONF_RELAYS_MAX) {
                        why = xasprintf("more than %u relays", CONF_RELAYS_MAX);
                        break;
                }
                if ((why = parse_relay(item, &relays[n])))
                        break;
                n++;
        }
        if (!why && n == 0)
                why = xstrdup("no relay given");
        if (why) {
                for (size_t i = 0; i < n; i++)
                        free(relays[i].host);
                return why;
        }
        for (size_t i = 0; i < c->n_ssh_relays; i++)
                free(c->ssh_relays[i].host);
        memcpy(c->ssh_relays, relays, sizeof(relays));
        c->n_ssh_relays = n;
        free(c->ssh_server);
        c->ssh_server = xstrdup(relays[0].host);
        return NULL;
}

static char *parse_port16(const struct key *k, const char *v, void *base) {
        if (parse_port(v, FIELD(base, k, uint16_t)) < 0)
                return xasprintf("\"%s\" is not a port (1-65535)", v);
        return NULL;
}

/* 1-65535, or 0: the relay chooses (direct mode; the binding then shows the port it got). */
static char *parse_remote_port(const struct key *k, const char *v, void *base) {
        struct binding_conf *b = base;
        b->remote_port_any = streq(v, "0");
        if (b->remote_port_any) {
                b->remote_port = 0;
                return NULL;
        }
        if (parse_port(v, &b->remote_port) < 0)
                return xasprintf("\"%s\" is not a port (1-65535), nor 0 (the relay chooses)", v);
        return NULL;
}

static char *parse_unsigned(const struct key *k, const char *v, void *base) {
        if (parse_uint(v, k->min, k->max, FIELD(base, k, unsigned)) < 0)
                return xasprintf("\"%s\" is not a number from %u to %u", v, k->min, k->max);
        return NULL;
}

static char *parse_boolean(const struct key *k, const char *v, void *base) {
        if (parse_bool(v, FIELD(base, k, bool)) < 0)
                return xasprintf("\"%s\" is not a boolean (yes/no, true/false, on/off, 1/0)", v);
        return NULL;
}

static char *parse_log_level(const struct key *k, const char *v, void *base) {
        int l = log_level_from_string(v);
        if (l < 0)
                return xasprintf("\"%s\" is not a log level (debug, info, notice, warning, error)", v);
        *FIELD(base, k, int) = l;
        return NULL;
}

static char *parse_log_format(const struct key *k, const char *v, void *base) {
        int f = log_format_from_string(v);
        if (f < 0)
                return xasprintf("\"%s\" is not a log format (text, json)", v);
        *FIELD(base, k, int) = f;
        return NULL;
}

/* Empty means off, as the default; anything else must be a numeric address to listen on. */
static char *parse_listen(const struct key *k, const char *v, void *base) {
        struct sockaddr_storage ss;
        unsigned len;
        char **p = FIELD(base, k, char *);
        if (v[0] && parse_listen_address(v, &ss, &len) < 0)
                return xasprintf("\"%s\" is not an address to listen on (IPV4:PORT or [IPV6]:PORT, "
                                 "e.g. 127.0.0.1:9431 or [::1]:9431; empty = off)", v);
        free(*p);
        *p = v[0] ? xstrdup(v) : NULL;
        return NULL;
}

static char *parse_forward_listen(const struct key *k, const char *v, void *base) {
        struct sockaddr_storage ss;
        unsigned len;
        if (parse_listen_address(v, &ss, &len) < 0)
                return xasprintf("\"%s\" is not an address to listen on (IPV4:PORT or [IPV6]:PORT, "
                                 "e.g. 127.0.0.1:5433)", v);
        return parse_string(k, v, base);
}

static char *parse_target(const struct key *k, const char *v, void *base) {
        struct forward_conf *f = base;
        char *why = NULL;
        (void) k;
        free(f->target_host);
        f->target_host = NULL;
        return conf_forward_parse_target(v, &f->target_host, &f->target_port, &why) < 0 ? why : NULL;
}

const char *conf_edge_log_to_string(int e) {
        return e == EDGE_LOG_YES ? "yes" : e == EDGE_LOG_NO ? "no" : "auto";
}

int conf_edge_log_from_string(const char *s) {
        return streq(s, "auto") ? EDGE_LOG_AUTO : streq(s, "yes") ? EDGE_LOG_YES : streq(s, "no") ? EDGE_LOG_NO
                                                                                                  : -EINVAL;
}

static char *parse_edge_log(const struct key *k, const char *v, void *base) {
        int e = conf_edge_log_from_string(v);
        if (e < 0)
                return xasprintf("\"%s\" is not auto, yes or no", v);
        *FIELD(base, k, int) = e;
        return NULL;
}

static char *parse_type(const struct key *k, const char *v, void *base) {
        int t = socket_type_from_string(v);
        if (t < 0)
                return xasprintf("\"%s\" is not a socket type (http, https, tcp, tls)", v);
        *FIELD(base, k, enum socket_type) = t;
        return NULL;
}

/* OpenSSH prints SHA256 fingerprints as unpadded base64 of 32 bytes: 43 characters, the
 * last of which carries 4 bits only (its two low bits are zero). */
static bool fingerprint_valid(const char *s) {
        _cleanup_(freep) unsigned char *d = NULL;
        if (strncmp(s, "SHA256:", 7) != 0 || strlen(s + 7) != 43 || base64_decode(s + 7, 43, false, &d) != 32)
                return false;
        /* The last character carries 4 bits only: encoding again must give the same text. */
        _cleanup_(freep) char *e = base64_encode(d, 32, false);
        return streq(e, s + 7);
}

static char *parse_host_key_check(const struct key *k, const char *v, void *base) {
        struct config *c = base;
        (void) k;
        if (streq(v, "strict"))
                c->host_key_check = HOST_KEY_CHECK_STRICT;
        else if (streq(v, "accept-new"))
                c->host_key_check = HOST_KEY_CHECK_ACCEPT_NEW;
        else if (fingerprint_valid(v))
                c->host_key_check = HOST_KEY_CHECK_PINNED;
        else
                return xasprintf("\"%s\" is neither strict, accept-new nor SHA256:<43 base64 "
                                 "characters of a host key fingerprint>", v);
        free(c->host_key_fingerprint);
        c->host_key_fingerprint = c->host_key_check == HOST_KEY_CHECK_PINNED ? xstrdup(v) : NULL;
        return NULL;
}

/* ---- [ssh] proxy ----------------------------------------------------------------------- */

void conf_proxy_clear(struct conf_proxy *p) {
        free(p->scheme);
        free(p->host);
        free(p->user);
        if (p->password)
                explicit_bzero(p->password, strlen(p->password));
        free(p->password);
        *p = (struct conf_proxy) { 0 };
}

static char *dup_n(const char *s, size_t n) {
        char *d = xmalloc(n + 1);
        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

/* scheme://[user[:password]@]host:port[/]; host a name, an IPv4 or a bracketed IPv6 literal. */
int conf_proxy_parse(const char *url, struct conf_proxy *ret) {
        static const char *const schemes[] = { "http", "socks5", "socks5h" };
        struct conf_proxy p = { 0 };
        const char *sep = strstr(url, "://");
        if (!sep)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
                if ((size_t) (sep - url) == strlen(schemes[i]) && strncmp(url, schemes[i], sep - url) == 0)
                        p.scheme = xstrdup(schemes[i]);
        if (!p.scheme)
                return -EPROTONOSUPPORT;
        const char *rest = sep + 3, *at = strrchr(rest, '@');
        if (at) {
                const char *colon = memchr(rest, ':', at - rest);
                p.user = dup_n(rest, (colon ? colon : at) - rest);
                p.password = colon ? dup_n(colon + 1, at - colon - 1) : NULL;
                rest = at + 1;
        }
        size_t len = strlen(rest);
        if (len > 0 && rest[len - 1] == '/')
                len--;
        const char *colon;
        if (rest[0] == '[') {
                const char *close = memchr(rest, ']', len);
                struct in6_addr a6;
                if (!close || close[1] != ':')
                        goto bad;
                p.host = dup_n(rest + 1, close - rest - 1);
                if (inet_pton(AF_INET6, p.host, &a6) != 1)
                        goto bad;
                colon = close + 1;
        } else {
                colon = memrchr(rest, ':', len);
                if (!colon || colon == rest)
                        goto bad;
                p.host = dup_n(rest, colon - rest);
                char *why = strpbrk(p.host, ":/?#[] \t") ? xstrdup("bad character") : conf_host_problem(p.host);
                free(why);
                if (why)
                        goto bad;
        }
        char port[8];
        size_t plen = rest + len - colon - 1;
        if (plen == 0 || plen >= sizeof(port))
                goto bad;
        memcpy(port, colon + 1, plen);
        port[plen] = '\0';
        if (parse_port(port, &p.port) < 0)
                goto bad;
        *ret = p;
        return 0;
bad:
        conf_proxy_clear(&p);
        return -EINVAL;
}

char *conf_proxy_name(const char *url) {
        struct conf_proxy p;
        if (!url || conf_proxy_parse(url, &p) < 0)
                return xstrdup("(unparsable proxy URL)");
        char *s = xasprintf(strchr(p.host, ':') ? "[%s]:%u" : "%s:%u", p.host, p.port);
        conf_proxy_clear(&p);
        return s;
}

char *conf_proxy_display(const char *url) {
        struct conf_proxy p;
        if (!url || conf_proxy_parse(url, &p) < 0)
                return xstrdup("(unparsable proxy URL)");
        char *s = xasprintf(strchr(p.host, ':') ? "%s://[%s]:%u" : "%s://%s:%u", p.scheme, p.host, p.port);
        conf_proxy_clear(&p);
        return s;
}

void conf_scrub_secrets(const struct config *c, bool add) {
        struct conf_proxy p;
        if (!c || !c->ssh_proxy || conf_proxy_parse(c->ssh_proxy, &p) < 0)
                return;
        if (p.password)
                (add ? scrub_add : scrub_remove)(p.password);
        conf_proxy_clear(&p);
}

/* Empty means none, as the default. The value may hold a password: it is never quoted back. */
static char *parse_proxy(const struct key *k, const char *v, void *base) {
        char **f = FIELD(base, k, char *);
        struct conf_proxy p;
        if (!v[0]) {
                free(*f);
                *f = NULL;
                return NULL;
        }
        int r = conf_proxy_parse(v, &p);
        if (r == -EPROTONOSUPPORT)
                return xstrdup("not a proxy URL: the scheme must be http:// (CONNECT), socks5:// or socks5h://");
        if (r < 0)
                return xstrdup("not a proxy URL: http://[user:password@]host:port or socks5h://host:port expected");
        conf_proxy_clear(&p);
        free(*f);
        *f = xstrdup(v);
        return NULL;
}

#define CFG(sec, key, fn, f, ...) { SECTION_##sec, key, fn, offsetof(struct config, f), __VA_ARGS__ }
#define BND(key, fn, f) { SECTION_BINDING, key, fn, offsetof(struct binding_conf, f), 0, 0 }
const struct key conf_keys[CONF_N_KEYS] = {
        CFG(DAEMON, "state_dir", parse_path, state_dir, 0, 0),
        CFG(DAEMON, "control_socket", parse_path, control_socket, 0, 0),
        CFG(DAEMON, "control_group", parse_string, control_group, 0, 0),
        CFG(DAEMON, "log_level", parse_log_level, log_level, 0, 0),
        CFG(DAEMON, "log_format", parse_log_format, log_format, 0, 0),
        CFG(DAEMON, "metrics_listen", parse_listen, metrics_listen, 0, 0),
        CFG(API, "url", parse_url, api_url, 0, 0),
        CFG(API, "email", parse_string, api_email, 0, 0),
        CFG(API, "password_file", parse_path, api_password_file, 0, 0),
        CFG(API, "token_file", parse_path, api_token_file, 0, 0),
        CFG(SSH, "server", parse_servers, ssh_server, 0, 0),
        CFG(SSH, "port", parse_port16, ssh_port, 0, 0),
        CFG(SSH, "user", parse_string, ssh_user, 0, 0),
        CFG(SSH, "identity_file", parse_path, identity_file, 0, 0),
        CFG(SSH, "known_hosts", parse_path, known_hosts, 0, 0),
        CFG(SSH, "host_key_check", parse_host_key_check, host_key_check, 0, 0),
        CFG(SSH, "keepalive_interval", parse_unsigned, keepalive_interval, 1, 3600),
        CFG(SSH, "keepalive_count", parse_unsigned, keepalive_count, 1, 100),
        CFG(SSH, "proxy", parse_proxy, ssh_proxy, 0, 0),
        CFG(BACKOFF, "initial", parse_unsigned, backoff_initial, 1, 86400),
        CFG(BACKOFF, "max", parse_unsigned, backoff_max, 1, 86400),
        CFG(BACKOFF, "stable_after", parse_unsigned, stable_after, 1, 86400),
        BND("port", parse_port16, port),
        BND("host", parse_host, host),
        BND("type", parse_type, type),
        BND("name", parse_string, display_name),
        BND("protected", parse_boolean, protected_),
        BND("username", parse_string, username),
        BND("password", parse_string, password),
        BND("socket_id", parse_string, socket_id),
        BND("remote_port", parse_remote_port, remote_port),
        BND("remote_host", parse_host, remote_host),
        BND("public_url_pattern", parse_string, public_url_pattern),
        { SECTION_BINDING, "max_connections", parse_unsigned, offsetof(struct binding_conf, max_connections), 0, 1000000 },
        BND("edge_log", parse_edge_log, edge_log),
        { SECTION_BINDING, "tunnels", parse_unsigned, offsetof(struct binding_conf, tunnels), 1, CONF_TUNNELS_MAX },
        { SECTION_FORWARD, "listen", parse_forward_listen, offsetof(struct forward_conf, listen), 0, 0 },
        { SECTION_FORWARD, "target", parse_target, offsetof(struct forward_conf, target_host), 0, 0 },
};
_Static_assert(ELEMENTSOF(conf_keys) == CONF_N_KEYS, "CONF_N_KEYS is the size of the key table");

int conf_key_find(enum section s, const char *name) {
        for (size_t i = 0; i < CONF_N_KEYS; i++)
                if (conf_keys[i].section == s && streq(conf_keys[i].name, name))
                        return (int) i;
        return -1;
}

/* ---- the relays of [ssh] server, and what a reload must restart for ---------------------- */

size_t conf_relay_count(const struct config *c) {
        return c->n_ssh_relays > 0 ? c->n_ssh_relays : 1;
}

void conf_relay(const struct config *c, size_t i, const char **host, uint16_t *port) {
        if (c->n_ssh_relays == 0 || i >= c->n_ssh_relays) {
                *host = c->ssh_server;
                *port = c->ssh_port;
                return;
        }
        *host = c->ssh_relays[i].host;
        *port = c->ssh_relays[i].port ? c->ssh_relays[i].port : c->ssh_port;
}

static bool relays_equal(const struct config *a, const struct config *b) {
        if (conf_relay_count(a) != conf_relay_count(b))
                return false;
        for (size_t i = 0; i < conf_relay_count(a); i++) {
                const char *ha, *hb;
                uint16_t pa, pb;
                conf_relay(a, i, &ha, &pa);
                conf_relay(b, i, &hb, &pb);
                if (!streq_ptr(ha, hb) || pa != pb)
                        return false;
        }
        return true;
}

bool conf_transport_equal(const struct config *a, const struct config *b) {
        return a->api == b->api && streq_ptr(a->api_url, b->api_url) &&
                streq_ptr(a->api_email, b->api_email) &&
                streq_ptr(a->api_password_file, b->api_password_file) &&
                streq_ptr(a->api_token_file, b->api_token_file) &&
                relays_equal(a, b) &&
                streq_ptr(a->ssh_user, b->ssh_user) && streq_ptr(a->identity_file, b->identity_file) &&
                streq_ptr(a->known_hosts, b->known_hosts) && a->host_key_check == b->host_key_check &&
                streq_ptr(a->host_key_fingerprint, b->host_key_fingerprint) &&
                a->keepalive_interval == b->keepalive_interval && a->keepalive_count == b->keepalive_count &&
                streq_ptr(a->ssh_proxy, b->ssh_proxy);
}
