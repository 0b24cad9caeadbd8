/* Local forwards: one listener and one engine tunnel each, with the bindings' backoff. See
 * localfwd.h. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "localfwd.h"
#include "log.h"
#include "manager.h"
#include "state.h"

#define ACCEPTS_PER_DISPATCH 64
#define LISTEN_BACKLOG 512
#define UNSERVED_LOG_USEC (5 * 1000000ULL)

enum localfwd_state {
        LOCALFWD_CONNECTING,
        LOCALFWD_UP,
        LOCALFWD_BACKOFF,
        LOCALFWD_FAILED,
        _LOCALFWD_MAX,
};

static const char *const state_names[_LOCALFWD_MAX] = {
        [LOCALFWD_CONNECTING] = PROTO_STATE_CONNECTING,
        [LOCALFWD_UP] = PROTO_STATE_UP,
        [LOCALFWD_BACKOFF] = PROTO_STATE_BACKOFF,
        [LOCALFWD_FAILED] = PROTO_STATE_FAILED,
};

struct localfwd {
        struct localfwds *set;
        struct forward_conf *conf;
        enum localfwd_state state;
        int fd;                         /* the listener, -1 if it could not be opened */
        sd_event_source *io;
        struct tunnel *tunnel;
        sd_event_source *timer;         /* backoff wait, or stable_after while up */
        unsigned failures;
        uint64_t attempts;
        uint64_t connected_since;       /* realtime usec */
        uint64_t next_attempt;
        char *last_error;
        char *last_refusal;             /* kept when the tunnel goes */
        struct tunnel_stats past;       /* of the tunnels before this one */
        uint64_t unserved;
        uint64_t unserved_logged;       /* when the last "not connected" line was logged */
};

struct localfwds {
        struct manager *m;
        struct localfwd **v;
        size_t n;
};

static void set_error(char **dst, const char *msg) {
        free(*dst);
        *dst = msg ? xstrdup(msg) : NULL;
}

/* ---- the session side ----------------------------------------------------------------- */

static void fwd_connect(struct localfwd *f);

static void keep_stats(struct localfwd *f) {
        struct tunnel_stats st;
        bool failing;
        if (!f->tunnel)
                return;
        tunnel_get_stats(f->tunnel, &st);
        f->past.connections_total += st.connections_total;
        f->past.connections_refused += st.connections_refused;
        f->past.bytes_in += st.bytes_in;
        f->past.bytes_out += st.bytes_out;
        const char *le = tunnel_get_local_error(f->tunnel, &failing);
        if (le)
                set_error(&f->last_refusal, le);
}

static void fwd_stop(struct localfwd *f) {
        keep_stats(f);
        tunnel_free(f->tunnel);
        f->tunnel = NULL;
        f->timer = sd_event_source_disable_unref(f->timer);
        f->connected_since = 0;
        f->next_attempt = 0;
}

static int on_backoff_done(sd_event_source *es, uint64_t usec, void *userdata) {
        struct localfwd *f = userdata;
        (void) es, (void) usec;
        f->timer = sd_event_source_disable_unref(f->timer);
        fwd_connect(f);
        return 0;
}

static int on_stable(sd_event_source *es, uint64_t usec, void *userdata) {
        struct localfwd *f = userdata;
        (void) es, (void) usec;
        f->timer = sd_event_source_disable_unref(f->timer);
        f->failures = 0;           /* up long enough: the next failure starts from `initial` */
        return 0;
}

static void on_up(struct tunnel *t, void *userdata) {
        struct localfwd *f = userdata;
        const struct config *c = f->set->m->config;
        (void) t;
        f->state = LOCALFWD_UP;
        f->connected_since = now_realtime_usec();
        f->next_attempt = 0;
        set_error(&f->last_error, NULL);
        if (sd_event_add_time_relative(f->set->m->event, &f->timer, CLOCK_MONOTONIC,
                                       (uint64_t) c->stable_after * USEC_PER_SEC, 0, on_stable, f) < 0)
                log_binding(LOG_WARNING, f->conf->name, PROTO_EVENT_UP, "cannot arm the stable_after timer");
        _cleanup_(freep) char *target = conf_forward_target(f->conf);
        log_binding(LOG_NOTICE, f->conf->name, PROTO_EVENT_UP, "up: local forward %s -> %s through the relay",
                    f->conf->listen, target);
}

static void on_down(struct tunnel *t, int error, bool permanent, const char *message, void *userdata) {
        struct localfwd *f = userdata;
        const struct config *c = f->set->m->config;
        (void) t, (void) error;
        if (f->state == LOCALFWD_UP)
                log_binding(LOG_WARNING, f->conf->name, "down", "down: %s", message);
        set_error(&f->last_error, message);
        fwd_stop(f);
        if (permanent) {
                f->state = LOCALFWD_FAILED;
                log_binding(LOG_ERR, f->conf->name, "failed", "failed: %s; not retrying until the forward or "
                            "config changes", message);
                return;
        }
        uint64_t delay = backoff_usec((uint64_t) c->backoff_initial * USEC_PER_SEC,
                                      (uint64_t) c->backoff_max * USEC_PER_SEC, f->failures);
        f->failures++;
        f->state = LOCALFWD_BACKOFF;
        f->next_attempt = now_realtime_usec() + delay;
        if (sd_event_add_time_relative(f->set->m->event, &f->timer, CLOCK_MONOTONIC, delay, 0, on_backoff_done,
                                       f) < 0) {
                log_binding(LOG_ERR, f->conf->name, "backoff", "%s; cannot arm the retry timer", message);
                return;
        }
        log_binding(LOG_NOTICE, f->conf->name, "backoff", "%s; retrying in %.1f s", message,
                    (double) delay / USEC_PER_SEC);
}

static const struct tunnel_callbacks callbacks = { .on_up = on_up, .on_down = on_down };

static void fwd_connect(struct localfwd *f) {
        const struct config *c = f->set->m->config;
        const char *server;
        uint16_t port;
        conf_relay(c, 0, &server, &port);
        if (!c->ssh_user) {
                f->state = LOCALFWD_FAILED;
                set_error(&f->last_error, "a local forward needs [ssh] user (the relay login)");
                return;
        }
        struct tunnel_params p = manager_session_params(f->set->m, server, port, c->ssh_user);
        p.name = f->conf->name;
        p.target_host = f->conf->target_host;
        p.target_port = f->conf->target_port;
        f->attempts++;
        f->state = LOCALFWD_CONNECTING;
        int r = tunnel_new(f->set->m->tunnels, f->set->m->event, &p, &callbacks, f, &f->tunnel);
        if (r < 0) {
                _cleanup_(freep) char *msg = xasprintf("cannot start the tunnel: %s", strerror(-r));
                on_down(NULL, r, false, msg, f);
        }
}

/* ---- the listener -------------------------------------------------------------------- */

static void unserved(struct localfwd *f) {
        uint64_t now = now_monotonic_usec();
        f->unserved++;
        /* A client retrying in a loop would otherwise write a line per attempt. */
        if (f->unserved_logged && now < f->unserved_logged + UNSERVED_LOG_USEC)
                return;
        f->unserved_logged = now;
        log_binding(LOG_NOTICE, f->conf->name, "unserved", "relay session %s; closing a local connection at once",
                    f->state == LOCALFWD_FAILED ? "failed" : "not up yet");
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct localfwd *f = userdata;
        (void) es, (void) revents;
        for (int i = 0; i < ACCEPTS_PER_DISPATCH; i++) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof(ss);
                int c = accept4(fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_binding(LOG_WARNING, f->conf->name, "accept", "accept on %s: %s",
                                            f->conf->listen, strerror(errno));
                        return 0;
                }
                if (f->state != LOCALFWD_UP) {
                        close(c);
                        unserved(f);
                        continue;
                }
                int one = 1;
                (void) setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                char host[INET6_ADDRSTRLEN] = "127.0.0.1";
                uint16_t port = 0;
                if (ss.ss_family == AF_INET) {
                        const struct sockaddr_in *a = (const void *) &ss;
                        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
                        port = ntohs(a->sin_port);
                } else if (ss.ss_family == AF_INET6) {
                        const struct sockaddr_in6 *a = (const void *) &ss;
                        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
                        port = ntohs(a->sin6_port);
                }
                if (tunnel_open_local(f->tunnel, c, host, port) < 0)
                        unserved(f);
        }
        return 0;
}

/* Opens the listener; returns 0 or -errno with *error (caller frees). */
static int fwd_listen(struct localfwd *f, char **error) {
        struct sockaddr_storage ss;
        unsigned len;
        int r = parse_listen_address(f->conf->listen, &ss, &len);
        if (r < 0) {
                *error = xasprintf("\"%s\" is not IPV4:PORT or [IPV6]:PORT", f->conf->listen);
                return r;
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                *error = xasprintf("cannot listen on %s: %s", f->conf->listen, strerror(-r));
                return r;
        }
        r = sd_event_add_io(f->set->m->event, &f->io, fd, EPOLLIN, on_accept, f);
        if (r < 0) {
                close(fd);
                *error = xasprintf("cannot watch the listener on %s: %s", f->conf->listen, strerror(-r));
                return r;
        }
        f->fd = fd;
        return 0;
}

/* ---- one forward's life -------------------------------------------------------------- */

static struct localfwd *fwd_new(struct localfwds *s, struct forward_conf *fc) {
        struct localfwd *f = xcalloc(1, sizeof(*f));
        f->set = s;
        f->conf = fc;
        f->fd = -1;
        f->state = LOCALFWD_CONNECTING;
        return f;
}

/* Listens, then connects; a listener that cannot open leaves f failed. */
static int fwd_start(struct localfwd *f, char **error) {
        int r = fwd_listen(f, error);
        if (r < 0) {
                f->state = LOCALFWD_FAILED;
                set_error(&f->last_error, *error);
                return r;
        }
        fwd_connect(f);
        return 0;
}

static void fwd_free(struct localfwd *f) {
        if (!f)
                return;
        fwd_stop(f);
        f->io = sd_event_source_disable_unref(f->io);
        if (f->fd >= 0)
                close(f->fd);
        conf_forward_free(f->conf);
        free(f->last_error);
        free(f->last_refusal);
        free(f);
}

static void append(struct localfwds *s, struct localfwd *f) {
        s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
        s->v[s->n++] = f;
}

static void detach(struct localfwds *s, size_t i) {
        memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
        s->n--;
}

/* ---- the set ------------------------------------------------------------------------- */

struct localfwds *localfwd_new(struct manager *m) {
        struct localfwds *s = xcalloc(1, sizeof(*s));
        s->m = m;
        for (size_t i = 0; i < m->config->n_forwards; i++)
                append(s, fwd_new(s, conf_forward_dup(m->config->forwards[i])));
        return s;
}

static void start_logged(struct localfwd *f) {
        _cleanup_(freep) char *error = NULL;
        if (fwd_start(f, &error) < 0)
                log_binding(LOG_ERR, f->conf->name, "failed", "failed: %s; fix it and reload", error);
}

void localfwd_start(struct localfwds *s) {
        for (size_t i = 0; i < s->n; i++)
                start_logged(s->v[i]);
}

void localfwd_free(struct localfwds *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                fwd_free(s->v[i]);
        free(s->v);
        free(s);
}

int localfwd_find(const struct localfwds *s, const char *name, size_t *ret) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->v[i]->conf->name, name)) {
                        *ret = i;
                        return 0;
                }
        return -ENOENT;
}

size_t localfwd_count(const struct localfwds *s) {
        return s->n;
}

int localfwd_add(struct localfwds *s, struct forward_conf *fc, enum proto_code *code, char **error) {
        const struct config *c = s->m->config;
        struct strv errors = { 0 };
        size_t i;
        int r;
        if (localfwd_find(s, fc->name, &i) == 0) {
                const struct forward_conf *o = s->v[i]->conf;
                *code = PROTO_CODE_EXISTS;
                *error = o->source == BINDING_SOURCE_CONFIG
                        ? xasprintf("forward \"%s\" already exists (defined at %s:%u)", fc->name, o->file, o->line)
                        : xasprintf("forward \"%s\" already exists (added at run time)", fc->name);
                return -EEXIST;
        }
        if (conf_forward_validate(fc, &errors) < 0) {
                *code = PROTO_CODE_INVALID;
                *error = xstrdup(errors.items[0]);
                strv_clear(&errors);
                return -EINVAL;
        }
        if (!c->ssh_user) {
                *code = PROTO_CODE_INVALID;
                *error = xasprintf("a local forward needs [ssh] user in %s (the relay login)", c->path);
                return -EINVAL;
        }
        for (i = 0; i < s->n; i++)
                if (conf_forward_listen_clash(&s->v[i]->conf, 1, fc)) {
                        *code = PROTO_CODE_INVALID;
                        *error = xasprintf("[forward \"%s\"] listen: %s is already used by forward \"%s\"", fc->name,
                                           fc->listen, s->v[i]->conf->name);
                        return -EADDRINUSE;
                }
        fc->source = BINDING_SOURCE_RUNTIME;
        free(fc->file);
        fc->file = state_forward_path(c->state_dir, fc->name);
        fc->line = 1;
        struct localfwd *f = fwd_new(s, fc);
        r = fwd_listen(f, error);            /* a busy port says so before anything is kept */
        if (r < 0) {
                *code = PROTO_CODE_INVALID;
                f->conf = NULL;
                fwd_free(f);
                return r;
        }
        /* Durable before we say yes, like a binding. */
        r = state_save_forward(c->state_dir, fc);
        if (r < 0) {
                *code = PROTO_CODE_INTERNAL;
                *error = xasprintf("cannot save forward \"%s\" to %s: %s", fc->name, fc->file, strerror(-r));
                f->conf = NULL;
                fwd_free(f);
                return r;
        }
        append(s, f);
        _cleanup_(freep) char *target = conf_forward_target(fc);
        log_binding(LOG_INFO, fc->name, "add", "added: local forward %s -> %s", fc->listen, target);
        fwd_connect(f);
        return 0;
}

int localfwd_remove(struct localfwds *s, const char *name, enum proto_code *code, char **error) {
        size_t i;
        if (localfwd_find(s, name, &i) < 0) {
                *code = PROTO_CODE_NOT_FOUND;
                *error = xasprintf("no forward named \"%s\"", name);
                return -ENOENT;
        }
        struct localfwd *f = s->v[i];
        if (f->conf->source == BINDING_SOURCE_CONFIG) {
                *code = PROTO_CODE_CONFIG_OWNED;
                *error = xasprintf("forward \"%s\" is defined in %s:%u; remove it there and run mysocketctl reload",
                                   name, f->conf->file, f->conf->line);
                return -EPERM;
        }
        int r = state_remove_forward(s->m->config->state_dir, name);
        if (r < 0) {
                *code = PROTO_CODE_INTERNAL;
                *error = xasprintf("cannot remove %s: %s; forward kept", f->conf->file, strerror(-r));
                return r;
        }
        log_binding(LOG_INFO, name, "remove", "removed");
        detach(s, i);
        fwd_free(f);
        return 0;
}

void localfwd_reload(struct localfwds *s, bool transport_same, struct strv *added, struct strv *removed,
                      struct strv *changed) {
        const struct config *nc = s->m->config;
        for (size_t i = s->n; i > 0; i--) {
                struct localfwd *f = s->v[i - 1];
                const struct forward_conf *want = NULL;
                for (size_t j = 0; j < nc->n_forwards && !want; j++)
                        if (streq(nc->forwards[j]->name, f->conf->name))
                                want = nc->forwards[j];
                if (!want) {
                        strv_pushf(removed, "forward %s", f->conf->name);
                        log_binding(LOG_INFO, f->conf->name, "remove", "removed by reload");
                        detach(s, i - 1);
                        fwd_free(f);
                        continue;
                }
                if (conf_forward_equal(f->conf, want) && f->fd >= 0) {
                        if (!transport_same || f->state == LOCALFWD_FAILED) {
                                fwd_stop(f);
                                f->failures = 0;
                                fwd_connect(f);
                        }
                        continue;
                }
                strv_pushf(changed, "forward %s", f->conf->name);
                detach(s, i - 1);
                fwd_free(f);       /* its listener closes before the new one binds */
                struct localfwd *n = fwd_new(s, conf_forward_dup(want));
                append(s, n);
                start_logged(n);
        }
        for (size_t j = 0; j < nc->n_forwards; j++) {
                size_t k;
                if (localfwd_find(s, nc->forwards[j]->name, &k) == 0)
                        continue;
                struct localfwd *n = fwd_new(s, conf_forward_dup(nc->forwards[j]));
                append(s, n);
                strv_pushf(added, "forward %s", n->conf->name);
                start_logged(n);
        }
}

void localfwd_to_proto(const struct localfwds *s, size_t i, struct proto_forward *p) {
        const struct localfwd *f = s->v[i];
        struct tunnel_stats st = { 0 };
        bool failing;
        tunnel_get_stats(f->tunnel, &st);
        const char *refusal = f->tunnel ? tunnel_get_local_error(f->tunnel, &failing) : NULL;
        *p = (struct proto_forward) {
                .name = xstrdup(f->conf->name),
                .source = xstrdup(f->conf->source == BINDING_SOURCE_CONFIG ? PROTO_SOURCE_CONFIG : PROTO_SOURCE_RUNTIME),
                .listen = xstrdup(f->conf->listen),
                .target = conf_forward_target(f->conf),
                .state = xstrdup(state_names[f->state]),
                .connected_since = f->connected_since,
                .reconnects = f->attempts > 1 ? f->attempts - 1 : 0,
                .connections_active = st.connections_active,
                .connections_total = f->past.connections_total + st.connections_total,
                .connections_refused = f->past.connections_refused + st.connections_refused,
                .connections_unserved = f->unserved,
                .bytes_in = f->past.bytes_in + st.bytes_in,
                .bytes_out = f->past.bytes_out + st.bytes_out,
                .last_error = xstrdup(f->last_error),
                .last_refusal = xstrdup(refusal ? refusal : f->last_refusal),
                .next_attempt = f->next_attempt,
                .defined_at = f->conf->source == BINDING_SOURCE_CONFIG ? xasprintf("%s:%u", f->conf->file, f->conf->line)
                                                                       : xstrdup(f->conf->file),
        };
}
