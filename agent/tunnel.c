/* The tunnel engine, session side: the libssh2 I/O callbacks, errors, the one-pending-call
 * discipline, keepalives and the pump that drives every libssh2 call, and the public
 * tunnel_* functions. Reaching the relay is in tunnel-connect.c, session setup in
 * tunnel-setup.c, channel <-> socket bridging in tunnel-bridge.c, host keys in hostkey.c. */
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

#include "log.h"
#include "tunnel-internal.h"


/* ---- libssh2 I/O callbacks ---------------------------------------------------------- */

/* Our own socket I/O, to see what libssh2 hides: the time of the last byte received (the
 * liveness signal), EOF and errno (forward_accept() reports a dead socket as "channel not
 * found"), and so that a tunnel being torn down can make every call fail fast. */
LIBSSH2_RECV_FUNC(recv_cb) {
        struct tunnel *t = *abstract;
        if (t->no_io)
                return -ECONNRESET;
        ssize_t n = recv(socket, buffer, length, flags);
        if (n > 0) {
                uint64_t now;
                t->rx_gen++;
                if (sd_event_now(t->event, CLOCK_MONOTONIC, &now) >= 0)
                        t->last_rx = now;
                return n;
        }
        if (n == 0) {
                t->sock_broken = true;
                return 0;
        }
        if (errno == EAGAIN || errno == EINTR)
                return -EAGAIN;
        t->sock_broken = true;
        t->sock_errno = errno;
        return -errno;
}

LIBSSH2_SEND_FUNC(send_cb) {
        struct tunnel *t = *abstract;
        if (t->no_io)
                return -EPIPE;
        ssize_t n = send(socket, buffer, length, flags | MSG_NOSIGNAL);
        if (n >= 0)
                return n;
        if (errno == EAGAIN || errno == EINTR)
                return -EAGAIN;
        t->sock_broken = true;
        t->sock_errno = errno;
        return -errno;
}

/* ---- errors --------------------------------------------------------------------------- */

int ssh_errno(struct tunnel *t, int rc, const char **msg) {
        char *m = NULL;
        if (t->session)
                libssh2_session_last_error(t->session, &m, NULL, 0);
        if (msg)
                *msg = m && *m ? m : "unknown libssh2 error";
        if (t->sock_broken && t->sock_errno)
                return -t->sock_errno;
        switch (rc) {
        case LIBSSH2_ERROR_EAGAIN:                  return -EAGAIN;
        case LIBSSH2_ERROR_ALLOC:                   return -ENOMEM;
        case LIBSSH2_ERROR_SOCKET_SEND:
        case LIBSSH2_ERROR_SOCKET_RECV:
        case LIBSSH2_ERROR_SOCKET_DISCONNECT:
        case LIBSSH2_ERROR_BANNER_RECV:
        case LIBSSH2_ERROR_BANNER_SEND:             return -ECONNRESET;
        case LIBSSH2_ERROR_TIMEOUT:
        case LIBSSH2_ERROR_SOCKET_TIMEOUT:          return -ETIMEDOUT;
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
        case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:    return -EACCES;
        case LIBSSH2_ERROR_FILE:
        case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:     return -ENOKEY;
        case LIBSSH2_ERROR_REQUEST_DENIED:
        case LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED:  return -EADDRINUSE;
        case LIBSSH2_ERROR_CHANNEL_CLOSED:
        case LIBSSH2_ERROR_CHANNEL_EOF_SENT:        return -EPIPE;
        case LIBSSH2_ERROR_METHOD_NONE:
        case LIBSSH2_ERROR_KEX_FAILURE:
        case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
        case LIBSSH2_ERROR_HOSTKEY_INIT:
        case LIBSSH2_ERROR_HOSTKEY_SIGN:
        case LIBSSH2_ERROR_DECRYPT:
        case LIBSSH2_ERROR_INVALID_MAC:
        case LIBSSH2_ERROR_PROTO:                   return -EPROTO;
        default:                                    return -EIO;
        }
}

void tunnel_fail(struct tunnel *t, int error, bool permanent, const char *fmt, ...) {
        if (t->state == TUNNEL_DOWN || t->freed)
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_(freep) char *msg = xvasprintf(fmt, ap);
        va_end(ap);

        t->state = TUNNEL_DOWN;
        resolve_cancel(t);
        sd_event_source_set_enabled(t->io, SD_EVENT_OFF);
        sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(t->defer, SD_EVENT_OFF);
        for (struct conn *c = t->conns_head; c; c = c->next) {
                sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        }
        log_binding(LOG_DEBUG, t->p.name, "tunnel", "session ends: %s", msg);
        if (t->cb.on_down)
                t->cb.on_down(t, error < 0 ? error : -EIO, permanent, msg, t->userdata);
}

/* A libssh2 error that ends the whole session (as opposed to one channel). */
bool ssh_fatal(struct tunnel *t, ssize_t rc) {
        if (t->sock_broken)
                return true;
        switch (rc) {
        case LIBSSH2_ERROR_EAGAIN:
        case LIBSSH2_ERROR_CHANNEL_CLOSED:
        case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
        case LIBSSH2_ERROR_CHANNEL_UNKNOWN:
        case LIBSSH2_ERROR_CHANNEL_FAILURE:
        case LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED:
        case LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED:
        case LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED:
        case LIBSSH2_ERROR_CHANNEL_WINDOW_FULL:
        case LIBSSH2_ERROR_REQUEST_DENIED:
        case LIBSSH2_ERROR_BAD_USE:
        case LIBSSH2_ERROR_INVAL:
                return false;
        default:
                return rc < 0;
        }
}

void fail_lost(struct tunnel *t, ssize_t rc) {
        const char *m;
        int e = ssh_errno(t, (int) rc, &m);
        if (t->sock_broken && !t->sock_errno)
                tunnel_fail(t, -ECONNRESET, false, "relay %s:%u closed the connection", t->p.server,
                            t->p.server_port);
        else if (t->sock_broken)
                tunnel_fail(t, e, false, "connection to relay %s:%u lost: %s", t->p.server, t->p.server_port,
                            strerror(-e));
        else
                tunnel_fail(t, e, false, "SSH session with %s:%u failed: %s", t->p.server, t->p.server_port, m);
}

/* ---- the one-pending-call discipline ------------------------------------------------ */

static bool op_sends(enum op_kind k) {
        return k == OP_WRITE || k == OP_EOF || k == OP_ADJUST || k == OP_KEEPALIVE || k == OP_FREE ||
               k == OP_PROBE;
}

ssize_t op_run(struct tunnel *t, enum op_kind kind, struct conn *c, char *buf, size_t len) {
        ssize_t rc = LIBSSH2_ERROR_INVAL;
        int next;

        switch (kind) {
        case OP_ACCEPT:
                t->accepted = libssh2_channel_forward_accept(t->listener);
                rc = t->accepted ? 1 : libssh2_session_last_errno(t->session);
                break;
        case OP_READ:
                rc = libssh2_channel_read(c->ch, buf, len);
                break;
        case OP_WRITE:
                rc = libssh2_channel_write(c->ch, buf, len);
                break;
        case OP_EOF:
                rc = libssh2_channel_send_eof(c->ch);
                break;
        case OP_ADJUST:
                rc = libssh2_channel_receive_window_adjust2(c->ch, (unsigned long) len, 1, NULL);
                break;
        case OP_FREE:
                rc = libssh2_channel_free(c->ch);
                break;
        case OP_PROBE:
                rc = libssh2_channel_setenv_ex(c->ch, "MYSOCKETD_KEEPALIVE", 19, "1", 1);
                break;
        case OP_KEEPALIVE:
                rc = libssh2_keepalive_send(t->session, &next);
                break;
        case OP_NONE:
                break;
        }

        if (libssh2_session_block_directions(t->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
                if (rc == LIBSSH2_ERROR_EAGAIN && op_sends(kind))
                        t->pending = (struct op) { kind, c, buf, len };
                else
                        /* A reply libssh2 queued by itself (open confirmation, window adjust,
                         * rekey) is half sent: only a pure read may resume it. */
                        t->pending = (struct op) { OP_ACCEPT, NULL, NULL, 0 };
        } else
                t->pending = (struct op) { OP_NONE, NULL, NULL, 0 };
        return rc;
}

/* Room in the kernel send queue: with TCP_NOTSENT_LOWAT, EPOLLOUT means exactly this, and
 * keeping the queue short means libssh2 practically never leaves a packet half sent (which
 * is what makes 1.10 drop data when another call comes along). */
bool tunnel_send_room(struct tunnel *t) {
        int unsent = 0;
        if (ioctl(t->fd, SIOCOUTQNSD, &unsent) < 0)
                return true;
        return unsent < SEND_LOWAT;
}

/* ---- event plumbing --------------------------------------------------------------------- */

static void tunnel_destroy(struct tunnel *t);

void tunnel_enter(struct tunnel *t) {
        t->depth++;
}

void tunnel_leave(struct tunnel *t) {
        if (--t->depth == 0 && t->freed)
                tunnel_destroy(t);
}

void tunnel_schedule(struct tunnel *t) {
        if (t->defer && t->state != TUNNEL_DOWN && !t->freed)
                sd_event_source_set_enabled(t->defer, SD_EVENT_ONESHOT);
}

static void update_session_events(struct tunnel *t) {
        if (!t->io || t->state == TUNNEL_DOWN || t->freed)
                return;
        uint32_t ev = EPOLLIN;
        if (t->state == TUNNEL_CONNECTING)
                ev = EPOLLOUT;
        else if (t->session && ((libssh2_session_block_directions(t->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) ||
                                t->pending.kind != OP_NONE || t->want_room))
                ev |= EPOLLOUT;
        sd_event_source_set_io_events(t->io, ev);
}

void arm_timer(struct tunnel *t, uint64_t when) {
        sd_event_source_set_time(t->timer, when);
        sd_event_source_set_enabled(t->timer, SD_EVENT_ONESHOT);
}

uint64_t now_mono(struct tunnel *t) {
        uint64_t now;
        if (sd_event_now(t->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

static uint64_t dead_after_usec(const struct tunnel *t) {
        uint64_t d = (uint64_t) t->p.keepalive_interval * t->p.keepalive_count;
        /* With a single interval a late probe reply would race the deadline. */
        if (t->p.keepalive_count < 2)
                d += 2;
        return d * USEC_PER_SEC;
}

/* ---- the pump -------------------------------------------------------------------------- */

static bool stopped(struct tunnel *t) {
        return t->state == TUNNEL_DOWN || t->freed;
}

static void accept_done(struct tunnel *t, ssize_t rc) {
        if (rc == 1) {
                libssh2_channel_handle_extended_data2(t->accepted, LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
                struct conn *c = conn_new(t, t->accepted, false);
                t->accepted = NULL;
                log_binding(LOG_DEBUG, t->p.name, "connection", "connection %" PRIu64 " from the relay",
                            c->id);
                return;
        }
        /* forward_accept() says "channel not found" for a dead socket: trust our own view. */
        if (rc != LIBSSH2_ERROR_EAGAIN && t->sock_broken)
                fail_lost(t, rc);
}

/* Runs the one call that left a packet half sent. Returns false while it still blocks. */
static bool retry_pending(struct tunnel *t) {
        struct op op = t->pending;
        ssize_t rc = op_run(t, op.kind, op.conn, op.buf, op.len);
        if (op.kind == OP_ACCEPT)
                accept_done(t, rc);
        else if (op.conn)
                conn_op_done(op.conn, op.kind, rc);
        else if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && ssh_fatal(t, rc))
                fail_lost(t, rc);
        return !stopped(t) && t->pending.kind == OP_NONE;
}

static void up_pump(struct tunnel *t) {
        ssize_t rc;

        if ((t->log_phase == LOG_OPEN || t->log_phase == LOG_SHELL) && !log_setup_step(t))
                return;
        if (stopped(t))
                return;

        for (;;) {
                rc = op_run(t, OP_ACCEPT, NULL, NULL, 0);
                accept_done(t, rc);
                if (stopped(t) || t->pending.kind != OP_NONE || rc != 1)
                        break;
        }
        if (stopped(t) || t->pending.kind != OP_NONE)
                return;

        if (t->probe_due) {
                if (t->log && t->log->state != CONN_CLOSING && t->log_phase == LOG_RUNNING) {
                        if (!t->log->probe_inflight) {
                                rc = op_run(t, OP_PROBE, t->log, NULL, 0);
                                conn_op_done(t->log, OP_PROBE, rc);
                        }
                } else {
                        rc = op_run(t, OP_KEEPALIVE, NULL, NULL, 0);
                        if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && ssh_fatal(t, rc)) {
                                fail_lost(t, rc);
                                return;
                        }
                }
                t->probe_due = false;
                if (stopped(t) || t->pending.kind != OP_NONE)
                        return;
        }
        if (t->log && t->log->probe_inflight) {
                rc = op_run(t, OP_PROBE, t->log, NULL, 0);
                conn_op_done(t->log, OP_PROBE, rc);
                if (stopped(t) || t->pending.kind != OP_NONE)
                        return;
        }

        /* Every channel shares the one socket and libssh2 demultiplexes into its own queues,
         * so any byte received may be for any channel: then visit them all. Otherwise only
         * those with work of their own (local data, buffer space freed). */
        if (t->rx_gen != t->rx_gen_seen) {
                t->rx_gen_seen = t->rx_gen;
                t->sweep_all = true;
        }
        t->want_room = false;
        struct conn *c = t->conns_head, *n;
        for (; c; c = n) {
                n = c->next;
                if (!t->sweep_all && !c->dirty)
                        continue;
                c->dirty = false;
                if (!conn_service(c))
                        return;
        }
        t->sweep_all = false;

        /* Fairness: the next sweep starts one connection further. */
        if (t->conns_head && t->conns_head != t->conns_tail) {
                c = t->conns_head;
                t->conns_head = c->next;
                t->conns_head->prev = NULL;
                c->prev = t->conns_tail;
                c->next = NULL;
                t->conns_tail->next = c;
                t->conns_tail = c;
        }
        for (c = t->conns_head; c; c = c->next)
                if (c->dirty && !t->want_room) {
                        tunnel_schedule(t);
                        break;
                }
        if (t->log_phase == LOG_OPEN)
                tunnel_schedule(t);
}

void pump(struct tunnel *t) {
        if (stopped(t) || t->state < TUNNEL_HANDSHAKE)
                return;
        if (t->pending.kind != OP_NONE && !retry_pending(t))
                goto out;
        if (t->state < TUNNEL_UP)
                setup_step(t);
        if (t->state == TUNNEL_UP && !stopped(t))
                up_pump(t);
        if (!stopped(t) && t->sock_broken)
                fail_lost(t, LIBSSH2_ERROR_SOCKET_RECV);
out:
        update_session_events(t);
}

int on_session_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct tunnel *t = userdata;
        (void) s, (void) fd, (void) revents;
        tunnel_enter(t);
        if (t->state == TUNNEL_CONNECTING)
                connect_done(t);
        else
                pump(t);
        tunnel_leave(t);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        struct tunnel *t = userdata;
        (void) s;
        tunnel_enter(t);
        if (t->state == TUNNEL_RESOLVING && !t->started) {
                t->started = true;
                if (check_identity(t) == 0)
                        resolve_next(t);
        } else
                pump(t);
        tunnel_leave(t);
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

static const char *const setup_phase[_TUNNEL_STATE_MAX] = {
        [TUNNEL_RESOLVING] = "resolving",
        [TUNNEL_CONNECTING] = "connecting to",
        [TUNNEL_HANDSHAKE] = "in the SSH handshake with",
        [TUNNEL_AUTH] = "authenticating to",
        [TUNNEL_FORWARD] = "waiting for the forward from",
};

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct tunnel *t = userdata;
        (void) s;
        tunnel_enter(t);
        if (t->state == TUNNEL_CONNECTING && usec < t->setup_deadline) {
                log_binding(LOG_DEBUG, t->p.name, "connect", "connecting to relay %s:%u timed out; trying the next "
                            "address", t->p.server, t->p.server_port);
                connect_next(t);
        } else if (t->state < TUNNEL_UP) {
                tunnel_fail(t, -ETIMEDOUT, false, "timed out %s relay %s:%u", setup_phase[t->state], t->p.server,
                            t->p.server_port);
        } else if (t->state == TUNNEL_UP) {
                uint64_t now = now_mono(t), dead = dead_after_usec(t);
                /* Liveness needs something that answers: the probe on the log channel. */
                bool probing = t->log && t->log_phase == LOG_RUNNING;
                if (probing && now >= t->last_rx + dead) {
                        tunnel_fail(t, -ETIMEDOUT, false, "relay %s:%u stopped answering (nothing received for "
                                    "%" PRIu64 " s); the session is presumed dead", t->p.server, t->p.server_port,
                                    (uint64_t) ((now - t->last_rx) / USEC_PER_SEC));
                        goto out;
                }
                if (now >= t->next_probe) {
                        t->probe_due = true;
                        t->next_probe = now + t->p.keepalive_interval * USEC_PER_SEC;
                        pump(t);
                }
                if (!stopped(t)) {
                        uint64_t next = t->next_probe;
                        if (probing && t->last_rx + dead < next)
                                next = t->last_rx + dead;
                        arm_timer(t, next);
                }
        }
out:
        tunnel_leave(t);
        return 0;
}

/* ---- public ---------------------------------------------------------------------------- */

int tunnel_new(sd_event *event, const struct tunnel_params *params, const struct tunnel_callbacks *cb,
               void *userdata, struct tunnel **ret) {
        struct tunnel *t;
        int r;

        if (!event || !params || !ret || !params->server || !params->user || !params->local_host ||
            params->keepalive_interval == 0 || params->keepalive_count == 0)
                return -EINVAL;

        t = xcalloc(1, sizeof(*t));
        t->event = sd_event_ref(event);
        t->p = *params;
        t->p.name = xstrdup(params->name ? params->name : "tunnel");
        t->p.server = xstrdup(params->server);
        t->p.user = xstrdup(params->user);
        t->p.identity_file = xstrdup(params->identity_file);
        t->p.known_hosts = xstrdup(params->known_hosts);
        t->p.host_key_fingerprint = xstrdup(params->host_key_fingerprint);
        t->p.bind_host = xstrdup(params->bind_host ? params->bind_host : "localhost");
        t->p.local_host = xstrdup(params->local_host);
        if (cb)
                t->cb = *cb;
        t->userdata = userdata;
        t->fd = -1;
        t->state = TUNNEL_RESOLVING;
        t->log_phase = LOG_NONE;

        uint64_t setup = (uint64_t) params->keepalive_interval * params->keepalive_count;
        if (setup < SETUP_TIMEOUT_MIN_SEC)
                setup = SETUP_TIMEOUT_MIN_SEC;
        t->setup_deadline = now_mono(t) + setup * USEC_PER_SEC;

        r = sd_event_add_time(event, &t->timer, CLOCK_MONOTONIC, t->setup_deadline, 50000, on_timer, t);
        if (r < 0)
                goto fail;
        r = sd_event_add_defer(event, &t->defer, on_defer, t);
        if (r < 0)
                goto fail;
        sd_event_source_set_enabled(t->defer, SD_EVENT_ONESHOT);   /* start on the next iteration */
        *ret = t;
        return 0;
fail:
        tunnel_destroy(t);
        return r;
}

static void tunnel_destroy(struct tunnel *t) {
        resolve_cancel(t);
        t->timer = sd_event_source_disable_unref(t->timer);
        t->defer = sd_event_source_disable_unref(t->defer);
        t->io = sd_event_source_disable_unref(t->io);
        while (t->conns_head)
                conn_destroy(t->conns_head);
        if (t->session) {
                /* Best effort, never blocking: only when no packet is half sent. */
                if (t->state == TUNNEL_UP && !t->sock_broken && t->pending.kind == OP_NONE &&
                    !(libssh2_session_block_directions(t->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
                        (void) libssh2_session_disconnect_ex(t->session, SSH_DISCONNECT_BY_APPLICATION,
                                                             "Normal Shutdown", "");
                /* Channels and listeners are closed by libssh2 with I/O that now fails at once,
                 * so session_free() neither blocks nor returns EAGAIN half way. */
                t->no_io = true;
                libssh2_session_free(t->session);
        }
        if (t->fd >= 0)
                close(t->fd);
        free(t->srv_addrs);
        free(t->loc_addrs);
        free((char *) t->p.name);
        free((char *) t->p.server);
        free((char *) t->p.user);
        free((char *) t->p.identity_file);
        free((char *) t->p.known_hosts);
        free((char *) t->p.host_key_fingerprint);
        free((char *) t->p.bind_host);
        free((char *) t->p.local_host);
        sd_event_unref(t->event);
        free(t);
}

void tunnel_free(struct tunnel *t) {
        if (!t)
                return;
        if (t->depth > 0) {
                /* Called from one of our callbacks: finish when the handler unwinds. */
                if (t->state != TUNNEL_DOWN) {
                        sd_event_source_set_enabled(t->io, SD_EVENT_OFF);
                        sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
                        sd_event_source_set_enabled(t->defer, SD_EVENT_OFF);
                }
                t->freed = true;
                return;
        }
        tunnel_destroy(t);
}

void tunnel_get_stats(const struct tunnel *t, struct tunnel_stats *ret) {
        if (!t) {
                *ret = (struct tunnel_stats) { 0 };
                return;
        }
        *ret = t->stats;
}

int tunnel_global_init(void) {
        return libssh2_init(0) == 0 ? 0 : -EIO;
}

void tunnel_global_done(void) {
        libssh2_exit();
}
