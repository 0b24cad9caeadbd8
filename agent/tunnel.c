/* The tunnel engine, bindings' side: each tunnel is one binding's reverse forward, attached
 * to the session that reaches its relay. Bindings that reach the same relay as the same
 * user with the same key, host key policy and keepalive share one SSH session (one
 * tcpip-forward each on it), the way `ssh -R a -R b` would; the registry below finds it.
 * An `exclusive` tunnel (API mode) always gets a session of its own.
 * The session's own work is in tunnel-pump.c; see tunnel-internal.h for the two objects. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "tunnel-internal.h"

/* Sessions that take new tunnels: not failed, not being released. */
static struct session *registry, *registry_tail;

static bool same_str(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

static bool shareable(const struct session *s, sd_event *event, const struct tunnel_params *p) {
        return !s->p.exclusive && !p->exclusive && s->event == event && same_str(s->p.server, p->server) && s->p.server_port == p->server_port &&
               same_str(s->p.user, p->user) && same_str(s->p.identity_file, p->identity_file) &&
               same_str(s->p.known_hosts, p->known_hosts) && s->p.host_key_check == p->host_key_check &&
               same_str(s->p.host_key_fingerprint, p->host_key_fingerprint) &&
               s->p.keepalive_interval == p->keepalive_interval && s->p.keepalive_count == p->keepalive_count;
}

static void session_register(struct session *s) {
        LIST_APPEND(registry, registry_tail, s);
        s->registered = true;
}

void session_unregister(struct session *s) {
        if (!s->registered)
                return;
        LIST_REMOVE(registry, registry_tail, s);
        s->registered = false;
}

static void tunnel_unlink(struct tunnel *t) {
        LIST_REMOVE(t->s->tunnels_head, t->s->tunnels_tail, t);
        t->s = NULL;
}

/* Takes t off its session: its forward is cancelled, its open connections closed, and the
 * session released when it was the last. */
static void tunnel_detach(struct tunnel *t) {
        struct session *s = t->s;
        if (!s)
                return;
        if (s->listen_for == t)
                s->listen_for = NULL;
        if (t->listener && s->state == SESSION_UP) {
                s->cancels = xrealloc(s->cancels, (s->n_cancels + 1) * sizeof(*s->cancels));
                s->cancels[s->n_cancels++] = t->listener;
        }
        t->listener = NULL;
        for (struct conn *c = s->conns_head; c; c = c->next)
                if (c->t == t) {
                        c->t = NULL;
                        conn_abort(c, -ECONNABORTED);
                }
        tunnel_unlink(t);
        if (!s->tunnels_head)
                session_release(s);
        else
                session_schedule(s);
}

void session_fail(struct session *s, int error, bool permanent, const char *fmt, ...) {
        if (s->state == SESSION_DOWN || s->freed)
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_(freep) char *msg = xvasprintf(fmt, ap);
        va_end(ap);

        s->state = SESSION_DOWN;
        session_unregister(s);
        resolve_free(s->resolve);
        s->resolve = NULL;
        sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->defer, SD_EVENT_OFF);
        for (struct conn *c = s->conns_head; c; c = c->next) {
                sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                c->t = NULL;
        }
        log_binding(LOG_DEBUG, NULL, "session", "SSH session %s ends: %s", s->label, msg);

        /* Every tunnel on it goes down with it. Each is taken off first, so its owner may
         * free it (or any other) from inside on_down. */
        session_enter(s);
        struct tunnel *t;
        while ((t = s->tunnels_head)) {
                t->listener = NULL;         /* freed with the session */
                t->state = FORWARD_WAITING;
                tunnel_unlink(t);
                if (t->cb.on_down)
                        t->cb.on_down(t, error < 0 ? error : -EIO, permanent, msg, t->userdata);
        }
        session_release(s);
        session_leave(s);
}

void session_log_line(struct session *s, const char *line) {
        for (struct tunnel *t = s->tunnels_head, *n; t; t = n) {
                n = t->next;
                if (t->cb.on_log)
                        t->cb.on_log(t, line, t->userdata);
        }
}

void tunnel_forward_granted(struct tunnel *t, LIBSSH2_LISTENER *listener, int bound_port) {
        t->listener = listener;
        t->bound_port = bound_port;
        t->state = FORWARD_UP;
        log_binding(LOG_DEBUG, t->name, "forward", "relay %s:%u listens on %s:%d for us", t->s->p.server,
                    t->s->p.server_port, t->bind_host, bound_port);
        if (t->cb.on_up)
                t->cb.on_up(t, t->userdata);
}

void tunnel_forward_refused(struct tunnel *t, int error, const char *message) {
        tunnel_detach(t);
        t->state = FORWARD_WAITING;
        if (t->cb.on_down)
                t->cb.on_down(t, error, false, message, t->userdata);
}

static void on_local_resolved(void *userdata, int gai_error, struct addr *addrs, size_t n_addrs) {
        struct tunnel *t = userdata;
        resolve_free(t->resolve);
        t->resolve = NULL;
        /* A local name that does not resolve is not fatal: each connection says so. */
        t->loc_resolve_error = gai_error;
        t->loc_addrs = addrs;
        t->n_loc_addrs = n_addrs;
        t->state = FORWARD_WAITING;
        if (t->s)
                session_schedule(t->s);
}

/* ---- public ---------------------------------------------------------------------------- */

int tunnel_new(sd_event *event, const struct tunnel_params *params, const struct tunnel_callbacks *cb,
               void *userdata, struct tunnel **ret) {
        struct session *s;
        struct addr a;
        int r;

        if (!event || !params || !ret || !params->server || !params->user || !params->local_host ||
            params->keepalive_interval == 0 || params->keepalive_count == 0)
                return -EINVAL;

        for (s = registry; s && !shareable(s, event, params); s = s->next)
                ;
        if (!s) {
                r = session_new(event, params, &s);
                if (r < 0)
                        return r;
                session_register(s);
        }

        struct tunnel *t = xcalloc(1, sizeof(*t));
        t->name = xstrdup(params->name ? params->name : "tunnel");
        t->bind_host = xstrdup(params->bind_host ? params->bind_host : "localhost");
        t->remote_port = params->remote_port;
        t->local_host = xstrdup(params->local_host);
        t->local_port = params->local_port;
        if (cb)
                t->cb = *cb;
        t->userdata = userdata;

        if (parse_literal(t->local_host, t->local_port, &a) == 0) {
                t->loc_addrs = xmalloc(sizeof(a));
                t->loc_addrs[0] = a;
                t->n_loc_addrs = 1;
                t->state = FORWARD_WAITING;
        } else if (resolve_start(event, t->local_host, t->local_port, on_local_resolved, t, &t->resolve) < 0) {
                t->loc_resolve_error = EAI_SYSTEM;
                t->state = FORWARD_WAITING;
        } else
                t->state = FORWARD_RESOLVING;

        t->s = s;
        LIST_APPEND(s->tunnels_head, s->tunnels_tail, t);
        session_schedule(s);
        *ret = t;
        return 0;
}

void tunnel_free(struct tunnel *t) {
        if (!t)
                return;
        resolve_free(t->resolve);
        tunnel_detach(t);
        free(t->loc_addrs);
        free(t->name);
        free(t->bind_host);
        free(t->local_host);
        free(t);
}

void tunnel_get_stats(const struct tunnel *t, struct tunnel_stats *ret) {
        if (!t) {
                *ret = (struct tunnel_stats) { 0 };
                return;
        }
        *ret = t->stats;
}

void tunnel_get_algorithms(const struct tunnel *t, const char **cipher, const char **mac) {
        *cipher = *mac = NULL;
        if (t && t->s)
                session_algorithms(t->s, cipher, mac);
}

int tunnel_global_init(void) {
        return libssh2_init(0) == 0 ? 0 : -EIO;
}

void tunnel_global_done(void) {
        libssh2_exit();
}
