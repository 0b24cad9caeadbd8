#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "list.h"
#include "log.h"
#include "protocol.h"
#include "util.h"

#define MAX_PEER_GROUPS 64
/* Stop reading requests from a client that does not read its replies. */
#define OUTPUT_PAUSE_READING (256u << 10)

struct control_client {
        struct control *control;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        struct ucred cred;
        gid_t groups[MAX_PEER_GROUPS];
        int n_groups;
        char *in;                       /* grows to PROTO_LINE_MAX as a request needs */
        size_t in_len, in_cap;
        char *out;
        size_t out_len, out_cap;
        bool closing;                   /* close once `out` is flushed */
        bool streaming;                 /* no request timeout; on_close when it goes */
        bool counted;                   /* one of n_streams */
        /* A stream's reader that falls behind loses its oldest lines, and a notice says how
         * many: the notice sits right after the line being sent (at notice_off), and a
         * later drop folds its count into the next one. */
        control_dropped_fn dropped_line;
        ssize_t notice_off;             /* -1: none queued */
        uint64_t notice_count;
        uint64_t accepted;              /* monotonic usec, for choosing whom to evict */
        void (*on_close)(struct control_client *c, void *userdata);
        void *on_close_userdata;
        struct control_client *next, *prev;
};

struct control {
        sd_event *event;
        int fd;
        sd_event_source *io;
        char *bound_path;               /* set when we bound it (not socket-activated) */
        control_handler_t handler;
        void *userdata;
        struct control_client *clients, *clients_tail;     /* oldest first */
        unsigned n_clients;
        unsigned n_streams;
};

static void client_free(struct control_client *c) {
        struct control *ctl = c->control;
        if (c->on_close)
                c->on_close(c, c->on_close_userdata);
        LIST_REMOVE(ctl->clients, ctl->clients_tail, c);
        ctl->n_clients--;
        if (c->counted)
                ctl->n_streams--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        close(c->fd);
        free(c->in);
        free(c->out);
        bool last_stream = c->counted && ctl->n_streams == 0;
        free(c);
        /* What a crowd of streams held goes back to the system, not only to malloc. */
        if (last_stream)
                malloc_trim(0);
}

/* Drops a client without freeing it here (we may be inside a handler or a log call): what
 * it has queued is discarded and its socket shut down both ways, which makes the socket hang
 * up; epoll reports EPOLLHUP whatever events are asked for, and the io callback frees it. */
static void client_drop(struct control_client *c) {
        c->closing = true;
        c->out_len = 0;
        shutdown(c->fd, SHUT_RDWR);
}

static void client_update_events(struct control_client *c) {
        uint32_t ev = 0;
        if (!c->closing && c->out_len < OUTPUT_PAUSE_READING)
                ev |= EPOLLIN;
        if (c->out_len > 0)
                ev |= EPOLLOUT;
        /* Fails only when epoll has no room: a client we cannot watch is dropped. */
        if (sd_event_source_set_io_events(c->io, ev) < 0)
                client_drop(c);
}

/* Returns false if the client is gone. */
static bool client_flush(struct control_client *c) {
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        client_free(c);
                        return false;
                }
                memmove(c->out, c->out + n, c->out_len - (size_t) n);
                c->out_len -= (size_t) n;
                if (c->notice_off >= 0)
                        c->notice_off = c->notice_off > n ? c->notice_off - n : 0;
        }
        /* A stream's big first reply is sent: do not hold its buffer for the stream's life. */
        if (c->out_len == 0 && c->out_cap > CONTROL_STREAM_QUEUE_MAX) {
                free(c->out);
                c->out = NULL;
                c->out_cap = 0;
        }
        if (c->closing && c->out_len == 0) {
                client_free(c);
                return false;
        }
        client_update_events(c);
        return true;
}

static void append(struct control_client *c, const char *line, size_t len) {
        if (c->out_len + len > c->out_cap) {
                c->out_cap = c->out_len + len + 4096;
                c->out = xrealloc(c->out, c->out_cap);
        }
        memcpy(c->out + c->out_len, line, len);
        c->out_len += len;
}

static int queue_line(struct control_client *c, const cJSON *o) {
        size_t len;
        _cleanup_(freep) char *line = proto_encode_line(o, &len);
        if (!line) {
                _cleanup_(proto_json_freep) cJSON *e = proto_reply_error(PROTO_CODE_INTERNAL, "reply too large for one line");
                line = proto_encode_line(e, &len);
        }
        if (c->out_len + len > CONTROL_OUTPUT_MAX)
                return -ENOBUFS;
        append(c, line, len);
        return 0;
}

/* Drops every queued line after the one being sent (and `extra` more not queued), then
 * queues the notice of how many went. */
static void stream_drop(struct control_client *c, uint64_t extra) {
        const char *nl = c->out_len ? memchr(c->out, '\n', c->out_len) : NULL;
        size_t head = nl ? (size_t) (nl - c->out) + 1 : 0;
        uint64_t n = extra;
        for (const char *p = c->out + head; p < c->out + c->out_len; p++)
                n += *p == '\n';
        if (c->notice_off > 0) {         /* the last notice goes too: its count carries over */
                n += c->notice_count - 1;
                c->notice_off = -1;
        }
        c->out_len = head;
        size_t len;
        _cleanup_(proto_json_freep) cJSON *o = c->dropped_line(n);
        _cleanup_(freep) char *line = o ? proto_encode_line(o, &len) : NULL;
        if (!line)
                return;
        c->notice_off = (ssize_t) head;
        c->notice_count = n;
        append(c, line, len);
}

/* A stream never holds more than CONTROL_STREAM_QUEUE_MAX unread bytes (past its first
 * reply): when its reader lags, the oldest lines go. */
static void stream_queue(struct control_client *c, const cJSON *o) {
        size_t len;
        _cleanup_(freep) char *line = proto_encode_line(o, &len);
        if (!line || len > CONTROL_STREAM_QUEUE_MAX / 2) {
                stream_drop(c, 1);
                return;
        }
        const char *nl = c->out_len ? memchr(c->out, '\n', c->out_len) : NULL;
        size_t head = nl ? (size_t) (nl - c->out) + 1 : 0;
        if (c->out_len - head + len > CONTROL_STREAM_QUEUE_MAX)
                stream_drop(c, 0);
        append(c, line, len);
}

int control_client_send(struct control_client *c, const cJSON *o) {
        /* Only queue: we may be deep inside a handler or a log call, where freeing the
         * client would pull the rug. The io callback writes and, if need be, closes. */
        if (c->closing)
                return 0;
        if (c->streaming && c->dropped_line) {
                stream_queue(c, o);
                client_update_events(c);
                return 0;
        }
        if (queue_line(c, o) < 0) {
                /* A reader this far behind has stopped reading: drop it, not the daemon. */
                client_drop(c);
                return -ENOBUFS;
        }
        client_update_events(c);
        return 0;
}

static void reply_and_close(struct control_client *c, enum proto_code code, const char *msg) {
        _cleanup_(proto_json_freep) cJSON *e = proto_reply_error(code, "%s", msg);
        queue_line(c, e);
        c->closing = true;
        c->in_len = 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        struct control_client *c = userdata;
        reply_and_close(c, PROTO_CODE_INVALID, "request incomplete: no full line within 10 s; closing");
        client_flush(c);
        return 0;
}

/* Restarts the request timeout (none for a stream). Returns < 0 when no timer could be
 * armed; the caller drops the client, which would otherwise hold its slot forever. */
static int arm_timer(struct control_client *c) {
        if (c->streaming) {
                c->timer = sd_event_source_disable_unref(c->timer);
                return 0;
        }
        uint64_t deadline = now_monotonic_usec() + CONTROL_REQUEST_TIMEOUT_USEC;
        if (c->timer)
                return sd_event_source_set_time(c->timer, deadline);
        return sd_event_add_time(c->control->event, &c->timer, CLOCK_MONOTONIC, deadline, 0, on_timeout, c);
}

/* Handles complete lines in the input buffer. Returns false if the client is gone. */
static bool process_lines(struct control_client *c) {
        size_t start = 0;
        char *nl;
        while (!c->closing && (nl = memchr(c->in + start, '\n', c->in_len - start))) {
                size_t len = (size_t) (nl - (c->in + start));
                const char *line = c->in + start;
                start += len + 1;
                if (len > 0 && line[len - 1] == '\r')
                        len--;
                if (len == 0)
                        continue;
                _cleanup_(proto_json_freep) cJSON *req = NULL;
                _cleanup_(freep) char *error = NULL;
                const char *cmd;
                cJSON *reply;
                if (proto_request_parse(line, len, &req, &cmd, &error) < 0)
                        reply = proto_reply_error(PROTO_CODE_INVALID, "%s", error);
                else
                        reply = c->control->handler(c, req, cmd, c->control->userdata);
                if (reply) {
                        if (queue_line(c, reply) < 0)
                                c->closing = true;
                        cJSON_Delete(reply);
                }
                if (arm_timer(c) < 0)
                        client_drop(c);
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        if (c->in_len >= PROTO_LINE_MAX)
                reply_and_close(c, PROTO_CODE_INVALID, "request line longer than 65536 bytes; closing");
        return client_flush(c);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control_client *c = userdata;
        if (c->closing && c->out_len == 0) {
                client_free(c);
                return 0;
        }
        if (revents & EPOLLOUT && !client_flush(c))
                return 0;
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->closing)
                return 0;
        /* Most requests are short; only a long one pays for a long buffer. */
        if (c->in_cap - c->in_len < 4096 && c->in_cap < PROTO_LINE_MAX) {
                c->in_cap = c->in_cap ? c->in_cap * 2 : 4096;
                if (c->in_cap > PROTO_LINE_MAX)
                        c->in_cap = PROTO_LINE_MAX;
                c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                /* The peer is done; a stream ends here, a half-sent request is dropped. */
                client_free(c);
                return 0;
        }
        c->in_len += (size_t) n;
        process_lines(c);
        return 0;
}

static void evict_one(struct control *ctl) {
        struct control_client *victim = NULL;
        for (struct control_client *c = ctl->clients; c; c = c->next)
                if (!c->streaming && (!victim || c->accepted < victim->accepted))
                        victim = c;
        if (victim) {
                log_debug("control: %u clients; dropping the oldest idle one (pid %d)", ctl->n_clients,
                          (int) victim->cred.pid);
                client_free(victim);
        }
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control *ctl = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning("control: accept failed: %s", strerror(errno));
                return 0;
        }
        /* Silent connections must not lock out the admin: make room by dropping the oldest. */
        if (ctl->n_clients >= CONTROL_MAX_CLIENTS)
                evict_one(ctl);
        struct control_client *c = xcalloc(1, sizeof(*c));
        socklen_t len = sizeof(c->cred);
        c->control = ctl;
        c->fd = cfd;
        c->accepted = now_monotonic_usec();
        c->notice_off = -1;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0)
                c->cred = (struct ucred) { .pid = 0, .uid = (uid_t) -1, .gid = (gid_t) -1 };
        len = sizeof(c->groups);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
                c->n_groups = (int) (len / sizeof(gid_t));
        LIST_APPEND(ctl->clients, ctl->clients_tail, c);
        ctl->n_clients++;
        if (sd_event_add_io(ctl->event, &c->io, cfd, EPOLLIN, on_client_io, c) < 0 || arm_timer(c) < 0)
                client_free(c);
        return 0;
}

/* A socket file nobody accepts on is left over from a crash: safe to replace. */
static int remove_stale(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        int r = connect(fd, (struct sockaddr *) &sa, sizeof(sa));
        close(fd);
        if (r == 0)
                return -EADDRINUSE;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int bind_path(const char *path, gid_t gid, char **error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(freep) char *dir = xstrdup(path);
        int fd = -1, r;
        if (strlen(path) >= sizeof(sa.sun_path)) {
                *error = xasprintf("control socket path %s is too long (max %zu bytes)", path, sizeof(sa.sun_path) - 1);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        r = mkdir_p(dirname(dir), 0755);
        if (r < 0) {
                *error = xasprintf("cannot create the directory of %s: %s", path, strerror(-r));
                return r;
        }
        r = remove_stale(path);
        if (r < 0) {
                *error = r == -EADDRINUSE
                        ? xasprintf("another mysocketd is already answering on %s", path)
                        : xasprintf("cannot replace %s: %s", path, r == -EEXIST ? "not a socket" : strerror(-r));
                return r;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                goto fail;
        /* Bind under a tight umask so there is no moment when others may connect. */
        mode_t old = umask(0177);
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0)
                goto fail;
        if (gid != (gid_t) -1 && chown(path, (uid_t) -1, gid) < 0)
                log_warning("cannot give %s to group %u: %s", path, (unsigned) gid, strerror(errno));
        if (chmod(path, 0660) < 0 || listen(fd, SOMAXCONN) < 0)
                goto fail;
        return fd;
fail:
        r = -errno;
        *error = xasprintf("cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0)
                close(fd);
        return r;
}

int control_new(sd_event *event, int listen_fd, const char *path, gid_t gid,
                control_handler_t handler, void *userdata, struct control **ret, char **error) {
        struct control *ctl = xcalloc(1, sizeof(*ctl));
        int r;
        ctl->event = sd_event_ref(event);
        ctl->handler = handler;
        ctl->userdata = userdata;
        ctl->fd = listen_fd;
        if (listen_fd < 0) {
                ctl->fd = bind_path(path, gid, error);
                if (ctl->fd < 0) {
                        r = ctl->fd;
                        goto out;
                }
                ctl->bound_path = xstrdup(path);
        } else
                fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
        r = sd_event_add_io(event, &ctl->io, ctl->fd, EPOLLIN, on_accept, ctl);
        if (r < 0) {
                *error = xasprintf("cannot watch the control socket: %s", strerror(-r));
                goto out;
        }
        *ret = ctl;
        return 0;
out:
        control_free(ctl);
        return r;
}

void control_free(struct control *ctl) {
        if (!ctl)
                return;
        while (ctl->clients)
                client_free(ctl->clients);
        sd_event_source_disable_unref(ctl->io);
        if (ctl->fd >= 0)
                close(ctl->fd);
        if (ctl->bound_path)
                unlink(ctl->bound_path);
        free(ctl->bound_path);
        sd_event_unref(ctl->event);
        free(ctl);
}

uid_t control_client_uid(const struct control_client *c) {
        return c->cred.uid;
}

bool control_client_in_group(const struct control_client *c, gid_t gid) {
        if (gid == (gid_t) -1)
                return false;
        if (c->cred.gid == gid)
                return true;
        for (int i = 0; i < c->n_groups && i < MAX_PEER_GROUPS; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}

int control_client_may_stream(const struct control_client *c) {
        const struct control *ctl = c->control;
        unsigned mine = 0;
        if (c->streaming)
                return -EALREADY;
        if (ctl->n_streams >= CONTROL_MAX_STREAMS)
                return -EUSERS;
        for (const struct control_client *o = ctl->clients; o; o = o->next)
                mine += o->counted && o->cred.uid == c->cred.uid;
        return mine >= CONTROL_MAX_STREAMS_PER_UID ? -EDQUOT : 0;
}

int control_client_stream(struct control_client *c, const cJSON *first,
                          void (*on_close)(struct control_client *c, void *userdata),
                          control_dropped_fn dropped_line, void *userdata) {
        struct control *ctl = c->control;
        int r = control_client_may_stream(c);
        if (r < 0)
                return r;
        /* The first reply (recent events) may be large: it is not one to drop. */
        control_client_send(c, first);
        ctl->n_streams++;
        c->counted = true;
        c->dropped_line = dropped_line;
        control_client_park(c, on_close, userdata);
        return 0;
}

void control_client_park(struct control_client *c, void (*on_close)(struct control_client *c, void *userdata),
                         void *userdata) {
        c->streaming = true;
        c->on_close = on_close;
        c->on_close_userdata = userdata;
        c->timer = sd_event_source_disable_unref(c->timer);
}
