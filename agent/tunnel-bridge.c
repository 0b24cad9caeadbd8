/* The tunnel engine, bridge side: each channel the relay opens is joined to a fresh
 * connection to local_host:local_port, with bounded buffers both ways and half-close.
 *
 * Flow control is per connection: when the buffer toward the local service is full the
 * channel is not read, so its SSH window is not reopened and the relay stops sending on
 * that channel only; when the buffer toward the relay is full the local socket is not read.
 * One stuck client never slows the others. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "tunnel-internal.h"

#define LOCAL_CONNECT_TIMEOUT_USEC (10 * 1000000ULL)
#define WARN_INTERVAL_USEC (5 * 1000000ULL)
#define READS_PER_VISIT 4
#define REFILLS_PER_VISIT 4

static int on_local_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);
static void local_connect_next(struct conn *c);

static bool stopped(struct session *s) {
        return s->state == SESSION_DOWN || s->freed || s->pending.kind != OP_NONE;
}

struct conn *conn_new(struct session *s, struct tunnel *t, LIBSSH2_CHANNEL *ch, bool is_log) {
        struct conn *c = xcalloc(1, sizeof(*c));
        c->s = s;
        c->t = t;
        c->ch = ch;
        c->is_log = is_log;
        c->fd = -1;
        c->id = ++s->next_conn_id;
        /* The log shell's bytes go straight to log_feed: it needs no 64 KiB buffer, and
         * every idle binding has one such channel. */
        c->tl = xmalloc(is_log ? LOG_READ_SIZE : CONN_BUF_SIZE);
        LIST_APPEND(s->conns_head, s->conns_tail, c);
        c->dirty = true;
        if (is_log) {
                c->state = CONN_OPEN;
        } else {
                c->tr = xmalloc(CONN_BUF_SIZE);
                c->state = CONN_CONNECTING;
                if (t) {
                        t->stats.connections_total++;
                        t->stats.connections_active++;
                        local_connect_next(c);
                } else
                        conn_abort(c, -ECONNABORTED);
        }
        session_schedule(s);
        return c;
}

static void close_local(struct conn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

void conn_destroy(struct conn *c) {
        struct session *s = c->s;
        close_local(c);
        LIST_REMOVE(s->conns_head, s->conns_tail, c);
        if (s->pending.conn == c)
                s->pending = (struct op) { .kind = OP_ACCEPT, .listener = any_listener(s) };
        if (c->is_log) {
                s->log = NULL;
                /* The relay ended the shell: keep a bare session channel for the probes, once. */
                if (s->state == SESSION_UP && s->log_phase == LOG_RUNNING && !s->freed) {
                        s->log_phase = c->error == 0 && s->log_reopens++ < 1 ? LOG_OPEN : LOG_NONE;
                        session_schedule(s);
                }
        } else if (c->t)
                c->t->stats.connections_active--;
        free(c->tl);
        free(c->tr);
        free(c);
}

/* Gives up on the connection: the local side is closed now, the channel is closed and freed
 * by the pump (EOF + CLOSE). */
void conn_abort(struct conn *c, int error) {
        if (c->state == CONN_CLOSING)
                return;
        c->error = error;
        close_local(c);
        c->state = CONN_CLOSING;
        c->tl_len = c->tr_len = 0;
        c->dirty = true;
        session_schedule(c->s);
}

/* ---- local side ------------------------------------------------------------------------ */

static int on_local_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct conn *c = userdata;
        struct session *s = c->s;
        (void) src, (void) usec;
        session_enter(s);
        close_local(c);
        c->error = -ETIMEDOUT;
        local_connect_next(c);
        session_leave(s);
        return 0;
}

static void warn_local(struct conn *c, int error) {
        struct tunnel *t = c->t;
        uint64_t now = now_monotonic_usec();
        /* One line per few seconds: a dead local service with a busy public side would
         * otherwise flood the journal. */
        if (t->last_warn && now < t->last_warn + WARN_INTERVAL_USEC) {
                t->warn_suppressed++;
                return;
        }
        if (t->loc_resolve_error)
                log_binding(LOG_WARNING, t->name, "local-connect",
                            "cannot resolve local host %s; closing the relay's connection", t->local_host);
        else
                log_binding(LOG_WARNING, t->name, "local-connect",
                            "cannot connect to %s:%u: %s; closing the relay's connection%s", t->local_host,
                            t->local_port, strerror(-error), t->warn_suppressed ? " (and earlier ones)" : "");
        t->last_warn = now;
        t->warn_suppressed = 0;
}

static void local_connect_next(struct conn *c) {
        struct session *s = c->s;
        struct tunnel *t = c->t;
        int last = c->error ? -c->error : ECONNREFUSED;

        while (!t->loc_resolve_error && c->addr_idx < t->n_loc_addrs) {
                struct addr *a = &t->loc_addrs[c->addr_idx++];
                int one = 1;
                int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        last = errno;
                        continue;
                }
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (connect(fd, (struct sockaddr *) &a->sa, a->len) < 0 && errno != EINPROGRESS) {
                        last = errno;
                        close(fd);
                        continue;
                }
                c->fd = fd;
                if (sd_event_add_io(s->event, &c->io, fd, EPOLLOUT, on_local_io, c) < 0 ||
                    sd_event_add_time_relative(s->event, &c->timer, CLOCK_MONOTONIC, LOCAL_CONNECT_TIMEOUT_USEC,
                                               100000, on_local_timer, c) < 0) {
                        last = ENOMEM;
                        close_local(c);
                        continue;
                }
                return;
        }
        warn_local(c, -last);
        conn_abort(c, -last);
}

static void local_connect_done(struct conn *c) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err == EINPROGRESS || err == EALREADY)
                return;
        if (err) {
                close_local(c);
                c->error = -err;
                local_connect_next(c);
                return;
        }
        c->timer = sd_event_source_disable_unref(c->timer);
        c->error = 0;
        c->state = CONN_OPEN;
        c->dirty = true;
}

static void flush_local(struct conn *c) {
        while (c->tl_len > 0 && c->fd >= 0 && c->state == CONN_OPEN) {
                ssize_t n = send(c->fd, c->tl + c->tl_off, c->tl_len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        conn_abort(c, -errno);
                        return;
                }
                bool was_full = c->tl_off + c->tl_len == CONN_BUF_SIZE;
                c->tl_off += (size_t) n;
                c->tl_len -= (size_t) n;
                if (c->tl_len == 0)
                        c->tl_off = 0;
                if (was_full)
                        c->dirty = true;    /* libssh2 may hold more for us: read it without waiting for the socket */
        }
        if (c->ch_eof && c->tl_len == 0 && !c->local_shut && c->fd >= 0 && c->state == CONN_OPEN) {
                (void) shutdown(c->fd, SHUT_WR);
                c->local_shut = true;
        }
}

/* Returns whether the read filled the buffer: the socket may hold more. */
static bool read_local(struct conn *c) {
        if (c->local_eof || c->state != CONN_OPEN)
                return false;
        if (c->tr_len == 0)
                c->tr_off = 0;
        else if (c->tr_off > 0 && c->tr_off + c->tr_len == CONN_BUF_SIZE) {
                /* A pending channel_write only needs its own packet copy, not this buffer. */
                memmove(c->tr, c->tr + c->tr_off, c->tr_len);
                c->tr_off = 0;
        }
        size_t room = CONN_BUF_SIZE - c->tr_off - c->tr_len;
        if (room == 0)
                return false;
        ssize_t n = recv(c->fd, c->tr + c->tr_off + c->tr_len, room, 0);
        if (n > 0)
                c->tr_len += (size_t) n;
        else if (n == 0)
                c->local_eof = true;
        else if (errno != EAGAIN && errno != EINTR)
                conn_abort(c, -errno);
        return n == (ssize_t) room;
}

void conn_update_events(struct conn *c) {
        uint32_t ev = 0;
        if (!c->io)
                return;
        if (c->state == CONN_CONNECTING)
                ev = EPOLLOUT;
        else if (c->state == CONN_OPEN) {
                if (!c->local_eof && c->tr_off + c->tr_len < CONN_BUF_SIZE)
                        ev |= EPOLLIN;
                if (c->tl_len > 0)
                        ev |= EPOLLOUT;
        }
        if (ev) {
                sd_event_source_set_io_events(c->io, ev);
                sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        } else
                sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
}

static int on_local_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;
        struct session *s = c->s;
        (void) src, (void) fd;
        session_enter(s);
        if (c->state == CONN_CONNECTING)
                local_connect_done(c);
        if (c->state == CONN_OPEN && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                c->tr_more = read_local(c);
        if (c->state == CONN_OPEN && (revents & (EPOLLOUT | EPOLLERR)))
                flush_local(c);
        c->dirty = true;
        conn_update_events(c);
        /* Serve it now rather than on the next loop turn (sd-event dispatches one source per
         * turn, each with its own epoll_wait): the pump visits only dirty connections, and
         * may free this one. */
        pump(s);
        session_leave(s);
        return 0;
}

/* ---- log lines --------------------------------------------------------------------------- */

static void emit_line(struct session *s) {
        s->line[s->line_len] = 0;
        if (s->line_len > 0) {
                _cleanup_(freep) char *line = sanitize_text(s->line, LOG_LINE_MAX);
                session_log_line(s, line);
        }
        s->line_len = 0;
}

static void log_feed(struct session *s, const char *p, size_t n) {
        for (size_t i = 0; i < n && !s->freed && s->state != SESSION_DOWN; i++) {
                if (p[i] == '\r')
                        continue;
                if (p[i] == '\n') {
                        emit_line(s);
                        continue;
                }
                if (s->line_len == LOG_LINE_MAX)
                        emit_line(s);
                s->line[s->line_len++] = p[i];
        }
}

/* ---- the SSH side ------------------------------------------------------------------------ */

static void session_error(struct conn *c, ssize_t rc, const char *what) {
        struct session *s = c->s;
        const char *m;
        int e = ssh_errno(s, (int) rc, &m);
        if (s->sock_broken || (rc != LIBSSH2_ERROR_EAGAIN && rc < 0 && rc != LIBSSH2_ERROR_CHANNEL_CLOSED &&
                               rc != LIBSSH2_ERROR_CHANNEL_EOF_SENT && rc != LIBSSH2_ERROR_CHANNEL_UNKNOWN &&
                               rc != LIBSSH2_ERROR_CHANNEL_FAILURE && rc != LIBSSH2_ERROR_BAD_USE &&
                               rc != LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED &&
                               rc != LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED &&
                               rc != LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED)) {
                if (s->sock_broken)
                        session_fail(s, -ECONNRESET, false, "connection to relay %s:%u lost%s%s", s->p.server,
                                    s->p.server_port, s->sock_errno ? ": " : "",
                                    s->sock_errno ? strerror(s->sock_errno) : "");
                else
                        session_fail(s, e, false, "SSH session with %s:%u failed (%s): %s", s->p.server,
                                    s->p.server_port, what, m);
                return;
        }
        log_binding(LOG_DEBUG, c->t ? c->t->name : NULL, "connection", "connection %" PRIu64 ": %s failed: %s",
                    c->id, what, m);
        conn_abort(c, e);
}

void conn_op_done(struct conn *c, enum op_kind kind, ssize_t rc) {
        struct session *s = c->s;

        switch (kind) {
        case OP_READ:
                if (rc > 0) {
                        if (c->is_log)
                                log_feed(s, c->tl, (size_t) rc);
                        else {
                                c->tl_len += (size_t) rc;
                                if (c->t)
                                        c->t->stats.bytes_in += (uint64_t) rc;
                        }
                } else if (rc == 0) {
                        /* 0 without EOF happens around a rekey: not an end of stream. */
                        if (libssh2_channel_eof(c->ch) == 1)
                                c->ch_eof = true;
                } else if (rc != LIBSSH2_ERROR_EAGAIN)
                        session_error(c, rc, "read");
                break;
        case OP_WRITE:
                if (rc > 0) {
                        c->tr_off += (size_t) rc;
                        c->tr_len -= (size_t) rc;
                        if (c->tr_len == 0)
                                c->tr_off = 0;
                        if (c->t)
                                c->t->stats.bytes_out += (uint64_t) rc;
                } else if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
                        session_error(c, rc, "write");
                break;
        case OP_EOF:
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        break;
                c->eof_sent = true;
                if (rc < 0)
                        session_error(c, rc, "send EOF");
                break;
        case OP_ADJUST:
                if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
                        session_error(c, rc, "window adjust");
                break;
        case OP_PROBE:
                /* Any answer (the relay refuses "env" on a running shell) proves liveness;
                 * the bytes themselves already moved last_rx. */
                c->probe_inflight = rc == LIBSSH2_ERROR_EAGAIN;
                if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && rc != LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED)
                        session_error(c, rc, "keepalive probe");
                break;
        case OP_FREE:
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        break;
                if (rc < 0 && s->sock_broken) {
                        session_error(c, rc, "close");
                        break;
                }
                log_binding(LOG_DEBUG, c->t ? c->t->name : NULL, "connection", "connection %" PRIu64 " closed%s%s", c->id,
                            c->error ? ": " : "", c->error ? strerror(-c->error) : "");
                c->ch = NULL;
                conn_destroy(c);
                break;
        default:
                break;
        }
}

/* Both directions finished (or the log shell ended): close the local side, free the channel. */
static void maybe_finish(struct conn *c) {
        if (c->state == CONN_CLOSING)
                return;
        if (c->is_log) {
                if (c->ch_eof)
                        c->state = CONN_CLOSING;
                return;
        }
        if (c->ch_eof && c->local_shut && c->eof_sent) {
                close_local(c);
                c->state = CONN_CLOSING;
        }
}

bool conn_service(struct conn *c) {
        struct session *s = c->s;
        ssize_t rc;

        if (c->state == CONN_CLOSING) {
                rc = op_run(s, OP_FREE, c, NULL, 0);
                conn_op_done(c, OP_FREE, rc);    /* may free c */
                return !stopped(s);
        }

        /* relay -> local */
        for (int i = 0; i < READS_PER_VISIT && !c->ch_eof; i++) {
                if (c->tl_len == 0)
                        c->tl_off = 0;
                size_t room = c->is_log ? LOG_READ_SIZE : CONN_BUF_SIZE - c->tl_off - c->tl_len;
                if (room == 0)
                        break;
                rc = op_run(s, OP_READ, c, c->tl + (c->is_log ? 0 : c->tl_off + c->tl_len), room);
                conn_op_done(c, OP_READ, rc);
                if (stopped(s))
                        return false;
                if (c->state == CONN_CLOSING || rc < (ssize_t) room)
                        break;
                if (i == READS_PER_VISIT - 1)
                        c->dirty = true;      /* more to come: let the others have a turn first */
        }
        if (c->state == CONN_CLOSING)
                return true;
        flush_local(c);
        if (c->state == CONN_CLOSING)
                return true;

        /* Keep the relay's window for this channel open as long as we keep reading it. */
        if (!c->ch_eof) {
                unsigned long win = libssh2_channel_window_read(c->ch);
                if (win < CONN_WINDOW / 2 && session_send_room(s)) {
                        rc = op_run(s, OP_ADJUST, c, NULL, CONN_WINDOW - win);
                        conn_op_done(c, OP_ADJUST, rc);
                        if (stopped(s))
                                return false;
                }
        }

        /* local -> relay. A bulk sender fills the buffer at every read: read on while the relay
         * takes it, up to REFILLS_PER_VISIT buffers (then the others get their turn, and the
         * local socket's next event brings us back), rather than one buffer per event. */
        for (int refills = 0; c->state == CONN_OPEN;) {
                if (c->tr_len == 0) {
                        if (!c->tr_more || refills++ == REFILLS_PER_VISIT)
                                break;
                        c->tr_more = read_local(c);
                        if (c->tr_len == 0)
                                break;
                }
                if (!session_send_room(s)) {
                        s->want_room = true;
                        c->dirty = true;
                        break;
                }
                if (libssh2_channel_window_write(c->ch) == 0)
                        break;    /* the relay's window adjust arrives as bytes: a full sweep follows */
                rc = op_run(s, OP_WRITE, c, c->tr + c->tr_off, c->tr_len);
                conn_op_done(c, OP_WRITE, rc);
                if (stopped(s))
                        return false;
                if (rc <= 0)
                        break;
        }
        if (c->state == CONN_OPEN && c->local_eof && c->tr_len == 0 && !c->eof_sent) {
                rc = op_run(s, OP_EOF, c, NULL, 0);
                conn_op_done(c, OP_EOF, rc);
                if (stopped(s))
                        return false;
        }

        maybe_finish(c);
        if (c->state == CONN_CLOSING) {
                c->dirty = true;
                session_schedule(s);
        }
        conn_update_events(c);
        return true;
}
