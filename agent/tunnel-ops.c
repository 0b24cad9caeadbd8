/* The tunnel engine, how one libssh2 call is made: our socket I/O callbacks, the
 * translation of libssh2 errors, and the one-pending-call discipline that libssh2 1.10's
 * single half-sent packet per session demands. When calls are made is tunnel-pump.c's
 * business. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include "tunnel-internal.h"

/* ---- libssh2 I/O callbacks ---------------------------------------------------------- */

/* Watches what comes before the relay's version line (RFC 4253 4.2): text lines are
 * allowed, a flood of them is not. Returns false when the relay sent too many. */
static bool preversion_scan(struct session *s, const char *p, size_t n) {
        for (size_t i = 0; i < n && !s->pv_done; i++) {
                if (s->pv_col < 4 && p[i] != "SSH-"[s->pv_col])
                        s->pv_mismatch = true;
                s->pv_col++;
                if (s->pv_col == 4 && !s->pv_mismatch)
                        s->pv_done = true;
                else if (p[i] == '\n') {
                        s->pv_lines++;
                        s->pv_col = 0;
                        s->pv_mismatch = false;
                }
        }
        if (!s->pv_done)
                s->pv_bytes += n;
        if (!s->pv_done && (s->pv_lines > PREVERSION_LINES_MAX || s->pv_bytes > PREVERSION_BYTES_MAX))
                s->pv_flood = true;
        return !s->pv_flood;
}

/* n bytes go to libssh2: count them against the dispatch's budget. */
static ssize_t handed(struct session *s, const void *buffer, size_t n) {
        s->rx_gen++;
        s->rx_budget = n < s->rx_budget ? s->rx_budget - n : 0;
        if (!s->pv_done && !preversion_scan(s, buffer, n))
                return -EPROTO;
        return (ssize_t) n;
}

static ssize_t take_ahead(struct session *s, void *buffer, size_t length) {
        size_t n = length < s->rxa_len ? length : s->rxa_len;
        if (n > s->rx_budget && s->rx_budget > 0)
                n = s->rx_budget;
        memcpy(buffer, s->rxa + s->rxa_off, n);
        s->rxa_off += n;
        s->rxa_len -= n;
        return handed(s, buffer, n);
}

/* Our own socket I/O, to see what libssh2 hides: the time of the last byte received (the
 * liveness signal), EOF and errno (forward_accept() reports a dead socket as "channel not
 * found"), and so that a tunnel being torn down can make every call fail fast.
 *
 * libssh2 1.10 reads the socket 16 KiB at a time. In bulk (the last read filled its request)
 * we read RX_AHEAD_SIZE and hand it over from our buffer: a quarter of the system calls.
 * Bytes held there are invisible to epoll; session_leave() makes sure they are taken. */
LIBSSH2_RECV_FUNC(recv_cb) {
        struct session *s = *abstract;
        if (s->no_io)
                return -ECONNRESET;
        if (s->pv_flood)
                return -EPROTO;
        if (s->rx_budget == 0) {
                s->rx_capped = true;
                return -EAGAIN;
        }
        if (length > s->rx_budget)
                length = s->rx_budget;
        if (s->rxa_len > 0)
                return take_ahead(s, buffer, length);
        if (s->rx_dry)
                return -EAGAIN;
        bool ahead = s->rx_bulk && length < RX_AHEAD_SIZE;
        if (ahead && !s->rxa)
                ahead = (s->rxa = malloc(RX_AHEAD_SIZE)) != NULL;
        ssize_t n = ahead ? recv(socket, s->rxa, RX_AHEAD_SIZE, flags) : recv(socket, buffer, length, flags);
        if (n > 0) {
                uint64_t now;
                if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0)
                        s->last_rx = now;
                s->rx_bulk = (size_t) n == (ahead ? RX_AHEAD_SIZE : length);
                if (!ahead)
                        return handed(s, buffer, (size_t) n);
                s->rxa_off = 0;
                s->rxa_len = (size_t) n;
                return take_ahead(s, buffer, length);
        }
        s->rx_bulk = false;
        if (n == 0) {
                s->sock_broken = true;
                return 0;
        }
        if (errno == EAGAIN) {
                s->rx_dry = true;
                return -EAGAIN;
        }
        if (errno == EINTR)
                return -EAGAIN;
        s->sock_broken = true;
        s->sock_errno = errno;
        return -errno;
}

LIBSSH2_SEND_FUNC(send_cb) {
        struct session *s = *abstract;
        if (s->no_io)
                return -EPIPE;
        ssize_t n = send(socket, buffer, length, flags | MSG_NOSIGNAL);
        if (n >= 0) {
                s->room -= n;
                return n;
        }
        if (errno == EAGAIN || errno == EINTR)
                return -EAGAIN;
        s->sock_broken = true;
        s->sock_errno = errno;
        return -errno;
}

/* ---- errors --------------------------------------------------------------------------- */

int ssh_errno(struct session *s, int rc, const char **msg) {
        char *m = NULL;
        if (s->session)
                libssh2_session_last_error(s->session, &m, NULL, 0);
        if (msg)
                *msg = m && *m ? m : "unknown libssh2 error";
        if (s->sock_broken && s->sock_errno)
                return -s->sock_errno;
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

/* A libssh2 error that ends the whole session (as opposed to one channel). */
bool ssh_fatal(struct session *s, ssize_t rc) {
        if (s->sock_broken)
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

void fail_lost(struct session *s, ssize_t rc) {
        const char *m;
        int e = ssh_errno(s, (int) rc, &m);
        if (s->sock_broken && !s->sock_errno)
                session_fail(s, -ECONNRESET, false, "relay %s:%u closed the connection", s->p.server,
                            s->p.server_port);
        else if (s->sock_broken)
                session_fail(s, e, false, "connection to relay %s:%u lost: %s", s->p.server, s->p.server_port,
                            strerror(-e));
        else
                session_fail(s, e, false, "SSH session with %s:%u failed: %s", s->p.server, s->p.server_port, m);
}

/* ---- the one-pending-call discipline ------------------------------------------------ */

/* channel_read sends too: the window adjust libssh2 makes by itself when the window runs
 * low. Left half sent, only the same read resumes it (its read_state), not a forward_accept. */
static bool op_sends(enum op_kind k) {
        return k == OP_READ || k == OP_WRITE || k == OP_EOF || k == OP_ADJUST || k == OP_KEEPALIVE || k == OP_FREE ||
               k == OP_PROBE || k == OP_LISTEN || k == OP_CANCEL;
}

/* Some listener of the session, for the pure read that resumes what libssh2 queued by
 * itself: a live forward's first, else one waiting to be cancelled. */
LIBSSH2_LISTENER *any_listener(struct session *s) {
        for (struct tunnel *t = s->tunnels_head; t; t = t->next)
                if (t->listener)
                        return t->listener;
        return s->n_cancels > 0 ? s->cancels[0] : NULL;
}

ssize_t op_call(struct session *s, struct op op) {
        ssize_t rc = LIBSSH2_ERROR_INVAL;
        struct conn *c = op.conn;
        int next;

        switch (op.kind) {
        case OP_ACCEPT:
                s->accepted = libssh2_channel_forward_accept(op.listener);
                rc = s->accepted ? 1 : libssh2_session_last_errno(s->session);
                break;
        case OP_READ:
                rc = libssh2_channel_read(c->ch, op.buf, op.len);
                break;
        case OP_WRITE:
                rc = libssh2_channel_write(c->ch, op.buf, op.len);
                break;
        case OP_EOF:
                rc = libssh2_channel_send_eof(c->ch);
                break;
        case OP_ADJUST:
                rc = libssh2_channel_receive_window_adjust2(c->ch, (unsigned long) op.len, 1, NULL);
                break;
        case OP_FREE:
                rc = libssh2_channel_free(c->ch);
                break;
        case OP_PROBE:
                rc = libssh2_channel_setenv_ex(c->ch, "MYSOCKETD_KEEPALIVE", 19, "1", 1);
                break;
        case OP_KEEPALIVE:
                rc = libssh2_keepalive_send(s->session, &next);
                break;
        case OP_LISTEN:
                s->listen_result = libssh2_channel_forward_listen_ex(s->session, s->listen_host, s->listen_port,
                                                                     &s->listen_bound, LISTEN_QUEUE);
                rc = s->listen_result ? 0 : libssh2_session_last_errno(s->session);
                break;
        case OP_CANCEL:
                rc = libssh2_channel_forward_cancel(op.listener);
                break;
        case OP_NONE:
                break;
        }

        if (libssh2_session_block_directions(s->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
                if (rc == LIBSSH2_ERROR_EAGAIN && op_sends(op.kind))
                        s->pending = op;
                else
                        /* A reply libssh2 queued by itself (open confirmation, window adjust,
                         * rekey) is half sent: only a pure read may resume it. */
                        s->pending = (struct op) { .kind = OP_ACCEPT, .listener = any_listener(s) };
        } else
                s->pending = (struct op) { .kind = OP_NONE };
        return rc;
}

ssize_t op_run(struct session *s, enum op_kind kind, struct conn *c, char *buf, size_t len) {
        return op_call(s, (struct op) { .kind = kind, .conn = c, .buf = buf, .len = len });
}

/* Room in the kernel send queue: with TCP_NOTSENT_LOWAT, EPOLLOUT means exactly this, and
 * keeping the queue short means libssh2 practically never leaves a packet half sent (which
 * is what makes 1.10 drop data when another call comes along). The kernel is asked only when
 * what we sent since the last answer may have used that room up: the unsent queue grows only
 * by our own sends, so the room left is never less than we count. */
bool session_send_room(struct session *s) {
        if (s->room > 0)
                return true;
        int unsent = 0;
        if (ioctl(s->fd, SIOCOUTQNSD, &unsent) < 0)
                return true;
        s->room = SEND_LOWAT - unsent;
        return s->room > 0;
}
