/* The tunnel engine, session side: when libssh2 calls are made. The pump that drives every
 * call of a session, keepalives and liveness, and the session's life. How one call is made
 * (I/O callbacks, errors, the one-pending-call discipline) is in tunnel-ops.c, tunnels (one
 * binding's forward each) in tunnel.c, reaching the relay in tunnel-connect.c, session
 * setup and forwards in tunnel-setup.c, channel <-> socket bridging in tunnel-bridge.c,
 * host keys in hostkey.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "list.h"
#include "log.h"
#include "tunnel-internal.h"

/* ---- event plumbing --------------------------------------------------------------------- */

/* Every event handler of a session starts with this. A new event is when the socket may hold
 * bytes again: until then, each libssh2 call that polls it (a write first reads what came
 * in; every channel's read does) hears "nothing yet" without a system call, a dozen of them
 * per packet sent otherwise. Epoll is level-triggered and always watches for input, so bytes
 * arriving meanwhile bring the next event. */
void session_enter(struct session *s) {
        if (s->depth++ == 0) {
                s->rx_dry = false;
                s->rx_gen_enter = s->rx_gen;
                s->rx_budget = RX_BUDGET;
                s->rx_capped = false;
        }
}

/* Bytes left in the read-ahead buffer get no epoll event: go round again while they are being
 * taken, as if they had just arrived (any channel may want them). A dispatch that took none
 * waits for its own event: a call blocked on output, which EPOLLOUT resumes, and the next
 * call that reads takes them all (channel reads, writes and accepts drain the socket). */
void session_leave(struct session *s) {
        if (--s->depth > 0)
                return;
        if (s->freed) {
                session_destroy(s);
                return;
        }
        if (s->rx_capped) {
                /* The budget ran out with input left: go on next turn, after the others. */
                s->sweep_all = true;
                session_schedule(s);
        } else if (s->rxa_len == 0) {
                free(s->rxa);
                s->rxa = NULL;
        } else if (s->rx_gen != s->rx_gen_enter) {
                s->sweep_all = true;
                session_schedule(s);
        }
}

void session_schedule(struct session *s) {
        if (s->defer && s->state != SESSION_DOWN && !s->freed)
                sd_event_source_set_enabled(s->defer, SD_EVENT_ONESHOT);
}

static void update_session_events(struct session *s) {
        if (!s->io || s->state == SESSION_DOWN || s->freed)
                return;
        uint32_t ev = EPOLLIN;
        if (s->state == SESSION_CONNECTING)
                ev = EPOLLOUT;
        else if (s->session && ((libssh2_session_block_directions(s->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) ||
                                s->pending.kind != OP_NONE || s->want_room))
                ev |= EPOLLOUT;
        sd_event_source_set_io_events(s->io, ev);
}

void arm_timer(struct session *s, uint64_t when) {
        sd_event_source_set_time(s->timer, when);
        sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

uint64_t now_mono(struct session *s) {
        uint64_t now;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

static uint64_t dead_after_usec(const struct session *s) {
        uint64_t d = (uint64_t) s->p.keepalive_interval * s->p.keepalive_count;
        /* With a single interval a late probe reply would race the deadline. */
        if (s->p.keepalive_count < 2)
                d += 2;
        return d * USEC_PER_SEC;
}

/* ---- the pump -------------------------------------------------------------------------- */

static bool stopped(struct session *s) {
        return s->state == SESSION_DOWN || s->freed;
}

static void accept_done(struct session *s, LIBSSH2_LISTENER *listener, ssize_t rc) {
        if (rc == 1) {
                struct tunnel *t = s->tunnels_head;
                while (t && t->listener != listener)
                        t = t->next;
                libssh2_channel_handle_extended_data2(s->accepted, LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
                /* With no tunnel (its binding was just removed) the channel is closed at once. */
                struct conn *c = conn_new(s, t, s->accepted, false);
                s->accepted = NULL;
                log_binding(LOG_DEBUG, t ? t->name : NULL, "connection", "connection %" PRIu64 " from the relay%s",
                            c->id, t ? "" : " for a forward being cancelled");
                return;
        }
        /* forward_accept() says "channel not found" for a dead socket: trust our own view. */
        if (rc != LIBSSH2_ERROR_EAGAIN && s->sock_broken)
                fail_lost(s, rc);
}

/* Runs the one call that left a packet half sent. Returns false while it still blocks. */
static bool retry_pending(struct session *s) {
        struct op op = s->pending;
        ssize_t rc;
        if (op.kind == OP_READ && op.conn && !op.conn->is_log) {
                /* The local side may have taken bytes meanwhile: read at the buffer's end now. */
                struct conn *c = op.conn;
                if (c->tl_len == 0)
                        c->tl_off = 0;
                op.buf = c->tl + c->tl_off + c->tl_len;
                op.len = CONN_BUF_SIZE - c->tl_off - c->tl_len;   /* 0 still resumes the adjust */
        }
        if (op.kind == OP_ACCEPT && !op.listener) {
                /* No listener to read with: the log shell's read is the other pure read. */
                if (!s->log || s->log->state == CONN_CLOSING) {
                        session_fail(s, -EPROTO, false, "SSH session with %s:%u stalled: a reply queued by "
                                     "libssh2 cannot be resumed", s->p.server, s->p.server_port);
                        return false;
                }
                op = (struct op) { .kind = OP_READ, .conn = s->log, .buf = s->log->tl, .len = LOG_READ_SIZE };
        }
        rc = op_call(s, op);
        if (op.kind == OP_ACCEPT)
                accept_done(s, op.listener, rc);
        else if (op.kind == OP_LISTEN)
                forward_done(s, rc);
        else if (op.kind == OP_CANCEL)
                cancel_done(s, op.listener, rc);
        else if (op.conn)
                conn_op_done(op.conn, op.kind, rc);
        else if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && ssh_fatal(s, rc))
                fail_lost(s, rc);
        if (stopped(s) || s->pending.kind != OP_NONE)
                return false;
        /* The call that blocked cut some connection's work short (a write with more of its
         * buffer to send, whose local socket is not polled while that buffer is full), and
         * for a reply libssh2 queued by itself we cannot tell whose: visit them all now, or
         * that connection waits for the next keepalive. */
        s->sweep_all = true;
        return true;
}

/* Channels the relay opened, on every forward. The first forward_accept() drains the socket;
 * for the others recv is dry (session_enter), so 200 forwards cost one recv, not 200. */
static bool accept_all(struct session *s) {
        for (struct tunnel *t = s->tunnels_head, *n; t; t = n) {
                n = t->next;
                if (!t->listener)
                        continue;
                for (;;) {
                        ssize_t rc = op_call(s, (struct op) { .kind = OP_ACCEPT, .listener = t->listener });
                        accept_done(s, t->listener, rc);
                        if (stopped(s) || s->pending.kind != OP_NONE)
                                return false;
                        if (rc != 1)
                                break;
                }
        }
        return true;
}

static void up_pump(struct session *s) {
        ssize_t rc;

        /* Cancels first: a binding removed and added again asks for the same port. */
        if (!cancel_step(s) || !forward_step(s))
                return;
        if ((s->log_phase == LOG_OPEN || s->log_phase == LOG_SHELL) && !log_setup_step(s))
                return;
        if (stopped(s) || !accept_all(s))
                return;

        if (s->probe_due) {
                if (s->log && s->log->state != CONN_CLOSING && s->log_phase == LOG_RUNNING) {
                        if (!s->log->probe_inflight) {
                                rc = op_run(s, OP_PROBE, s->log, NULL, 0);
                                conn_op_done(s->log, OP_PROBE, rc);
                        }
                } else {
                        rc = op_run(s, OP_KEEPALIVE, NULL, NULL, 0);
                        if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && ssh_fatal(s, rc)) {
                                fail_lost(s, rc);
                                return;
                        }
                }
                s->probe_due = false;
                if (stopped(s) || s->pending.kind != OP_NONE)
                        return;
        }
        if (s->log && s->log->probe_inflight) {
                rc = op_run(s, OP_PROBE, s->log, NULL, 0);
                conn_op_done(s->log, OP_PROBE, rc);
                if (stopped(s) || s->pending.kind != OP_NONE)
                        return;
        }

        /* Every channel shares the one socket and libssh2 demultiplexes into its own queues,
         * so any byte received may be for any channel: then visit them all. Otherwise only
         * those with work of their own (local data, buffer space freed). */
        if (s->rx_gen != s->rx_gen_seen) {
                s->rx_gen_seen = s->rx_gen;
                s->sweep_all = true;
        }
        s->want_room = false;
        struct conn *c = s->conns_head, *n;
        for (; c; c = n) {
                n = c->next;
                if (!s->sweep_all && !c->dirty)
                        continue;
                c->dirty = false;
                if (!conn_service(c))
                        return;
        }
        s->sweep_all = false;

        /* Fairness: the next sweep starts one connection further. */
        if (s->conns_head && s->conns_head != s->conns_tail) {
                c = s->conns_head;
                LIST_REMOVE(s->conns_head, s->conns_tail, c);
                LIST_APPEND(s->conns_head, s->conns_tail, c);
        }
        /* Any libssh2 call reads the socket: bytes that came in during the sweep (data, the
         * relay's window adjust) may be queued inside libssh2 for a connection already
         * visited, with the socket now empty, so no wakeup would come until the next
         * keepalive. Go round again instead. */
        if (s->rx_gen != s->rx_gen_seen)
                session_schedule(s);
        for (c = s->conns_head; c; c = c->next)
                if (c->dirty && !s->want_room) {
                        session_schedule(s);
                        break;
                }
        if (s->log_phase == LOG_OPEN)
                session_schedule(s);
}

void pump(struct session *s) {
        if (stopped(s) || s->state < SESSION_HANDSHAKE)
                return;
        if (s->pending.kind != OP_NONE && !retry_pending(s))
                goto out;
        if (s->state < SESSION_UP)
                setup_step(s);
        if (s->state == SESSION_UP && !stopped(s))
                up_pump(s);
        if (!stopped(s) && s->sock_broken)
                fail_lost(s, LIBSSH2_ERROR_SOCKET_RECV);
out:
        update_session_events(s);
}

int on_session_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct session *s = userdata;
        (void) src, (void) fd, (void) revents;
        session_enter(s);
        if (s->state == SESSION_CONNECTING)
                connect_done(s);
        else
                pump(s);
        session_leave(s);
        return 0;
}

static void on_relay_resolved(void *userdata, int gai_error, struct addr *addrs, size_t n_addrs) {
        struct session *s = userdata;
        session_enter(s);
        resolve_free(s->resolve);
        s->resolve = NULL;
        if (gai_error != 0)
                session_fail(s, -EHOSTUNREACH, false, "cannot resolve relay %s: %s", s->p.server,
                             gai_strerror(gai_error));
        else {
                s->srv_addrs = addrs;
                s->n_srv_addrs = n_addrs;
                s->state = SESSION_CONNECTING;
                connect_next(s);
        }
        session_leave(s);
}

static void resolve_relay(struct session *s) {
        struct addr a;
        if (parse_literal(s->p.server, s->p.server_port, &a) == 0) {
                s->srv_addrs = xmalloc(sizeof(a));
                s->srv_addrs[0] = a;
                s->n_srv_addrs = 1;
                s->state = SESSION_CONNECTING;
                connect_next(s);
                return;
        }
        int r = resolve_start(s->event, s->p.server, s->p.server_port, on_relay_resolved, s, &s->resolve);
        if (r < 0)
                session_fail(s, r, false, "cannot resolve relay %s: %s", s->p.server, strerror(-r));
}

static int on_defer(sd_event_source *src, void *userdata) {
        struct session *s = userdata;
        (void) src;
        session_enter(s);
        if (s->state == SESSION_RESOLVING && !s->started) {
                s->started = true;
                if (check_identity(s) == 0)
                        resolve_relay(s);
        } else
                pump(s);
        session_leave(s);
        return 0;
}

/* Keepalives and liveness.
 *
 * libssh2_keepalive_send() with want_reply=0 gets no answer, and want_reply=1 is unusable in
 * 1.10 (the relay's REQUEST_FAILURE is taken as the reply to a later tcpip-forward). A
 * window adjust or SSH_MSG_IGNORE gets no answer either. What OpenSSH always answers, and
 * libssh2 matches by channel number (so nothing else can take the reply), is a channel
 * request with want_reply: every keepalive_interval we send "env" on the log channel
 * (libssh2_channel_setenv_ex, reusable unlike process_startup); sshd refuses env on a
 * running shell with CHANNEL_FAILURE, which is all we need: bytes came back. Every byte
 * counts as life (recv_cb stamps last_rx), so a busy session needs no probe replies. Nothing
 * received for keepalive_interval * keepalive_count seconds: the relay is declared dead.
 * Without a log channel (relay refused sessions) only the libssh2 keepalive is sent and
 * TCP_USER_TIMEOUT (the same interval * count) catches unacknowledged data. */

static const char *const setup_phase[_SESSION_STATE_MAX] = {
        [SESSION_RESOLVING] = "resolving",
        [SESSION_CONNECTING] = "connecting to",
        [SESSION_HANDSHAKE] = "in the SSH handshake with",
        [SESSION_AUTH] = "authenticating to",
};

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct session *s = userdata;
        (void) src;
        session_enter(s);
        if (s->state == SESSION_CONNECTING && usec < s->setup_deadline) {
                log_binding(LOG_DEBUG, NULL, "connect", "connecting to relay %s:%u timed out; trying the next "
                            "address", s->p.server, s->p.server_port);
                connect_next(s);
        } else if (s->state < SESSION_UP) {
                session_fail(s, -ETIMEDOUT, false, "timed out %s relay %s:%u", setup_phase[s->state], s->p.server,
                            s->p.server_port);
        } else if (s->state == SESSION_UP) {
                uint64_t now = now_mono(s), dead = dead_after_usec(s);
                /* Liveness needs something that answers: the probe on the log channel. */
                bool probing = s->log && s->log_phase == LOG_RUNNING;
                if (probing && now >= s->last_rx + dead) {
                        session_fail(s, -ETIMEDOUT, false, "relay %s:%u stopped answering (nothing received for "
                                    "%" PRIu64 " s); the session is presumed dead", s->p.server, s->p.server_port,
                                    (uint64_t) ((now - s->last_rx) / USEC_PER_SEC));
                        goto out;
                }
                if (now >= s->next_probe) {
                        s->probe_due = true;
                        s->next_probe = now + s->p.keepalive_interval * USEC_PER_SEC;
                        pump(s);
                }
                if (!stopped(s)) {
                        uint64_t next = s->next_probe;
                        if (probing && s->last_rx + dead < next)
                                next = s->last_rx + dead;
                        arm_timer(s, next);
                }
        }
out:
        session_leave(s);
        return 0;
}

/* ---- life ------------------------------------------------------------------------------- */

int session_new(sd_event *event, const struct tunnel_params *params, struct session **ret) {
        struct session *s = xcalloc(1, sizeof(*s));
        int r;

        s->event = sd_event_ref(event);
        s->p = (struct tunnel_params) {
                .server = xstrdup(params->server),
                .server_port = params->server_port,
                .user = xstrdup(params->user),
                .identity_file = xstrdup(params->identity_file),
                .known_hosts = xstrdup(params->known_hosts),
                .host_key_check = params->host_key_check,
                .host_key_fingerprint = xstrdup(params->host_key_fingerprint),
                .keepalive_interval = params->keepalive_interval,
                .keepalive_count = params->keepalive_count,
                .exclusive = params->exclusive,
        };
        s->label = xasprintf("%s@%s:%u", params->user, params->server, params->server_port);
        s->fd = -1;
        s->state = SESSION_RESOLVING;
        s->log_phase = LOG_NONE;

        uint64_t setup = (uint64_t) params->keepalive_interval * params->keepalive_count;
        if (setup < SETUP_TIMEOUT_MIN_SEC)
                setup = SETUP_TIMEOUT_MIN_SEC;
        s->setup_deadline = now_mono(s) + setup * USEC_PER_SEC;

        r = sd_event_add_time(event, &s->timer, CLOCK_MONOTONIC, s->setup_deadline, 50000, on_timer, s);
        if (r < 0)
                goto fail;
        r = sd_event_add_defer(event, &s->defer, on_defer, s);
        if (r < 0)
                goto fail;
        sd_event_source_set_enabled(s->defer, SD_EVENT_ONESHOT);   /* start on the next iteration */
        *ret = s;
        return 0;
fail:
        session_destroy(s);
        return r;
}

void session_destroy(struct session *s) {
        session_unregister(s);
        resolve_free(s->resolve);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->defer = sd_event_source_disable_unref(s->defer);
        s->io = sd_event_source_disable_unref(s->io);
        while (s->conns_head)
                conn_destroy(s->conns_head);
        if (s->session) {
                /* Best effort, never blocking: only when no packet is half sent. */
                if (s->state == SESSION_UP && !s->sock_broken && s->pending.kind == OP_NONE &&
                    !(libssh2_session_block_directions(s->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
                        (void) libssh2_session_disconnect_ex(s->session, SSH_DISCONNECT_BY_APPLICATION,
                                                             "Normal Shutdown", "");
                /* Channels and listeners are closed by libssh2 with I/O that now fails at once,
                 * so session_free() neither blocks nor returns EAGAIN half way. */
                s->no_io = true;
                libssh2_session_free(s->session);
        }
        if (s->fd >= 0)
                close(s->fd);
        free(s->rxa);
        free(s->srv_addrs);
        free(s->cancels);
        free(s->listen_host);
        free(s->label);
        free((char *) s->p.server);
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
        sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->defer, SD_EVENT_OFF);
        s->freed = true;
}
