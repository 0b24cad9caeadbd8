/* The tunnel engine, bridge side: each channel the relay opens is joined to a fresh
 * connection to local_host:local_port, with bounded buffers both ways and half-close.
 *
 * Flow control is per connection: when the buffer toward the local service is full the
 * channel is not read, so its SSH window is not reopened and the relay stops sending on
 * that channel only; when the buffer toward the relay is full the local socket is not read.
 * One stuck client never slows the others. See bridge.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "list.h"
#include "localconn.h"
#include "logline.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define CONN_BUF_SIZE       (64 * 1024)     /* per direction, per forwarded connection */
#define CONN_WINDOW         (1024 * 1024)   /* SSH receive window kept open per channel */
#define LOG_READ_SIZE       4096            /* read size of the log shell channel */
#define READS_PER_VISIT 4
#define REFILLS_PER_VISIT 4
/* The local socket is watched edge-triggered, in and out at once, from the connect to the
 * close. Level-triggered, every epoll_wait (one per sd-event turn, and a turn dispatches one
 * source) reported again every connection still waiting for its turn: under 200 concurrent
 * connections 167 events per epoll_wait on average, a third of the daemon's CPU. And a watch
 * that never changes costs no epoll_ctl per visit. The price: the bridge itself remembers
 * what the socket may still hold (tr_more) and is written until EAGAIN (then an EPOLLOUT
 * edge follows). */
#define LOCAL_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define LOCAL_EVENTS_IN (EPOLLIN | EPOLLRDHUP | EPOLLET)   /* until a send says EAGAIN */


enum conn_state {
        CONN_CONNECTING,  /* local connect in progress */
        CONN_OPENING,     /* a local forward's: direct-tcpip open queued or in flight (direct.c) */
        CONN_OPEN,
        CONN_CLOSING,     /* local side gone; channel being freed */
};

struct bridge {
        struct session *s;
        struct tunnel *t;         /* the forward it came in on; NULL for the log shell and
                                   * once that forward is gone */
        struct bridge *prev, *next;
        sshcall_channel *ch;
        bool is_log;              /* the log shell: data goes to on_log, no local socket */
        enum conn_state state;
        uint64_t id;

        int fd;
        sd_event_source *io;
        struct localconn *lc;     /* while connecting */

        char *tl;                 /* relay -> local */
        size_t tl_off, tl_len;
        char *tr;                 /* local -> relay */
        size_t tr_off, tr_len;
        struct logline *line;     /* the log shell: the line being read */

        bool ch_eof;              /* relay sent EOF and everything before it was read */
        bool local_shut;          /* shutdown(SHUT_WR) done on the local socket */
        bool tr_more;             /* the local socket may hold more than tr took (LOCAL_EVENTS) */
        bool rdhup;               /* the local service shut its side: read on to the EOF */
        bool out_watched;         /* the watch includes EPOLLOUT */
        bool local_eof;           /* the local service closed its side */
        bool eof_sent;            /* channel EOF sent to the relay */
        bool dirty;               /* needs a visit from the pump */
        bool probe_inflight;      /* log conn: keepalive probe awaiting its reply */
        int error;                /* why it is closing, for the debug log */
};

static int on_local_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);
static void local_opened(struct bridge *c);
static void on_connected(void *userdata, int fd);
static void local_dropped(struct bridge *c, int error);

static ssize_t run(struct bridge *c, enum sshcall_kind kind, char *buf, size_t len) {
        return sshcall_run(c->s->ssh, (struct sshcall_op) { .kind = kind, .owner = c, .ch = c->ch, .buf = buf,
                                                             .len = len });
}

static void bridge_done(struct bridge *c, enum sshcall_kind kind, ssize_t rc);
static bool service(struct bridge *c);

struct bridge *bridge_new(struct session *s, struct tunnel *t, sshcall_channel *ch, bool is_log) {
        struct bridge *c = xcalloc(1, sizeof(*c));
        c->s = s;
        c->t = t;
        c->ch = ch;
        c->is_log = is_log;
        c->fd = -1;
        c->id = ++s->next_bridge_id;
        /* The log shell's bytes go straight to logline_feed: it needs no 64 KiB buffer, and
         * every idle binding has one such channel. */
        c->tl = xmalloc(is_log ? LOG_READ_SIZE : CONN_BUF_SIZE);
        if (is_log)
                c->line = logline_new();
        LIST_APPEND(s->bridges_head, s->bridges_tail, c);
        c->dirty = true;
        if (is_log) {
                c->state = CONN_OPEN;
                session_schedule(s);
        } else {
                c->tr = xmalloc(CONN_BUF_SIZE);
                c->state = CONN_CONNECTING;
                log_binding(LOG_DEBUG, t ? t->name : NULL, "connection", "connection %" PRIu64 " from the relay%s",
                            c->id, t ? "" : " for a forward being cancelled");
                if (t) {
                        t->stats.connections_total++;
                        t->stats.connections_active++;
                        if (t->limit)
                                t->limit->active++;
                        int fd;
                        int k = localconn_start(s->event, t, on_connected, c, &c->lc, &fd);
                        if (k < 0)
                                bridge_close(c, k);
                        else if (k == 1) {
                                /* On loopback, connected already: it opens in this loop turn,
                                 * with the bytes read from the channel. */
                                c->fd = fd;
                                local_opened(c);
                        }
                } else
                        bridge_close(c, -ECONNABORTED);
        }
        /* A connection comes from the pump (accept_done), whose sweep follows and visits it
         * (or, when a call blocked, retry_pending's sweep of all): no loop turn of its own. */
        return c;
}

static void close_local(struct bridge *c) {
        c->io = sd_event_source_disable_unref(c->io);
        localconn_free(c->lc);
        c->lc = NULL;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* The connection no longer counts for its tunnel (and the tunnel's binding-wide limit,
 * which outlives the tunnel: a relay that goes away must not leave its slots taken). */
static void detach_tunnel(struct bridge *c) {
        if (!c->is_log && c->t) {
                c->t->stats.connections_active--;
                if (c->t->limit)
                        c->t->limit->active--;
        }
        c->t = NULL;
}

static void bridge_free(struct bridge *c) {
        struct session *s = c->s;
        close_local(c);
        LIST_REMOVE(s->bridges_head, s->bridges_tail, c);
        if (s->ssh)
                sshcall_forget(s->ssh, c);
        if (c->is_log)
                session_log_closed(s, c->error);
        detach_tunnel(c);
        logline_free(c->line);
        free(c->tl);
        free(c->tr);
        free(c);
}

/* Gives up on the connection: the local side is closed now, the channel is closed and freed
 * by the pump (EOF + CLOSE). */
void bridge_close(struct bridge *c, int error) {
        if (c->state == CONN_CLOSING)
                return;
        if (c->state == CONN_OPENING)
                direct_forget(c->s, c);
        c->error = error;
        close_local(c);
        c->state = CONN_CLOSING;
        c->tl_len = c->tr_len = 0;
        c->dirty = true;
        session_schedule(c->s);
}

/* ---- local side ------------------------------------------------------------------------ */

static void on_connected(void *userdata, int fd) {
        struct bridge *c = userdata;
        struct session *s = c->s;
        session_enter(s);
        localconn_free(c->lc);
        c->lc = NULL;
        if (fd < 0) {
                bridge_close(c, fd);
                goto out;
        }
        c->fd = fd;
        c->error = 0;
        local_opened(c);
        session_pump(s);    /* serve it now, as on_local_io does */
out:
        session_leave(s);
}

/* The local socket is connected (or accepted): bytes may flow. No EPOLLOUT yet, or its
 * first edge would cost a loop turn for nothing; what the socket already holds gives an
 * edge as the watch is added. */
static void local_opened(struct bridge *c) {
        int k = sd_event_add_io(c->s->event, &c->io, c->fd, LOCAL_EVENTS_IN, on_local_io, c);
        if (k < 0) {
                bridge_close(c, k);
                return;
        }
        c->out_watched = false;
        c->state = CONN_OPEN;
        c->dirty = true;
}

/* The local service reset an open connection. */
static void local_dropped(struct bridge *c, int error) {
        if (c->t)
                localconn_failed(c->t, true, error);
        bridge_close(c, error);
}

/* Room at the end of the buffer toward the local service (from its start once empty); a log
 * channel reads LOG_READ_SIZE at a time. */
static size_t tl_room(struct bridge *c) {
        if (c->tl_len == 0)
                c->tl_off = 0;
        return c->is_log ? LOG_READ_SIZE : CONN_BUF_SIZE - c->tl_off - c->tl_len;
}

static void flush_local(struct bridge *c) {
        while (c->tl_len > 0 && c->fd >= 0 && c->state == CONN_OPEN) {
                ssize_t n = send(c->fd, c->tl + c->tl_off, c->tl_len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                local_dropped(c, -errno);
                        else if (!c->out_watched) {
                                /* The edge comes once there is room (re-armed: at once if already). */
                                int k = sd_event_source_set_io_events(c->io, LOCAL_EVENTS);
                                if (k < 0)
                                        bridge_close(c, k);
                                c->out_watched = k >= 0;
                        }
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

/* Reads what tr has room for. Returns whether the socket may hold more (no edge will say
 * so): the read filled the buffer, or there was no room to read at all. A short read took
 * everything, except the EOF behind data the service sent before shutting its side: that is
 * read at once, so it goes out with the data. */
static bool read_local(struct bridge *c) {
        if (c->local_eof || c->state != CONN_OPEN)
                return false;
        if (c->tr_len == 0)
                c->tr_off = 0;
        else if (c->tr_off > 0 && c->tr_off + c->tr_len == CONN_BUF_SIZE) {
                /* A pending channel_write only needs its own packet copy, not this buffer. */
                memmove(c->tr, c->tr + c->tr_off, c->tr_len);
                c->tr_off = 0;
        }
        for (;;) {
                size_t room = CONN_BUF_SIZE - c->tr_off - c->tr_len;
                if (room == 0)
                        return true;
                ssize_t n = recv(c->fd, c->tr + c->tr_off + c->tr_len, room, 0);
                if (n > 0) {
                        c->tr_len += (size_t) n;
                        if (n == (ssize_t) room)
                                return true;
                        if (c->rdhup)
                                continue;
                } else if (n == 0)
                        c->local_eof = true;
                else if (errno != EAGAIN && errno != EINTR)
                        local_dropped(c, -errno);
                return false;
        }
}

static int on_local_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct bridge *c = userdata;
        struct session *s = c->s;
        (void) src, (void) fd;
        session_enter(s);
        /* The relay's input, if any, has its own event: no recv for it here (one per event). */
        if (s->depth == 1 && s->ssh)
                sshcall_dispatch_dry(s->ssh);
        if (c->state == CONN_OPEN && (revents & (EPOLLRDHUP | EPOLLHUP)))
                c->rdhup = true;
        if (c->state == CONN_OPEN && (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                c->tr_more = read_local(c);
        if (c->state == CONN_OPEN && (revents & (EPOLLOUT | EPOLLERR)))
                flush_local(c);
        c->dirty = true;
        /* Serve it now rather than on the next loop turn (sd-event dispatches one source per
         * turn, each with its own epoll_wait): the pump visits only dirty connections, and
         * may free this one. */
        session_pump(s);
        session_leave(s);
        return 0;
}

/* ---- log lines --------------------------------------------------------------------------- */

/* A line of the log shell, to every tunnel of the session; false once the session is gone
 * (a tunnel's owner may end it from on_log). */
static bool emit_line(const char *line, void *userdata) {
        struct session *s = userdata;
        session_log_line(s, line);
        return !s->freed && s->state != SESSION_DOWN;
}

/* ---- the SSH side ------------------------------------------------------------------------ */

/* A call made for c failed: the session, when the error ends it (sshcall's table), else c. */
static void call_failed(struct bridge *c, ssize_t rc, const char *what) {
        struct session *s = c->s;
        if (sshcall_ended(s->ssh)) {
                session_lost(s, what);
                return;
        }
        log_binding(LOG_DEBUG, c->t ? c->t->name : NULL, "connection", "connection %" PRIu64 ": %s failed: %s",
                    c->id, what, sshcall_message(s->ssh));
        bridge_close(c, (int) rc);
}

static void bridge_done(struct bridge *c, enum sshcall_kind kind, ssize_t rc) {
        struct session *s = c->s;

        switch (kind) {
        case SSHCALL_READ:
                if (rc > 0) {
                        if (c->is_log)
                                logline_feed(c->line, c->tl, (size_t) rc, emit_line, s);
                        else {
                                c->tl_len += (size_t) rc;
                                if (c->t)
                                        c->t->stats.bytes_in += (uint64_t) rc;
                        }
                } else if (rc == 0) {
                        /* 0 without EOF happens around a rekey: not an end of stream. */
                        if (sshcall_channel_eof(c->ch))
                                c->ch_eof = true;
                } else if (!sshcall_again(rc))
                        call_failed(c, rc, "read");
                break;
        case SSHCALL_WRITE:
                if (rc > 0) {
                        c->tr_off += (size_t) rc;
                        c->tr_len -= (size_t) rc;
                        if (c->tr_len == 0)
                                c->tr_off = 0;
                        if (c->t)
                                c->t->stats.bytes_out += (uint64_t) rc;
                } else if (rc < 0 && !sshcall_again(rc))
                        call_failed(c, rc, "write");
                break;
        case SSHCALL_EOF:
                if (sshcall_again(rc))
                        break;
                c->eof_sent = true;
                if (rc < 0)
                        call_failed(c, rc, "send EOF");
                break;
        case SSHCALL_ADJUST:
                if (rc < 0 && !sshcall_again(rc))
                        call_failed(c, rc, "window adjust");
                break;
        case SSHCALL_PROBE:
                /* Any answer (the relay refuses "env" on a running shell) proves liveness;
                 * the bytes themselves already moved last_rx. */
                c->probe_inflight = sshcall_again(rc);
                if (rc < 0 && !sshcall_again(rc) && rc != -EREMOTEIO)
                        call_failed(c, rc, "keepalive probe");
                break;
        case SSHCALL_FREE:
                if (sshcall_again(rc))
                        break;
                if (rc < 0 && sshcall_socket_broken(s->ssh)) {
                        call_failed(c, rc, "close");
                        break;
                }
                log_binding(LOG_DEBUG, c->t ? c->t->name : NULL, "connection", "connection %" PRIu64 " closed%s%s", c->id,
                            c->error ? ": " : "", c->error ? strerror(-c->error) : "");
                c->ch = NULL;
                bridge_free(c);
                break;
        default:
                break;
        }
}

/* Both directions finished (or the log shell ended): close the local side, free the channel. */
static void maybe_finish(struct bridge *c) {
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

static bool service(struct bridge *c) {
        struct session *s = c->s;
        ssize_t rc;

        if (c->state == CONN_OPENING)
                return true;
        if (c->state == CONN_CLOSING && !c->ch) {
                bridge_free(c);       /* a local forward's connection whose channel never opened */
                return true;
        }
        if (c->state == CONN_CLOSING) {
                rc = run(c, SSHCALL_FREE, NULL, 0);
                bridge_done(c, SSHCALL_FREE, rc);    /* may free c */
                return !session_stopped(s);
        }

        /* relay -> local */
        for (int i = 0; i < READS_PER_VISIT && !c->ch_eof; i++) {
                size_t room = tl_room(c);
                if (room == 0 && i > 0) {
                        /* Full from this visit's reads: pass it on and read on, rather than
                         * wait a loop turn per buffer. */
                        flush_local(c);
                        if (c->state == CONN_CLOSING)
                                return true;
                        room = tl_room(c);
                }
                if (room == 0)
                        break;
                rc = run(c, SSHCALL_READ, c->tl + (c->is_log ? 0 : c->tl_off + c->tl_len), room);
                bridge_done(c, SSHCALL_READ, rc);
                if (session_stopped(s))
                        return false;
                if (c->state == CONN_CLOSING)
                        break;
                if (rc < (ssize_t) room) {
                        /* The relay's EOF may be queued behind the bytes just read, with no
                         * byte left to come that would bring us back to see it. */
                        if (rc > 0 && sshcall_channel_eof(c->ch))
                                c->ch_eof = true;
                        break;
                }
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
                unsigned long win = sshcall_window_read(c->ch);
                if (win < CONN_WINDOW / 2 && sshcall_send_room(s->ssh)) {
                        rc = run(c, SSHCALL_ADJUST, NULL, CONN_WINDOW - win);
                        bridge_done(c, SSHCALL_ADJUST, rc);
                        if (session_stopped(s))
                                return false;
                }
        }

        /* local -> relay. A bulk sender fills the buffer at every read: read on while the relay
         * takes it, up to REFILLS_PER_VISIT buffers (then the others get their turn; no edge
         * will bring us back, the dirty mark does), rather than one buffer per event. */
        for (int refills = 0; c->state == CONN_OPEN;) {
                if (c->tr_len == 0) {
                        if (!c->tr_more)
                                break;
                        if (refills++ == REFILLS_PER_VISIT) {
                                c->dirty = true;
                                break;
                        }
                        c->tr_more = read_local(c);
                        if (c->tr_len == 0)
                                break;
                }
                if (!sshcall_send_room(s->ssh)) {
                        s->want_room = true;
                        c->dirty = true;
                        break;
                }
                if (sshcall_window_write(c->ch) == 0)
                        break;    /* the relay's window adjust arrives as bytes: a full sweep follows */
                rc = run(c, SSHCALL_WRITE, c->tr + c->tr_off, c->tr_len);
                bridge_done(c, SSHCALL_WRITE, rc);
                if (session_stopped(s))
                        return false;
                if (rc <= 0)
                        break;
        }
        if (c->state == CONN_OPEN && c->local_eof && c->tr_len == 0 && !c->eof_sent) {
                rc = run(c, SSHCALL_EOF, NULL, 0);
                bridge_done(c, SSHCALL_EOF, rc);
                if (session_stopped(s))
                        return false;
        }

        maybe_finish(c);
        if (c->state == CONN_CLOSING)
                return service(c);      /* close and free the channel now, not on another loop turn */
        return true;
}

/* ---- a local forward's connections (direct.c opens their channels) ------------------------ */

struct bridge *bridge_new_local(struct session *s, struct tunnel *t, int fd) {
        struct bridge *c = xcalloc(1, sizeof(*c));
        c->s = s;
        c->t = t;
        c->fd = fd;
        c->id = ++s->next_bridge_id;
        c->tl = xmalloc(CONN_BUF_SIZE);
        c->tr = xmalloc(CONN_BUF_SIZE);
        c->state = CONN_OPENING;
        LIST_APPEND(s->bridges_head, s->bridges_tail, c);
        t->stats.connections_total++;
        t->stats.connections_active++;
        log_binding(LOG_DEBUG, t->name, "connection", "local connection %" PRIu64 ": opening a channel to %s:%u",
                    c->id, t->target_host, t->target_port);
        return c;
}

void bridge_opened(struct bridge *c, sshcall_channel *ch) {
        c->ch = ch;
        sshcall_merge_stderr(ch, false);
        local_opened(c);
        session_schedule(c->s);
}

/* ---- for the session ------------------------------------------------------------------- */

bool bridge_closing(const struct bridge *b) {
        return b->state == CONN_CLOSING;
}

sshcall_channel *bridge_channel(const struct bridge *b) {
        return b->ch;
}

void bridge_abort_tunnel(struct session *s, struct tunnel *t) {
        for (struct bridge *c = s->bridges_head; c; c = c->next)
                if (c->t == t) {
                        detach_tunnel(c);
                        bridge_close(c, -ECONNABORTED);
                }
}

void bridge_quiesce_all(struct session *s) {
        for (struct bridge *c = s->bridges_head; c; c = c->next) {
                c->io = sd_event_source_disable_unref(c->io);
                localconn_free(c->lc);
                c->lc = NULL;
                detach_tunnel(c);
        }
}

void bridge_free_all(struct session *s) {
        while (s->bridges_head)
                bridge_free(s->bridges_head);
}

bool bridge_sweep(struct session *s, bool all) {
        struct bridge *c, *n;
        for (c = s->bridges_head; c; c = n) {
                n = c->next;
                if (!all && !c->dirty)
                        continue;
                c->dirty = false;
                if (!service(c))
                        return false;
        }
        /* Fairness: the next sweep starts one connection further. */
        if (s->bridges_head && s->bridges_head != s->bridges_tail) {
                c = s->bridges_head;
                LIST_REMOVE(s->bridges_head, s->bridges_tail, c);
                LIST_APPEND(s->bridges_head, s->bridges_tail, c);
        }
        for (c = s->bridges_head; c; c = c->next)
                if (c->dirty && !s->want_room) {
                        session_schedule(s);
                        break;
                }
        return true;
}

void bridge_retry(struct bridge *c, const struct sshcall_op *pending) {
        struct sshcall_op op = *pending;
        if (op.kind == SSHCALL_READ && !c->is_log) {
                /* The local side may have taken bytes meanwhile: read at the buffer's end now. */
                op.len = tl_room(c);                              /* 0 still resumes the adjust */
                op.buf = c->tl + c->tl_off + c->tl_len;
        }
        bridge_done(c, op.kind, sshcall_run(c->s->ssh, op));
}

bool bridge_resume_read(struct bridge *log) {
        if (!log || log->state == CONN_CLOSING)
                return false;
        bridge_done(log, SSHCALL_READ, run(log, SSHCALL_READ, log->tl, LOG_READ_SIZE));
        return true;
}

void bridge_probe(struct bridge *log) {
        bridge_done(log, SSHCALL_PROBE, run(log, SSHCALL_PROBE, NULL, 0));
}

bool bridge_probe_inflight(const struct bridge *log) {
        return log->probe_inflight;
}
