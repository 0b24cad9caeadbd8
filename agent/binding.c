/* One binding's state machine (see manager.h for the picture): resolve at the API, connect
 * the tunnel, back off with full jitter, fail for good on what retrying cannot fix. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api/api.h"
#include "log.h"
#include "manager.h"

/* Never spin: even full jitter waits at least this long between attempts. */
#define BACKOFF_MIN_USEC (100 * 1000ull)

static const char *const state_names[_BINDING_STATE_MAX] = {
        [BINDING_STATE_RESOLVING] = PROTO_STATE_RESOLVING,
        [BINDING_STATE_CONNECTING] = PROTO_STATE_CONNECTING,
        [BINDING_STATE_UP] = PROTO_STATE_UP,
        [BINDING_STATE_BACKOFF] = PROTO_STATE_BACKOFF,
        [BINDING_STATE_FAILED] = PROTO_STATE_FAILED,
        [BINDING_STATE_REMOVING] = PROTO_STATE_REMOVING,
};

const char *binding_state_to_string(enum binding_state s) {
        return s < _BINDING_STATE_MAX ? state_names[s] : "unknown";
}


static uint64_t random_u64(void) {
        uint64_t v;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_monotonic_usec() * 6364136223846793005ull + (uint64_t) getpid();
        return v;
}

static void set_state(struct binding *b, enum binding_state s) {
        if (b->state == s)
                return;
        log_binding(LOG_DEBUG, b->conf->name, "state", "state %s -> %s",
                    binding_state_to_string(b->state), binding_state_to_string(s));
        b->state = s;
        manager_update_status(b->manager);
}

static void set_error(struct binding *b, const char *message) {
        free(b->last_error);
        b->last_error = xstrdup(message);
}

void binding_stop(struct binding *b) {
        if (b->tunnel) {
                struct tunnel_stats st;
                tunnel_get_stats(b->tunnel, &st);
                b->past.connections_total += st.connections_total;
                b->past.bytes_in += st.bytes_in;
                b->past.bytes_out += st.bytes_out;
                tunnel_free(b->tunnel);
                b->tunnel = NULL;
        }
        api_call_cancel(b->api_call);
        b->api_call = NULL;
        b->timer = sd_event_source_disable_unref(b->timer);
        b->connected_since = 0;
        b->next_attempt = 0;
}

static int on_backoff_done(sd_event_source *s, uint64_t usec, void *userdata) {
        struct binding *b = userdata;
        b->timer = sd_event_source_disable_unref(b->timer);
        binding_attempt(b);
        return 0;
}

/* Exponential from `initial` to `max` seconds with full jitter: the wait is uniform in
 * [0, cap], so a relay restart does not see every Pi in the world come back at once. */
static uint64_t backoff_delay(const struct config *c, unsigned failures) {
        uint64_t cap = (uint64_t) c->backoff_initial * USEC_PER_SEC;
        for (unsigned i = 0; i < failures && cap < (uint64_t) c->backoff_max * USEC_PER_SEC; i++)
                cap *= 2;
        if (cap > (uint64_t) c->backoff_max * USEC_PER_SEC)
                cap = (uint64_t) c->backoff_max * USEC_PER_SEC;
        uint64_t d = random_u64() % (cap + 1);
        return d < BACKOFF_MIN_USEC ? BACKOFF_MIN_USEC : d;
}

static void schedule_retry(struct binding *b) {
        uint64_t delay = backoff_delay(b->manager->config, b->failures);
        b->failures++;
        b->next_attempt = now_realtime_usec() + delay;
        set_state(b, BINDING_STATE_BACKOFF);
        if (sd_event_add_time_relative(b->manager->event, &b->timer, CLOCK_MONOTONIC, delay, 0,
                                       on_backoff_done, b) < 0) {
                /* Cannot arm a timer: out of resources. Trying again right away is all we can do. */
                binding_attempt(b);
                return;
        }
        log_binding(LOG_NOTICE, b->conf->name, "backoff", "%s; retrying in %.1f s",
                    b->last_error ? b->last_error : "not connected", (double) delay / USEC_PER_SEC);
}

static int on_stable(sd_event_source *s, uint64_t usec, void *userdata) {
        struct binding *b = userdata;
        b->timer = sd_event_source_disable_unref(b->timer);
        /* Up long enough: the next failure starts from `initial` again. */
        b->failures = 0;
        return 0;
}

/* https://dnsname for http/https sockets, dnsname:port for tcp/tls; NULL before the API
 * told us (and always in direct mode). Caller frees. */
static char *public_url(const struct binding *b) {
        if (!b->dnsname)
                return NULL;
        if (b->conf->type == SOCKET_TYPE_HTTP || b->conf->type == SOCKET_TYPE_HTTPS)
                return xasprintf("https://%s", b->dnsname);
        return xasprintf("%s:%u", b->dnsname, b->public_port);
}

/* "relay HOST port N", and the API's ids when there are some: what the catalog shows. */
static char *relay_text(const struct binding *b) {
        const char *server = b->manager->config->ssh_server;
        if (b->socket_id)
                return xasprintf("relay %s port %u, socket %s, tunnel %s", server, b->relay_port, b->socket_id,
                                 b->tunnel_id ? b->tunnel_id : "-");
        return xasprintf("relay %s port %u", server, b->relay_port);
}

/* The one place a binding's `down` is told: only a binding that was up goes down. */
static void log_down(struct binding *b, int priority, const char *why) {
        _cleanup_(freep) char *relay = relay_text(b);
        log_full(priority, &(struct log_fields) {
                         .binding = b->conf->name, .event = "down", .message_id = LOG_MESSAGE_ID_DOWN,
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id, .relay = relay },
                 "down: %s", why);
}

void binding_going_down(struct binding *b, const char *why) {
        if (b->state == BINDING_STATE_UP)
                log_down(b, LOG_NOTICE, why);
}

static void on_tunnel_up(struct tunnel *t, void *userdata) {
        struct binding *b = userdata;
        _cleanup_(freep) char *url = public_url(b), *relay = NULL;
        b->connected_since = now_realtime_usec();
        b->next_attempt = 0;
        free(b->last_error);
        b->last_error = NULL;
        set_state(b, BINDING_STATE_UP);
        sd_event_add_time_relative(b->manager->event, &b->timer, CLOCK_MONOTONIC,
                                   (uint64_t) b->manager->config->stable_after * USEC_PER_SEC, 0, on_stable, b);
        relay = relay_text(b);
        log_full(LOG_NOTICE, &(struct log_fields) {
                         .binding = b->conf->name, .event = PROTO_EVENT_UP, .message_id = LOG_MESSAGE_ID_UP,
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id, .relay = relay },
                 "up: %s:%u -> relay %s port %u%s%s", b->conf->host, b->conf->port,
                 b->manager->config->ssh_server, b->relay_port, url ? ", public at " : "", url ? url : "");
}

static void on_tunnel_down(struct tunnel *t, int error, bool permanent, const char *message, void *userdata) {
        struct binding *b = userdata;
        /* A failed attempt is no `down`: the binding was not up. It backs off, or fails. */
        if (b->state == BINDING_STATE_UP)
                log_down(b, LOG_WARNING, message);
        set_error(b, message);
        binding_stop(b);
        if (permanent) {
                log_binding(LOG_ERR, b->conf->name, "failed", "failed: %s; not retrying until the binding or "
                            "config changes", message);
                set_state(b, BINDING_STATE_FAILED);
                return;
        }
        schedule_retry(b);
}

static void on_tunnel_log(struct tunnel *t, const char *line, void *userdata) {
        struct binding *b = userdata;
        log_full(LOG_INFO, &(struct log_fields) {
                         .binding = b->conf->name, .event = "edge-log",
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "%s", line);
}

static const struct tunnel_callbacks tunnel_callbacks = {
        .on_up = on_tunnel_up,
        .on_down = on_tunnel_down,
        .on_log = on_tunnel_log,
};

static void binding_connect(struct binding *b) {
        const struct config *c = b->manager->config;
        const struct tunnel_params p = {
                .name = b->conf->name,
                .server = c->ssh_server,
                .server_port = c->ssh_port,
                .proxy = c->ssh_proxy,
                .user = c->ssh_user ? c->ssh_user : b->ssh_user,
                .identity_file = c->identity_file,
                .known_hosts = c->known_hosts,
                .host_key_check = c->host_key_check,
                .host_key_fingerprint = c->host_key_fingerprint,
                .keepalive_interval = c->keepalive_interval,
                .keepalive_count = c->keepalive_count,
                .bind_host = "localhost",
                .remote_port = b->relay_port,
                .local_host = b->conf->host,
                .local_port = b->conf->port,
                .exclusive = c->api,
        };
        set_state(b, BINDING_STATE_CONNECTING);
        int r = tunnel_new(b->manager->tunnels, b->manager->event, &p, &tunnel_callbacks, b, &b->tunnel);
        if (r < 0) {
                _cleanup_(freep) char *msg = xasprintf("cannot start the tunnel: %s", strerror(-r));
                set_error(b, msg);
                schedule_retry(b);
        }
}

static void replace(char **dst, const char *src) {
        free(*dst);
        *dst = xstrdup(src);
}

static void on_resolved(int error, const struct api_binding_result *r, const char *message, void *userdata) {
        struct binding *b = userdata;
        b->api_call = NULL;
        if (error < 0) {
                set_error(b, message);
                schedule_retry(b);      /* logs last_error with the retry time */
                return;
        }
        replace(&b->socket_id, r->socket_id);
        replace(&b->tunnel_id, r->tunnel_id);
        replace(&b->dnsname, r->dnsname);
        replace(&b->ssh_user, r->user_name);
        b->relay_port = r->relay_port;
        b->public_port = r->socket_tcp_port;
        b->created_socket = r->created;
        log_full(LOG_INFO, &(struct log_fields) {
                         .binding = b->conf->name, .event = "resolve",
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "API: socket %s%s, tunnel %s, relay port %u", r->socket_id,
                 r->recreated ? " (recreated)" : "", r->tunnel_id, r->relay_port);
        binding_connect(b);
}

static void binding_resolve(struct binding *b) {
        const struct binding_conf *c = b->conf;
        _cleanup_(freep) char *display = c->display_name ? NULL : display_name_default(c->name, b->manager->hostname);
        const struct api_binding_request req = {
                .name = c->name,
                .display_name = c->display_name ? c->display_name : display,
                .type = c->type,
                .protected_ = c->protected_,
                .username = c->username,
                .password = c->password,
                .config_socket_id = c->socket_id,
        };
        set_state(b, BINDING_STATE_RESOLVING);
        int r = api_ensure_binding(b->manager->api, &req, on_resolved, b, &b->api_call);
        if (r < 0) {
                _cleanup_(freep) char *msg = xasprintf("cannot ask the API: %s", strerror(-r));
                set_error(b, msg);
                schedule_retry(b);
        }
}

void binding_attempt(struct binding *b) {
        binding_stop(b);
        if (b->attempts++ > 0)
                b->reconnects++;
        if (b->manager->api) {
                binding_resolve(b);
                return;
        }
        b->relay_port = b->conf->remote_port;
        binding_connect(b);
}

struct binding *binding_new(struct manager *m, struct binding_conf *bc) {
        struct binding *b = xcalloc(1, sizeof(*b));
        b->manager = m;
        b->conf = bc;
        b->state = BINDING_STATE_CONNECTING;
        return b;
}

void binding_free(struct binding *b) {
        if (!b)
                return;
        binding_stop(b);
        conf_binding_free(b->conf);
        free(b->last_error);
        free(b->socket_id);
        free(b->tunnel_id);
        free(b->dnsname);
        free(b->ssh_user);
        free(b);
}

void binding_to_proto(const struct binding *b, struct proto_binding *p) {
        const struct binding_conf *c = b->conf;
        struct tunnel_stats now = { 0 };
        const char *cipher, *mac;
        if (b->tunnel)
                tunnel_get_stats(b->tunnel, &now);
        tunnel_get_algorithms(b->state == BINDING_STATE_UP ? b->tunnel : NULL, &cipher, &mac);
        *p = (struct proto_binding) {
                .name = xstrdup(c->name),
                .source = xstrdup(c->source == BINDING_SOURCE_CONFIG ? PROTO_SOURCE_CONFIG : PROTO_SOURCE_RUNTIME),
                .type = xstrdup(socket_type_to_string(c->type)),
                .host = xstrdup(c->host),
                .port = c->port,
                .display_name = xstrdup(c->display_name),
                .protected_ = c->protected_,
                .username = xstrdup(c->username),
                .remote_port = c->remote_port,
                .state = xstrdup(binding_state_to_string(b->state)),
                .socket_id = xstrdup(b->socket_id),
                .tunnel_id = xstrdup(b->tunnel_id),
                .relay_port = b->relay_port,
                .connected_since = b->connected_since,
                .reconnects = b->reconnects,
                .connections_active = now.connections_active,
                .connections_total = b->past.connections_total + now.connections_total,
                .bytes_in = b->past.bytes_in + now.bytes_in,
                .bytes_out = b->past.bytes_out + now.bytes_out,
                .last_error = xstrdup(b->last_error),
                .cipher = xstrdup(cipher),
                .mac = xstrdup(mac),
                .next_attempt = b->next_attempt,
                .defined_at = c->source == BINDING_SOURCE_CONFIG ? xasprintf("%s:%u", c->file, c->line) : xstrdup(c->file),
        };
        p->public_url = public_url(b);
}
