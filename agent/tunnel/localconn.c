/* The local side's connect (see localconn.h): cut from bridge.c, which keeps the bytes. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "localconn.h"
#include "log.h"
#include "resolve.h"
#include "session.h"
#include "util.h"

#define LOCAL_CONNECT_TIMEOUT_USEC (10 * 1000000ULL)
#define WARN_INTERVAL_USEC (5 * 1000000ULL)

struct localconn {
        sd_event *event;
        struct tunnel *t;
        localconn_done_fn done;
        void *userdata;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* this address's connect timeout */
        size_t addr_idx;
        int error;                /* the last address's failure */
};

static void close_fd(struct localconn *lc) {
        lc->io = sd_event_source_disable_unref(lc->io);
        lc->timer = sd_event_source_disable_unref(lc->timer);
        if (lc->fd >= 0)
                close(lc->fd);
        lc->fd = -1;
}

void localconn_free(struct localconn *lc) {
        if (!lc)
                return;
        close_fd(lc);
        free(lc);
}

void localconn_failed(struct tunnel *t, bool dropped, int error) {
        t->stats.local_errors++;
        t->local_failing = true;
        free(t->last_local_error);
        t->last_local_error = t->loc_resolve_error ? xasprintf("cannot resolve local host %s", t->local_host)
                                  : dropped ? xasprintf("%s:%u dropped a connection: %s", t->local_host, t->local_port,
                                                        strerror(-error))
                                            : xasprintf("cannot connect to %s:%u: %s", t->local_host, t->local_port,
                                                        strerror(-error));
}

static void warn_local(struct tunnel *t, int error) {
        uint64_t now = now_monotonic_usec();
        localconn_failed(t, false, error);
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

static void set_nodelay(int fd, void *userdata) {
        int one = 1;
        (void) userdata;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *src, uint64_t usec, void *userdata);

/* The next address; returns 0 while one is being tried, 1 when connected at once (lc->fd,
 * on loopback), else -errno (warned). */
static int connect_next(struct localconn *lc) {
        struct tunnel *t = lc->t;
        int last = lc->error ? lc->error : -ECONNREFUSED;

        while (!t->loc_resolve_error) {
                int fd = resolve_connect_next(t->loc_addrs, t->n_loc_addrs, &lc->addr_idx, last, set_nodelay, NULL);
                if (fd < 0) {
                        last = fd;
                        break;
                }
                lc->fd = fd;
                int k = resolve_connect_now(&t->loc_addrs[lc->addr_idx - 1], fd);
                if (k == 1) {
                        t->local_failing = false;
                        return 1;
                }
                if (k < 0) {
                        last = k;
                        close_fd(lc);
                        continue;
                }
                k = sd_event_add_io(lc->event, &lc->io, fd, EPOLLOUT, on_io, lc);
                if (k >= 0)
                        k = sd_event_add_time_relative(lc->event, &lc->timer, CLOCK_MONOTONIC,
                                                       LOCAL_CONNECT_TIMEOUT_USEC, 100000, on_timer, lc);
                if (k < 0) {
                        last = k;
                        close_fd(lc);
                        continue;
                }
                return 0;
        }
        warn_local(t, last);
        return last;
}

/* The attempt ended: the callback may free lc. */
static void finish(struct localconn *lc, int fd_or_error) {
        lc->io = sd_event_source_disable_unref(lc->io);
        lc->timer = sd_event_source_disable_unref(lc->timer);
        lc->fd = -1;
        lc->done(lc->userdata, fd_or_error);
}

static void retry(struct localconn *lc, int error) {
        close_fd(lc);
        lc->error = error;
        int k = connect_next(lc);
        if (k != 0)
                finish(lc, k == 1 ? lc->fd : k);
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        (void) src, (void) usec;
        retry(userdata, -ETIMEDOUT);
        return 0;
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct localconn *lc = userdata;
        (void) src, (void) revents;
        int k = resolve_connect_result(fd);
        if (k == -EINPROGRESS)
                return 0;
        if (k == -ECONNRESET || k == -EPIPE) {
                /* Accepted, then reset before we saw the connect finish: a drop, not a
                 * refusal, and another address would not help. */
                localconn_failed(lc->t, true, k);
                close_fd(lc);
                finish(lc, k);
                return 0;
        }
        if (k < 0) {
                retry(lc, k);
                return 0;
        }
        lc->t->local_failing = false;
        finish(lc, fd);
        return 0;
}

int localconn_start(sd_event *event, struct tunnel *t, localconn_done_fn done, void *userdata,
                    struct localconn **ret, int *fd) {
        struct localconn *lc = xcalloc(1, sizeof(*lc));
        lc->event = event;
        lc->t = t;
        lc->done = done;
        lc->userdata = userdata;
        lc->fd = -1;
        int k = connect_next(lc);
        if (k == 1) {
                *fd = lc->fd;
                lc->fd = -1;
        }
        if (k != 0) {
                localconn_free(lc);
                return k;
        }
        *ret = lc;
        return 0;
}
