/* One binding's state machine (see manager.h for the picture): resolve at the API, connect
 * the tunnel, back off with full jitter, fail for good on what retrying cannot fix. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "log.h"
#include "manager.h"
#include "urlmatch.h"

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


static void set_state(struct binding *b, enum binding_state s) {
        if (b->state == s)
                return;
        log_binding(LOG_DEBUG, b->conf->name, "state", "state %s -> %s",
                    binding_state_to_string(b->state), binding_state_to_string(s));
        b->state = s;
        manager_update_status(b->manager);
}

static void replace(char **dst, const char *src) {
        free(*dst);
        *dst = xstrdup(src);
}

static void set_error(struct binding *b, const char *message) {
        replace(&b->last_error, message);
}

_Static_assert(BINDING_SLOTS_MAX >= CONF_RELAYS_MAX && BINDING_SLOTS_MAX >= CONF_TUNNELS_MAX,
               "a slot for every relay and every tunnel");

static void slot_stop(struct binding_slot *s) {
        struct binding *b = s->binding;
        if (s->tunnel) {
                struct tunnel_stats st;
                struct tunnel *t = s->tunnel;
                tunnel_get_stats(t, &st);
                b->past.connections_total += st.connections_total;
                b->past.connections_refused += st.connections_refused;
                b->past.bytes_in += st.bytes_in;
                b->past.bytes_out += st.bytes_out;
                b->past.local_errors += st.local_errors;
                bool failing;
                const char *le = tunnel_get_local_error(t, &failing);
                if (le) {
                        free(b->last_local_error);
                        b->last_local_error = xstrdup(le);
                        b->local_failing = failing;
                }
                s->tunnel = NULL;       /* first: freeing it may call on_down for it */
                tunnel_free(t);
        }
        s->timer = sd_event_source_disable_unref(s->timer);
        s->connected_since = 0;
        s->next_attempt = 0;
}

void binding_stop(struct binding *b) {
        /* Freeing one tunnel may end another's session (the loop is finishing, say): its
         * on_down must not start a new attempt in the middle of this. */
        b->stopping = true;
        for (size_t i = 0; i < b->n_slots; i++) {
                slot_stop(&b->slots[i]);
                if (b->slots[i].state == BINDING_STATE_UP)
                        b->slots[i].state = BINDING_STATE_CONNECTING;   /* stopped: up no more */
        }
        api_call_cancel(b->api_call);
        b->api_call = NULL;
        b->timer = sd_event_source_disable_unref(b->timer);
        b->connected_since = 0;
        b->next_attempt = 0;
        b->stopping = false;
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
        return backoff_usec((uint64_t) c->backoff_initial * USEC_PER_SEC,
                            (uint64_t) c->backoff_max * USEC_PER_SEC, failures);
}

/* The API could not be asked (API mode): the whole binding waits. */
static void schedule_retry(struct binding *b) {
        uint64_t delay = backoff_delay(b->manager->config, b->failures);
        b->failures++;
        b->next_attempt = now_realtime_usec() + delay;
        for (size_t i = 0; i < b->n_slots; i++) {      /* each tunnel waits for the API too */
                b->slots[i].state = BINDING_STATE_BACKOFF;
                b->slots[i].next_attempt = b->next_attempt;
                replace(&b->slots[i].last_error, b->last_error);
        }
        set_state(b, BINDING_STATE_BACKOFF);
        int r = sd_event_add_time_relative(b->manager->event, &b->timer, CLOCK_MONOTONIC, delay,
                                           BACKOFF_ACCURACY_USEC, on_backoff_done, b);
        if (r == -ESTALE)
                return;         /* the loop has finished: the daemon is stopping */
        if (r < 0) {
                /* Not a retry right away: from inside a failure callback that could recurse. */
                log_binding(LOG_ERR, b->conf->name, "backoff", "%s; cannot arm the retry timer (%s): "
                            "waiting for the next reload", b->last_error ? b->last_error : "not connected",
                            strerror(-r));
                return;
        }
        log_binding(LOG_NOTICE, b->conf->name, "backoff", "%s; retrying in %.1f s",
                    b->last_error ? b->last_error : "not connected", (double) delay / USEC_PER_SEC);
}

/* The relay of slot s, host and port (API mode: the first relay for every tunnel). */
static void slot_relay(const struct binding_slot *s, const char **host, uint16_t *port) {
        conf_relay(s->binding->manager->config, s->binding->manager->api ? 0 : s->index, host, port);
}

/* The port slot s asks the relay for, and its tunnel id (API mode; else the binding's). */
static uint16_t slot_port(const struct binding_slot *s) {
        return s->relay_port ? s->relay_port : s->binding->relay_port;
}

static const char *slot_tunnel_id(const struct binding_slot *s) {
        return s->tunnel_id ? s->tunnel_id : s->binding->tunnel_id;
}

/* "relay HOST:PORT: " (direct mode) or "tunnel N: " (API mode) before a slot's sentences
 * when the binding has several tunnels, else "". */
static char *slot_prefix(const struct binding_slot *s) {
        const char *host;
        uint16_t port;
        if (s->binding->n_slots < 2)
                return xstrdup("");
        if (s->binding->manager->api)
                return xasprintf("tunnel %zu: ", s->index + 1);
        slot_relay(s, &host, &port);
        _cleanup_(freep) char *hp = format_host_port(host, port);
        return xasprintf("relay %s: ", hp);
}

unsigned binding_tunnels_up(const struct binding *b) {
        unsigned n = 0;
        for (size_t i = 0; i < b->n_slots; i++)
                n += b->slots[i].state == BINDING_STATE_UP;
        return n;
}

/* The binding's state from its slots': up if any is up, else connecting, backoff, failed
 * in that order; since, next attempt and error follow. */
static void derive_state(struct binding *b) {
        static const enum binding_state order[] = {
                BINDING_STATE_UP, BINDING_STATE_CONNECTING, BINDING_STATE_RESOLVING, BINDING_STATE_BACKOFF,
                BINDING_STATE_FAILED };
        enum binding_state best = BINDING_STATE_FAILED;
        uint64_t since = 0, next = 0;
        const struct binding_slot *err = NULL;
        if (b->n_slots == 0)
                return;
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                bool found = false;
                for (size_t i = 0; i < b->n_slots; i++)
                        found = found || b->slots[i].state == order[k];
                if (found) {
                        best = order[k];
                        break;
                }
        }
        for (size_t i = 0; i < b->n_slots; i++) {
                const struct binding_slot *s = &b->slots[i];
                if (s->state == BINDING_STATE_UP && s->connected_since && (!since || s->connected_since < since))
                        since = s->connected_since;
                if (s->state == BINDING_STATE_BACKOFF && s->next_attempt && (!next || s->next_attempt < next))
                        next = s->next_attempt;
                if (s->state != BINDING_STATE_UP && s->last_error && !err)
                        err = s;
        }
        b->connected_since = since;
        b->next_attempt = best == BINDING_STATE_BACKOFF ? next : 0;
        if (err) {
                _cleanup_(freep) char *prefix = slot_prefix(err);
                free(b->last_error);
                b->last_error = xasprintf("%s%s", prefix, err->last_error);
        } else if (best == BINDING_STATE_UP) {
                free(b->last_error);
                b->last_error = NULL;
        }
        set_state(b, best);
}

static void slot_connect(struct binding_slot *s);
static void binding_resolve(struct binding *b);

/* A tunnel's wait is over: it connects again (API mode: asks the API first, as its tunnel
 * may be gone; one question serves every tunnel waiting, the others run on). */
static void slot_again(struct binding_slot *s) {
        struct binding *b = s->binding;
        s->timer = sd_event_source_disable_unref(s->timer);
        b->attempts++;
        b->reconnects++;
        if (!b->manager->api)
                return slot_connect(s);
        s->state = BINDING_STATE_RESOLVING;
        s->next_attempt = 0;
        if (b->api_call)
                derive_state(b);
        else
                binding_resolve(b);
}

static int on_slot_backoff_done(sd_event_source *es, uint64_t usec, void *userdata) {
        slot_again(userdata);
        return 0;
}

/* When slot s tries again (CLOCK_MONOTONIC usec, from now). Its own jittered draw, except
 * in direct mode, where the bindings on one relay share its SSH session: a relay that goes
 * away fails them all at once, and each retrying alone would make one connect per binding
 * (1000 bindings, 1000 connects within the first second). So the first tunnel of a round
 * to fail draws the time, and every other tunnel on that relay failing while that time is
 * ahead and inside its own backoff window waits for the same moment; the first timer to
 * fire starts the session and the rest join it. The relay sees one connect per round from
 * this daemon, at a time as jittered as before (a tunnel whose window is shorter, one not
 * failing with the rest, draws its own). */
static uint64_t slot_retry_at(struct binding_slot *s, uint64_t now) {
        struct manager *m = s->binding->manager;
        const struct config *c = m->config;
        uint64_t delay = backoff_delay(c, s->failures);
        if (m->api || s->index >= ELEMENTSOF(m->relay_retry_at))
                return now + delay;
        uint64_t at = m->relay_retry_at[s->index];
        uint64_t cap = backoff_cap_usec((uint64_t) c->backoff_initial * USEC_PER_SEC,
                                        (uint64_t) c->backoff_max * USEC_PER_SEC, s->failures);
        if (at > now && at - now <= cap)
                return at;
        return m->relay_retry_at[s->index] = now + delay;
}

/* One tunnel failed: it alone waits, with its own exponent; the others go on. */
static void slot_retry(struct binding_slot *s) {
        struct binding *b = s->binding;
        uint64_t now;
        if (sd_event_now(b->manager->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        uint64_t at = slot_retry_at(s, now);
        s->failures++;
        s->next_attempt = now_realtime_usec() + (at - now);
        s->state = BINDING_STATE_BACKOFF;
        derive_state(b);
        if (sd_event_add_time(b->manager->event, &s->timer, CLOCK_MONOTONIC, at, BACKOFF_ACCURACY_USEC,
                              on_slot_backoff_done, s) < 0) {
                /* Cannot arm a timer (out of resources, or the loop is finishing): trying
                 * again from here could recurse without end; the tunnel waits for a network
                 * change or a reload instead. */
                log_binding(LOG_ERR, b->conf->name, "backoff", "cannot arm the retry timer; %s",
                            s->last_error ? s->last_error : "not connected");
                return;
        }
        _cleanup_(freep) char *prefix = slot_prefix(s);
        log_binding(LOG_NOTICE, b->conf->name, "backoff", "%s%s; retrying in %.1f s", prefix,
                    s->last_error ? s->last_error : "not connected", (double) (at - now) / USEC_PER_SEC);
}

static int on_stable(sd_event_source *es, uint64_t usec, void *userdata) {
        struct binding_slot *s = userdata;
        s->timer = sd_event_source_disable_unref(s->timer);
        /* Up long enough: the next failure starts from `initial` again. */
        s->failures = 0;
        s->binding->failures = 0;
        return 0;
}

/* "relay HOST port N", and the API's ids when there are some: what the catalog shows. */
static char *relay_text(const struct binding_slot *s) {
        const struct binding *b = s->binding;
        const char *server;
        uint16_t port;
        slot_relay(s, &server, &port);
        if (b->socket_id)
                return xasprintf("relay %s port %u, socket %s, tunnel %s", server, slot_port(s), b->socket_id,
                                 slot_tunnel_id(s) ? slot_tunnel_id(s) : "-");
        return xasprintf("relay %s port %u", server, slot_port(s));
}

/* The one place a binding's `down` is told: only a tunnel that was up goes down. */
static void log_down(struct binding_slot *s, int priority, const char *why) {
        struct binding *b = s->binding;
        _cleanup_(freep) char *relay = relay_text(s), *prefix = slot_prefix(s);
        log_full(priority, &(struct log_fields) {
                         .binding = b->conf->name, .event = "down", .message_id = LOG_MESSAGE_ID_DOWN,
                         .socket_id = b->socket_id, .tunnel_id = slot_tunnel_id(s), .relay = relay },
                 "down: %s%s", prefix, why);
}

void binding_going_down(struct binding *b, const char *why) {
        for (size_t i = 0; i < b->n_slots; i++)
                if (b->slots[i].state == BINDING_STATE_UP)
                        log_down(&b->slots[i], LOG_NOTICE, why);
}

static void on_tunnel_up(struct tunnel *t, void *userdata) {
        struct binding_slot *s = userdata;
        struct binding *b = s->binding;
        _cleanup_(freep) char *url = binding_public_url(b), *relay = NULL, *prefix = slot_prefix(s);
        const char *server;
        uint16_t port;
        slot_relay(s, &server, &port);
        s->connected_since = now_realtime_usec();
        s->next_attempt = 0;
        free(s->last_error);
        s->last_error = NULL;
        s->state = BINDING_STATE_UP;
        derive_state(b);
        if (!slot_port(s))      /* remote_port = 0: the port the relay chose */
                b->relay_port = tunnel_get_bound_port(t);
        if (sd_event_add_time_relative(b->manager->event, &s->timer, CLOCK_MONOTONIC,
                                       (uint64_t) b->manager->config->stable_after * USEC_PER_SEC, 0, on_stable,
                                       s) < 0)
                /* Out of resources: the failure count is not reset, so a later backoff is longer. */
                log_binding(LOG_WARNING, b->conf->name, PROTO_EVENT_UP, "cannot arm the stable_after timer");
        relay = relay_text(s);
        log_full(LOG_NOTICE, &(struct log_fields) {
                         .binding = b->conf->name, .event = PROTO_EVENT_UP, .message_id = LOG_MESSAGE_ID_UP,
                         .socket_id = b->socket_id, .tunnel_id = slot_tunnel_id(s), .relay = relay },
                 "up: %s%s:%u -> relay %s port %u%s%s", prefix, b->conf->host, b->conf->port,
                 server, slot_port(s), url ? ", public at " : "", url ? url : "");
}

static void on_tunnel_down(struct tunnel *t, int error, bool permanent, const char *message, void *userdata) {
        struct binding_slot *s = userdata;
        struct binding *b = s->binding;
        /* A failed attempt is no `down`: the tunnel was not up. It backs off, or fails. */
        if (s->state == BINDING_STATE_UP)
                log_down(s, LOG_WARNING, message);
        free(s->last_error);
        s->last_error = xstrdup(message);
        if (b->stopping) {
                /* binding_stop frees every tunnel; binding_attempt starts them again. */
                s->state = BINDING_STATE_CONNECTING;
                return;
        }
        slot_stop(s);
        if (permanent) {
                _cleanup_(freep) char *prefix = slot_prefix(s);
                log_binding(LOG_ERR, b->conf->name, "failed", "failed: %s%s; not retrying until the binding or "
                            "config changes", prefix, message);
                s->state = BINDING_STATE_FAILED;
                derive_state(b);
                return;
        }
        slot_retry(s);
}

static void on_tunnel_log(struct tunnel *t, const char *line, void *userdata) {
        struct binding_slot *s = userdata;
        struct binding *b = s->binding;
        binding_match_public_url(b, line);
        log_full(LOG_INFO, &(struct log_fields) {
                         .binding = b->conf->name, .event = "edge-log",
                         .socket_id = b->socket_id, .tunnel_id = slot_tunnel_id(s) },
                 "%s", line);
}

static const struct tunnel_callbacks tunnel_callbacks = {
        .on_up = on_tunnel_up,
        .on_down = on_tunnel_down,
        .on_log = on_tunnel_log,
};

static void slot_connect(struct binding_slot *s) {
        struct binding *b = s->binding;
        const struct config *c = b->manager->config;
        const char *server;
        uint16_t port;
        slot_relay(s, &server, &port);
        b->limit.max = b->conf->max_connections;
        struct tunnel_params p = manager_session_params(b->manager, server, port,
                                                        c->ssh_user ? c->ssh_user : b->ssh_user);
        p.name = b->conf->name;
        p.bind_host = b->conf->remote_host && *b->conf->remote_host ? b->conf->remote_host : "localhost";
        p.remote_port = slot_port(s);
        p.local_host = b->conf->host;
        p.local_port = b->conf->port;
        p.limit = &b->limit;
        p.exclusive = c->api;
        /* auto: the relay's lines are read in API mode, and where a public_url_pattern wants them. */
        p.edge_log = b->conf->edge_log == EDGE_LOG_AUTO ? c->api || b->conf->public_url_pattern
                                                        : b->conf->edge_log == EDGE_LOG_YES;
        s->state = BINDING_STATE_CONNECTING;
        derive_state(b);
        int r = tunnel_new(b->manager->tunnels, b->manager->event, &p, &tunnel_callbacks, s, &s->tunnel);
        if (r < 0) {
                free(s->last_error);
                s->last_error = xasprintf("cannot start the tunnel: %s", strerror(-r));
                slot_retry(s);
        }
}

/* n slots: the extra ones stopped and cleared, new ones in `state` (not started). */
static void slots_resize(struct binding *b, size_t n, enum binding_state state) {
        for (size_t i = n; i < b->n_slots; i++) {
                slot_stop(&b->slots[i]);
                free(b->slots[i].last_error);
                free(b->slots[i].tunnel_id);
        }
        for (size_t i = b->n_slots; i < n; i++)
                b->slots[i] = (struct binding_slot) { .binding = b, .index = i, .state = state };
        b->n_slots = n;
}

/* Direct mode: one tunnel per relay, each started now. */
static void binding_connect(struct binding *b) {
        size_t n = conf_relay_count(b->manager->config);
        slots_resize(b, n, BINDING_STATE_CONNECTING);
        for (size_t i = 0; i < n; i++)
                slot_connect(&b->slots[i]);
}

static bool binding_running(const struct binding *b) {
        for (size_t i = 0; i < b->n_slots; i++)
                if (b->slots[i].tunnel)
                        return true;
        return false;
}

/* The API could not be asked. With tunnels running, only those waiting for the answer back
 * off, each on its own; else the whole binding waits. */
static void resolve_failed(struct binding *b, const char *message) {
        set_error(b, message);
        if (!binding_running(b)) {
                schedule_retry(b);      /* logs last_error with the retry time */
                return;
        }
        for (size_t i = 0; i < b->n_slots; i++)
                if (b->slots[i].state == BINDING_STATE_RESOLVING) {
                        replace(&b->slots[i].last_error, message);
                        slot_retry(&b->slots[i]);
                }
}

static void on_resolved(int error, const struct api_binding_result *r, const char *message, void *userdata) {
        struct binding *b = userdata;
        b->api_call = NULL;
        if (error < 0)
                return resolve_failed(b, message);
        replace(&b->socket_id, r->socket_id);
        replace(&b->tunnel_id, r->tunnel_id);
        replace(&b->dnsname, r->dnsname);
        replace(&b->ssh_user, r->user_name);
        b->relay_port = r->relay_port;
        b->public_port = r->socket_tcp_port;
        b->created_socket = r->created;
        for (size_t i = 0; i < r->n_tunnels; i++)
                log_full(LOG_INFO, &(struct log_fields) {
                                 .binding = b->conf->name, .event = "resolve",
                                 .socket_id = b->socket_id, .tunnel_id = r->tunnels[i].tunnel_id },
                         "API: socket %s%s, tunnel %s, relay port %u", r->socket_id,
                         r->recreated ? " (recreated)" : "", r->tunnels[i].tunnel_id, r->tunnels[i].relay_port);
        slots_resize(b, r->n_tunnels, BINDING_STATE_RESOLVING);
        for (size_t i = 0; i < b->n_slots; i++) {
                struct binding_slot *s = &b->slots[i];
                const struct api_binding_tunnel *t = &r->tunnels[i];
                bool same = streq_ptr(s->tunnel_id, t->tunnel_id) && s->relay_port == t->relay_port;
                if (s->tunnel && same)
                        continue;       /* up or connecting on the same tunnel: untouched */
                replace(&s->tunnel_id, t->tunnel_id);
                s->relay_port = t->relay_port;
                if (s->tunnel) {
                        if (s->state == BINDING_STATE_UP)
                                log_down(s, LOG_WARNING, "its tunnel changed at the API");
                        slot_stop(s);
                } else if (s->state != BINDING_STATE_RESOLVING)
                        continue;       /* waits on its own timer, or failed: it asks again itself */
                slot_connect(s);
        }
        derive_state(b);
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
                .tunnels = conf_binding_tunnels(c),
        };
        api_call_cancel(b->api_call);   /* asked with other settings: its answer is void */
        b->api_call = NULL;
        if (binding_running(b))
                derive_state(b);
        else
                set_state(b, BINDING_STATE_RESOLVING);
        int r = api_ensure_binding(b->manager->api, &req, on_resolved, b, &b->api_call);
        if (r < 0) {
                b->api_call = NULL;
                _cleanup_(freep) char *msg = xasprintf("cannot ask the API: %s", strerror(-r));
                resolve_failed(b, msg);
        }
}

void binding_attempt(struct binding *b) {
        binding_stop(b);
        if (b->attempts == 0)           /* a fresh start (new, reloaded): every tunnel from `initial` */
                for (size_t i = 0; i < b->n_slots; i++)
                        b->slots[i].failures = 0;
        if (b->attempts++ > 0)
                b->reconnects++;
        if (b->manager->api) {
                slots_resize(b, conf_binding_tunnels(b->conf), BINDING_STATE_RESOLVING);
                for (size_t i = 0; i < b->n_slots; i++)
                        b->slots[i].state = BINDING_STATE_RESOLVING;
                binding_resolve(b);
                return;
        }
        b->relay_port = b->conf->remote_port;
        binding_connect(b);
}

void binding_resize(struct binding *b) {
        size_t n = conf_binding_tunnels(b->conf);
        if (!b->manager->api || !binding_running(b))
                return binding_attempt(b);
        for (size_t i = n; i < b->n_slots; i++)
                if (b->slots[i].state == BINDING_STATE_UP)
                        log_down(&b->slots[i], LOG_NOTICE, "no longer wanted (tunnels lowered)");
        slots_resize(b, n, BINDING_STATE_RESOLVING);
        binding_resolve(b);     /* deletes the extra tunnels at the API, creates the new ones */
}

bool binding_retry_now(struct binding *b) {
        bool any = false;
        if (b->state == BINDING_STATE_BACKOFF) {
                b->timer = sd_event_source_disable_unref(b->timer);
                binding_attempt(b);
                return true;
        }
        for (size_t i = 0; i < b->n_slots; i++)
                if (b->slots[i].state == BINDING_STATE_BACKOFF) {
                        slot_again(&b->slots[i]);
                        any = true;
                }
        return any;
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
        slots_resize(b, 0, BINDING_STATE_CONNECTING);
        conf_binding_free(b->conf);
        free(b->last_local_error);
        free(b->last_error);
        free(b->socket_id);
        free(b->tunnel_id);
        free(b->dnsname);
        free(b->ssh_user);
        free(b->relay_url);
        urlmatch_free(b->url_matcher);
        free(b);
}
