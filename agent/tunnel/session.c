/* One SSH session to a relay: its life, its events, keepalives and liveness, and the pump
 * that drives every libssh2 call once it is up. Reaching the relay is reach.c's, the
 * forwards and the log shell forward.c's, the channels bridge.c's; see session.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "session.h"
#include "util.h"

static void session_destroy(struct session *s);
static void session_fail(struct session *s, int error, bool permanent, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void session_unregister(struct session *s);

bool session_stopped(const struct session *s) {
        return s->state == SESSION_DOWN || s->freed || (s->ssh && sshcall_pending(s->ssh));
}

static bool down(const struct session *s) {
        return s->state == SESSION_DOWN || s->freed;
}

static uint64_t now_usec(struct session *s) {
        uint64_t now;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

/* An event source that cannot be driven ends the session: it would stall otherwise. Once
 * the loop has finished (-ESTALE: the daemon is tearing down), nothing will run again
 * anyway, and failing the session would only call back into owners being freed. */
static bool checked(struct session *s, int k, const char *what) {
        if (k >= 0)
                return true;
        if (k == -ESTALE)
                return false;
        session_fail(s, k, false, "cannot %s: %s", what, strerror(-k));
        return false;
}

/* ---- event plumbing --------------------------------------------------------------------- */

void session_enter(struct session *s) {
        if (s->depth++ == 0 && s->ssh) {
                sshcall_dispatch_begin(s->ssh);
                sshcall_hold(s->ssh);
        }
}

void session_leave(struct session *s) {
        if (--s->depth > 0)
                return;
        if (s->ssh)
                sshcall_push(s->ssh);
        if (s->freed) {
                session_destroy(s);
                return;
        }
        if (s->ssh && sshcall_dispatch_end(s->ssh)) {
                /* Input is left that no epoll event announces, or the budget ran out: go
                 * round again on the next turn, after the loop's other sources. */
                s->sweep_all = true;
                session_schedule(s);
        }
}

static int on_defer(sd_event_source *src, void *userdata);

/* A fresh defer source each time, dropped when it runs. sd-event never takes a defer source
 * off its pending queue (enabling one only makes it eligible again), so it keeps the place
 * it got when it was created: one re-enabled from its own callback runs before every I/O
 * and timer source of the same priority, on every turn. Under a channel-data flood that
 * fills the input budget at every dispatch, that kept the control socket, the timers and
 * the other sessions waiting for as long as the flood lasted (1-2.5 s per `status` with
 * libssh2 1.11, whose AES-GCM makes it fast enough). A new source queues behind what is
 * already waiting. */
void session_schedule(struct session *s) {
        if (!s->defer && !down(s))
                (void) checked(s, sd_event_add_defer(s->event, &s->defer, on_defer, s), "schedule the session");
}

static void update_events(struct session *s) {
        if (!s->io || down(s))
                return;
        uint32_t ev = EPOLLIN;
        if (sshcall_wants_output(s->ssh) || s->want_room)
                ev |= EPOLLOUT;
        (void) checked(s, sd_event_source_set_io_events(s->io, ev), "watch the relay socket");
}

static void arm_timer(struct session *s, uint64_t when) {
        int k = sd_event_source_set_time(s->timer, when);
        if (k >= 0)
                k = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        (void) checked(s, k, "arm the keepalive timer");
}

static uint64_t dead_after_usec(const struct session *s) {
        uint64_t d = (uint64_t) s->p.keepalive_interval * s->p.keepalive_count;
        /* With a single interval a late probe reply would race the deadline. */
        if (s->p.keepalive_count < 2)
                d += 2;
        return d * USEC_PER_SEC;
}

/* ---- failing ---------------------------------------------------------------------------- */

static void session_fail(struct session *s, int error, bool permanent, const char *fmt, ...) {
        if (down(s))
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_(freep) char *msg = xvasprintf(fmt, ap);
        va_end(ap);

        s->state = SESSION_DOWN;
        session_unregister(s);
        reach_free(s->reach);
        s->reach = NULL;
        s->io = sd_event_source_disable_unref(s->io);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->defer = sd_event_source_disable_unref(s->defer);
        bridge_quiesce_all(s);
        log_binding(LOG_DEBUG, NULL, "session", "SSH session %s ends: %s", s->label, msg);

        /* Every tunnel on it goes down with it. Each is taken off first, so its owner may
         * free it (or any other) from inside on_down. */
        session_enter(s);
        struct tunnel *t;
        while ((t = s->tunnels_head)) {
                t->listener = NULL;         /* freed with the session */
                t->state = FORWARD_WAITING;
                LIST_REMOVE(s->tunnels_head, s->tunnels_tail, t);
                t->s = NULL;
                if (t->cb.on_down)
                        t->cb.on_down(t, error < 0 ? error : -EIO, permanent, msg, t->userdata);
        }
        session_release(s);
        session_leave(s);
}

void session_lost(struct session *s, const char *what) {
        int e = sshcall_end_errno(s->ssh);
        if (sshcall_closed_by_peer(s->ssh))
                session_fail(s, -ECONNRESET, false, "relay %s:%u closed the connection", s->p.server, s->p.server_port);
        else if (sshcall_socket_broken(s->ssh))
                session_fail(s, e, false, "connection to relay %s:%u lost: %s", s->p.server, s->p.server_port,
                             strerror(-e));
        else
                session_fail(s, e ? e : -EIO, false, "SSH session with %s:%u failed%s%s%s: %s", s->p.server,
                             s->p.server_port, what ? " (" : "", what ? what : "", what ? ")" : "",
                             sshcall_message(s->ssh));
}

void session_log_line(struct session *s, const char *line) {
        for (struct tunnel *t = s->tunnels_head, *n; t; t = n) {
                n = t->next;
                if (t->cb.on_log)
                        t->cb.on_log(t, line, t->userdata);
        }
}

/* The relay ended the shell: keep a bare session channel for the probes, once. */
void session_log_closed(struct session *s, int error) {
        s->log = NULL;
        if (s->state == SESSION_UP && s->log_phase == LOG_RUNNING && !s->freed) {
                s->log_phase = error == 0 && s->log_reopens++ < 1 ? LOG_OPEN : LOG_NONE;
                log_binding(LOG_DEBUG, NULL, "edge-log", "the relay ended the log shell of %s%s", s->label,
                            s->log_phase == LOG_OPEN ? "; opening a bare session channel for the probes" : "");
                session_schedule(s);
        }
}

/* Some listener of the session, for the pure read that resumes what libssh2 queued by
 * itself: a live forward's first, else one waiting to be cancelled. */
static sshcall_listener *session_any_listener(struct session *s) {
        for (struct tunnel *t = s->tunnels_head; t; t = t->next)
                if (t->listener)
                        return t->listener;
        return s->n_cancels > 0 ? s->cancels[0] : NULL;
}

/* ---- the pump -------------------------------------------------------------------------- */

static void accept_done(struct session *s, sshcall_listener *listener, ssize_t r) {
        if (r == 1) {
                struct tunnel *t = s->tunnels_head;
                while (t && t->listener != listener)
                        t = t->next;
                sshcall_channel *ch = sshcall_accepted(s->ssh);
                sshcall_merge_stderr(ch, false);
                /* Over the cap: closed at once, like a forward being cancelled. The line is
                 * the same each time, so log.c's rate limit keeps a flood to a few lines. */
                if (t && t->limit && t->limit->max && t->limit->active >= t->limit->max) {
                        t->stats.connections_refused++;
                        log_binding(LOG_WARNING, t->name, "connection-refused", "connection from the relay "
                                    "refused: %u connections open (max_connections)", t->limit->max);
                        t = NULL;
                }
                /* With no tunnel (its binding was just removed) the channel is closed at once. */
                bridge_new(s, t, ch, false);
                return;
        }
        /* forward_accept() says "channel not found" for a dead socket: trust our own view. */
        if (!sshcall_again(r) && sshcall_socket_broken(s->ssh))
                session_lost(s, NULL);
}

/* Runs the one call that left a packet half sent. Returns false while it still blocks. */
static bool retry_pending(struct session *s) {
        struct sshcall_op op = *sshcall_pending(s->ssh);
        ssize_t r;
        if (op.owner) {
                bridge_retry(op.owner, &op);
        } else if (op.kind == SSHCALL_RESUME) {
                sshcall_listener *l = session_any_listener(s);
                if (l) {
                        r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_ACCEPT, .listener = l });
                        accept_done(s, l, r);
                } else if (!s->log || !bridge_resume_read(s->log)) {
                        /* No listener to read with, and no log shell: nothing can resume it. */
                        session_fail(s, -EPROTO, false, "SSH session with %s:%u stalled: a reply queued by "
                                     "libssh2 cannot be resumed", s->p.server, s->p.server_port);
                        return false;
                }
        } else {
                r = sshcall_run(s->ssh, op);
                if (op.kind == SSHCALL_LISTEN)
                        forward_done(s, r);
                else if (op.kind == SSHCALL_CANCEL)
                        forward_cancel_done(s, op.listener, r);
                else if (op.kind == SSHCALL_OPEN_SESSION || op.kind == SSHCALL_SHELL)
                        forward_log_done(s, op.kind, r);
                else if (op.kind == SSHCALL_OPEN_DIRECT)
                        direct_done(s, r);
                else if (r < 0 && !sshcall_again(r) && sshcall_ended(s->ssh))
                        session_lost(s, NULL);
        }
        if (session_stopped(s))
                return false;
        /* The call that blocked cut some connection's work short (a write with more of its
         * buffer to send, whose local socket is not polled while that buffer is full), and
         * for a reply libssh2 queued by itself we cannot tell whose: visit them all now. */
        s->sweep_all = true;
        return true;
}

/* Channels the relay opened, on every forward. The first accept drains the socket; for the
 * others recv is dry (sshcall_dispatch_begin), so 200 forwards cost one recv, not 200. */
static bool accept_all(struct session *s) {
        bool accepted = false;
        for (struct tunnel *t = s->tunnels_head, *n; t; t = n) {
                n = t->next;
                if (!t->listener)
                        continue;
                accepted = true;
                for (;;) {
                        sshcall_listener *l = t->listener;
                        ssize_t r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_ACCEPT, .listener = l });
                        accept_done(s, l, r);
                        if (session_stopped(s))
                                return false;
                        if (r != 1)
                                break;
                }
        }
        if (!accepted) {
                /* Local forwards only: no accept drains the socket into libssh2, and with the
                 * bytes left in the kernel no channel would see them (nor rx_gen move). A pure
                 * read on the log channel does it; without one, every channel's read. */
                if (!s->log || bridge_closing(s->log) || !bridge_resume_read(s->log))
                        s->sweep_all = true;
                if (session_stopped(s))
                        return false;
        }
        return true;
}

static void up_pump(struct session *s) {
        /* Cancels first: a binding removed and added again asks for the same port. */
        if (!forward_cancel_step(s) || !forward_step(s))
                return;
        if ((s->log_phase == LOG_OPEN || s->log_phase == LOG_SHELL) && !s->opening && !forward_log_step(s))
                return;
        if (!direct_step(s))
                return;
        if (session_stopped(s) || !accept_all(s))
                return;

        if (s->probe_due) {
                if (s->log && !bridge_closing(s->log) && s->log_phase == LOG_RUNNING) {
                        if (!bridge_probe_inflight(s->log))
                                bridge_probe(s->log);
                } else {
                        ssize_t r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_KEEPALIVE });
                        if (r < 0 && !sshcall_again(r) && sshcall_ended(s->ssh)) {
                                session_lost(s, "keepalive");
                                return;
                        }
                }
                s->probe_due = false;
                if (session_stopped(s))
                        return;
        }
        if (s->log && bridge_probe_inflight(s->log)) {
                bridge_probe(s->log);
                if (session_stopped(s))
                        return;
        }

        /* Every channel shares the one socket and libssh2 demultiplexes into its own queues,
         * so any byte received may be for any channel: then visit them all. Otherwise only
         * those with work of their own (local data, buffer space freed). */
        uint64_t gen = sshcall_rx_gen(s->ssh);
        if (gen != s->rx_gen_seen) {
                s->rx_gen_seen = gen;
                s->sweep_all = true;
        }
        s->want_room = false;
        if (!bridge_sweep(s, s->sweep_all))
                return;
        s->sweep_all = false;
        /* Any libssh2 call reads the socket: bytes that came in during the sweep may be
         * queued inside libssh2 for a connection already visited, with the socket now
         * empty, so no wakeup would come until the next keepalive. Go round again. */
        if (sshcall_rx_gen(s->ssh) != s->rx_gen_seen)
                session_schedule(s);
        if (s->log_phase == LOG_OPEN)
                session_schedule(s);
}

void session_pump(struct session *s) {
        if (down(s) || s->state != SESSION_UP)
                return;
        /* This is the turn a schedule asked for: what it finds to do asks again. */
        s->defer = sd_event_source_disable_unref(s->defer);
        if (sshcall_pending(s->ssh) && !retry_pending(s))
                goto out;
        up_pump(s);
        if (!down(s) && sshcall_socket_broken(s->ssh))
                session_lost(s, NULL);
out:
        update_events(s);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct session *s = userdata;
        (void) src, (void) fd, (void) revents;
        session_enter(s);
        session_pump(s);
        session_leave(s);
        return 0;
}

static int on_defer(sd_event_source *src, void *userdata) {
        struct session *s = userdata;
        (void) src;
        s->defer = sd_event_source_disable_unref(s->defer);     /* once; freed after this callback */
        session_enter(s);
        session_pump(s);
        session_leave(s);
        return 0;
}

/* Keepalives and liveness.
 *
 * libssh2_keepalive_send() with want_reply=0 gets no answer, and want_reply=1 is unusable in
 * 1.10 (the relay's REQUEST_FAILURE is taken as the reply to a later tcpip-forward). A
 * window adjust or SSH_MSG_IGNORE gets no answer either. What OpenSSH always answers, and
 * libssh2 matches by channel number (so nothing else can take the reply), is a channel
 * request with want_reply: every keepalive_interval we send "env" on the log channel; sshd
 * refuses env on a running shell with CHANNEL_FAILURE, which is all we need: bytes came
 * back. Every byte counts as life, so a busy session needs no probe replies. Nothing
 * received for keepalive_interval * keepalive_count seconds: the relay is declared dead.
 * Without a log channel (relay refused sessions) only the libssh2 keepalive is sent and
 * TCP_USER_TIMEOUT (the same interval * count) catches unacknowledged data. */
static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct session *s = userdata;
        (void) src, (void) usec;
        session_enter(s);
        if (s->state == SESSION_UP) {
                uint64_t now = now_usec(s), dead = dead_after_usec(s), last_rx = sshcall_last_rx(s->ssh);
                /* Liveness needs something that answers: the probe on the log channel. */
                bool probing = s->log && s->log_phase == LOG_RUNNING;
                if (probing && now >= last_rx + dead) {
                        session_fail(s, -ETIMEDOUT, false, "relay %s:%u stopped answering (nothing received for "
                                     "%" PRIu64 " s); the session is presumed dead", s->p.server, s->p.server_port,
                                     (uint64_t) ((now - last_rx) / USEC_PER_SEC));
                        goto out;
                }
                if (now >= s->next_probe) {
                        s->probe_due = true;
                        s->next_probe = now + s->p.keepalive_interval * USEC_PER_SEC;
                        session_pump(s);
                }
                if (!down(s)) {
                        uint64_t next = s->next_probe;
                        if (probing && last_rx + dead < next)
                                next = last_rx + dead;
                        arm_timer(s, next);
                }
        }
out:
        session_leave(s);
        return 0;
}

/* ---- life ------------------------------------------------------------------------------- */

static void on_reached(void *userdata, int error, bool permanent, const char *message, struct sshcall *ssh, int fd) {
        struct session *s = userdata;
        reach_free(s->reach);
        s->reach = NULL;
        session_enter(s);
        if (error < 0) {
                session_fail(s, error, permanent, "%s", message);
                goto out;
        }
        s->ssh = ssh;
        s->fd = fd;
        sshcall_dispatch_begin(ssh);
        s->state = SESSION_UP;
        s->log_phase = LOG_OPEN;
        s->next_probe = now_usec(s) + s->p.keepalive_interval * USEC_PER_SEC;
        if (!checked(s, sd_event_add_io(s->event, &s->io, fd, EPOLLIN, on_io, s), "watch the relay socket") ||
            !checked(s, sd_event_add_time(s->event, &s->timer, CLOCK_MONOTONIC, s->next_probe, 50000, on_timer, s),
                     "arm the keepalive timer"))
                goto out;
        const char *cipher, *mac;
        sshcall_algorithms(ssh, &cipher, &mac);
        log_binding(LOG_DEBUG, NULL, "session", "SSH session %s up: cipher %s%s%s", s->label,
                    cipher ? cipher : "?", mac ? ", MAC " : " (AEAD, no separate MAC)", mac ? mac : "");
        session_pump(s);
out:
        session_leave(s);
}

static void session_register(struct session *s) {
        LIST_APPEND(s->registry->head, s->registry->tail, s);
        s->registered = true;
}

static void session_unregister(struct session *s) {
        if (!s->registered)
                return;
        LIST_REMOVE(s->registry->head, s->registry->tail, s);
        s->registered = false;
}

int session_new(sd_event *event, struct tunnel_registry *registry, const struct tunnel_params *params,
                struct session **ret) {
        struct session *s = xcalloc(1, sizeof(*s));
        int r;

        s->event = sd_event_ref(event);
        s->registry = registry;
        s->p = (struct tunnel_params) {
                .server = xstrdup(params->server),
                .server_port = params->server_port,
                .proxy = xstrdup(params->proxy),
                .user = xstrdup(params->user),
                .identity_file = xstrdup(params->identity_file),
                .known_hosts = xstrdup(params->known_hosts),
                .host_key_check = params->host_key_check,
                .host_key_fingerprint = xstrdup(params->host_key_fingerprint),
                .keepalive_interval = params->keepalive_interval,
                .keepalive_count = params->keepalive_count,
                .exclusive = params->exclusive,
                .edge_log = params->edge_log,
        };
        s->label = xasprintf("%s@%s:%u", params->user, params->server, params->server_port);
        s->fd = -1;
        s->state = SESSION_REACHING;
        s->log_phase = LOG_NONE;

        uint64_t setup = (uint64_t) params->keepalive_interval * params->keepalive_count;
        if (setup < SETUP_TIMEOUT_MIN_SEC)
                setup = SETUP_TIMEOUT_MIN_SEC;
        r = reach_start(event, &s->p, now_usec(s) + setup * USEC_PER_SEC, on_reached, s, &s->reach);
        if (r < 0) {
                session_destroy(s);
                return r;
        }
        session_register(s);
        *ret = s;
        return 0;
}

static void session_destroy(struct session *s) {
        session_unregister(s);
        reach_free(s->reach);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->defer = sd_event_source_disable_unref(s->defer);
        s->io = sd_event_source_disable_unref(s->io);
        bool polite = s->state == SESSION_UP;
        s->state = SESSION_DOWN;          /* its bridges go quietly: no log channel reopen */
        bridge_free_all(s);
        sshcall_free(s->ssh, polite);
        if (s->fd >= 0)
                close(s->fd);
        free(s->cancels);
        free(s->opens);
        free(s->open_host);
        free(s->listen_host);
        free(s->label);
        free((char *) s->p.server);
        free((char *) s->p.proxy);
        free((char *) s->p.user);
        free((char *) s->p.identity_file);
        free((char *) s->p.known_hosts);
        free((char *) s->p.host_key_fingerprint);
        sd_event_unref(s->event);
        free(s);
}

/* The last tunnel left: the session ends now, or when the handler on the stack unwinds. */
void session_release(struct session *s) {
        if (s->depth == 0) {
                session_destroy(s);
                return;
        }
        session_unregister(s);
        s->io = sd_event_source_disable_unref(s->io);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->defer = sd_event_source_disable_unref(s->defer);
        reach_free(s->reach);
        s->reach = NULL;
        s->freed = true;
}
