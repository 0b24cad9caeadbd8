/* The tunnel engine's face: each tunnel is one binding's reverse forward, attached to the
 * session that reaches its relay. Bindings that reach the same relay as the same user with
 * the same key, host key policy and keepalive share one SSH session (one tcpip-forward each
 * on it), the way `ssh -R a -R b` would; the caller's registry finds it. An `exclusive`
 * tunnel (API mode) always gets a session of its own. See tunnel.h. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "session.h"
#include "util.h"

static bool same_str(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

/* The session-sharing key: whether a tunnel with params p may join session s. */
static bool tunnel_shareable(const struct session *s, sd_event *event, const struct tunnel_params *p) {
        return !s->p.exclusive && !p->exclusive && s->event == event && same_str(s->p.server, p->server) &&
               s->p.server_port == p->server_port && same_str(s->p.proxy, p->proxy) && same_str(s->p.user, p->user) &&
               same_str(s->p.identity_file, p->identity_file) && same_str(s->p.known_hosts, p->known_hosts) &&
               s->p.host_key_check == p->host_key_check &&
               same_str(s->p.host_key_fingerprint, p->host_key_fingerprint) &&
               s->p.keepalive_interval == p->keepalive_interval && s->p.keepalive_count == p->keepalive_count &&
               s->p.edge_log == p->edge_log;
}

/* Takes t off its session: its forward is cancelled, its open connections closed, and the
 * session released when it was the last. */
static void tunnel_detach(struct tunnel *t) {
        struct session *s = t->s;
        if (!s)
                return;
        if (s->listen_for == t)
                s->listen_for = NULL;
        if (t->listener && s->state == SESSION_UP)
                forward_cancel_later(s, t->listener);
        t->listener = NULL;
        /* Aborting its connections may fail the session (a loop that is finishing cannot
         * schedule it): held, the session outlives this, and t is then off it already. */
        session_enter(s);
        bridge_abort_tunnel(s, t);
        if (t->s == s) {
                LIST_REMOVE(s->tunnels_head, s->tunnels_tail, t);
                t->s = NULL;
                if (!s->tunnels_head)
                        session_release(s);
                else
                        session_schedule(s);
        }
        session_leave(s);
}

void tunnel_forward_granted(struct tunnel *t, sshcall_listener *listener, int bound_port) {
        t->listener = listener;
        t->bound_port = bound_port;
        t->state = FORWARD_UP;
        log_binding(LOG_DEBUG, t->name, "forward", "relay %s:%u listens on %s:%d for us", t->s->p.server,
                    t->s->p.server_port, t->bind_host, bound_port);
        if (t->cb.on_up)
                t->cb.on_up(t, t->userdata);
}

void tunnel_local_ready(struct tunnel *t) {
        t->state = FORWARD_UP;
        log_binding(LOG_DEBUG, t->name, "forward", "session to relay %s:%u up: connections go to %s:%u",
                    t->s->p.server, t->s->p.server_port, t->target_host, t->target_port);
        if (t->cb.on_up)
                t->cb.on_up(t, t->userdata);
}

void tunnel_forward_refused(struct tunnel *t, int error, const char *message) {
        tunnel_detach(t);
        t->state = FORWARD_WAITING;
        if (t->cb.on_down)
                t->cb.on_down(t, error, false, message, t->userdata);
}

static void on_local_resolved(void *userdata, int gai_error, struct resolve_addr *addrs, size_t n_addrs) {
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

struct tunnel_registry *tunnel_registry_new(void) {
        return xcalloc(1, sizeof(struct tunnel_registry));
}

void tunnel_registry_free(struct tunnel_registry *r) {
        free(r);
}

int tunnel_new(struct tunnel_registry *registry, sd_event *event, const struct tunnel_params *params,
               const struct tunnel_callbacks *cb, void *userdata, struct tunnel **ret) {
        struct session *s;
        struct resolve_addr a;
        int r;

        if (!registry || !event || !params || !ret || !params->server || !params->user ||
            !(params->local_host || params->target_host) || params->keepalive_interval == 0 ||
            params->keepalive_count == 0)
                return -EINVAL;

        for (s = registry->head; s && !tunnel_shareable(s, event, params); s = s->next)
                ;
        if (!s) {
                r = session_new(event, registry, params, &s);
                if (r < 0)
                        return r;
        }
        struct tunnel *t = xcalloc(1, sizeof(*t));
        t->name = xstrdup(params->name ? params->name : "tunnel");
        t->bind_host = xstrdup(params->bind_host ? params->bind_host : "localhost");
        t->remote_port = params->remote_port;
        t->limit = params->limit;
        t->local_host = xstrdup(params->local_host);
        t->local_port = params->local_port;
        t->target_host = xstrdup(params->target_host);
        t->target_port = params->target_port;
        if (cb)
                t->cb = *cb;
        t->userdata = userdata;

        if (t->target_host)
                t->state = FORWARD_WAITING;       /* nothing local to resolve: connections come to us */
        else if (resolve_parse_literal(t->local_host, t->local_port, &a) == 0) {
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
        free(t->target_host);
        free(t->last_local_error);
        free(t);
}

int tunnel_open_local(struct tunnel *t, int fd, const char *peer, uint16_t peer_port) {
        struct session *s = t ? t->s : NULL;
        if (!s || !t->target_host || t->state != FORWARD_UP || s->state != SESSION_UP || s->freed) {
                close(fd);
                return -ENOTCONN;
        }
        struct bridge *b = bridge_new_local(s, t, fd);
        direct_queue(s, b, t, peer, peer_port);
        return 0;
}

uint16_t tunnel_get_bound_port(const struct tunnel *t) {
        if (!t || t->state != FORWARD_UP)
                return 0;
        return (uint16_t) (t->bound_port > 0 ? t->bound_port : t->remote_port);
}

const char *tunnel_get_local_error(const struct tunnel *t, bool *failing) {
        *failing = t && t->local_failing;
        return t ? t->last_local_error : NULL;
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
        if (t && t->s && t->s->ssh && t->s->state == SESSION_UP)
                sshcall_algorithms(t->s->ssh, cipher, mac);
}

int tunnel_global_init(void) {
        return sshcall_global_init();
}

void tunnel_global_done(void) {
        sshcall_global_done();
}
