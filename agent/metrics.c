/* The HTTP side of metrics.h: libmicrohttpd without a thread of its own, driven from the
 * daemon's sd-event loop.
 *
 * MHD runs in epoll mode (MHD_USE_EPOLL, no MHD_USE_INTERNAL_POLLING_THREAD): it keeps its
 * listening socket and every connection in one epoll descriptor of its own, which becomes
 * readable when any of them has an event. That one descriptor is an io source of ours;
 * MHD_run() (which never blocks: it waits 0 ms) does the bounded work on each wakeup, and
 * after every run MHD_get_timeout() sets a timer for what MHD must do without a socket
 * event (idle connections to time out, data it has already read but not yet handled).
 * This is the external-loop interface documented for both 0.9.7x (bookworm) and 1.0.x
 * (trixie); no fd_set, so no FD_SETSIZE limit and no re-registering per run.
 *
 * Abuse stays inside MHD's limits: a connection that sends nothing for
 * CONNECTION_TIMEOUT_S is closed, a request larger than the per-connection memory pool
 * (huge headers) is answered with an error and closed, and beyond CONNECTION_LIMIT
 * connections new ones are closed at once. None of it blocks the loop. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define CONNECTION_LIMIT 32               /* scrapers and health checks: a handful */
#define PER_IP_CONNECTION_LIMIT 16
#define CONNECTION_TIMEOUT_S 5u           /* idle or trickling connections */
#define CONNECTION_MEMORY_LIMIT (32 * 1024)   /* request line + headers + reply buffers */

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_JSON    "application/json"
#define CONTENT_TYPE_TEXT    "text/plain; charset=utf-8"

struct metrics {
        struct manager *manager;
        struct MHD_Daemon *mhd;
        sd_event_source *io;            /* MHD's epoll descriptor */
        sd_event_source *timer;         /* MHD_get_timeout() */
        char *start_error;              /* MHD's last message while starting */
        bool starting;
};

/* MHD's own messages: while starting they say why it cannot listen; afterwards they are
 * about one misbehaving client, which is debug chatter. */
static void on_mhd_log(void *userdata, const char *fmt, va_list ap) {
        struct metrics *mx = userdata;
        va_list copy;
        va_copy(copy, ap);
        _cleanup_(freep) char *msg = xvasprintf(fmt, copy);
        va_end(copy);
        msg[strip_line_end(msg, strlen(msg))] = '\0';
        if (mx->starting) {
                free(mx->start_error);
                mx->start_error = xstrdup(msg);
                return;
        }
        log_full(LOG_DEBUG, &(struct log_fields) { .event = "metrics" }, "metrics: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body) {
        struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
        if (!r) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        enum MHD_Result ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result on_request(void *userdata, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **request_ctx) {
        struct metrics *mx = userdata;
        const struct manager *m = mx->manager;
        if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, CONTENT_TYPE_TEXT,
                             xstrdup("method not allowed: only GET and HEAD\n"));
        /* The first call only announces the request: answering on the second, once the
         * request is read whole, lets MHD keep the connection alive for the next scrape. */
        if (!*request_ctx) {
                *request_ctx = mx;
                return MHD_YES;
        }
        if (streq(url, "/metrics"))
                return reply(conn, MHD_HTTP_OK, CONTENT_TYPE_METRICS, metrics_render(m));
        if (streq(url, "/health")) {
                bool down;
                char *body = metrics_health_json(m, &down);
                return reply(conn, down ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, CONTENT_TYPE_JSON, body);
        }
        if (streq(url, "/ready")) {
                bool ready = metrics_ready(m);
                return reply(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, CONTENT_TYPE_TEXT,
                             xstrdup(ready ? "ready\n" : "not ready: not every binding is up\n"));
        }
        return reply(conn, MHD_HTTP_NOT_FOUND, CONTENT_TYPE_TEXT,
                     xstrdup("not found: /metrics, /health and /ready are served\n"));
}

/* After every run: when must MHD run again without a socket event? */
static void schedule(struct metrics *mx) {
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t now;
        int r;
        if (MHD_get_timeout(mx->mhd, &ms) != MHD_YES)
                r = sd_event_source_set_enabled(mx->timer, SD_EVENT_OFF);
        else if ((r = sd_event_now(sd_event_source_get_event(mx->timer), CLOCK_MONOTONIC, &now)) >= 0 &&
                 (r = sd_event_source_set_time(mx->timer, now + (uint64_t) ms * 1000)) >= 0)
                r = sd_event_source_set_enabled(mx->timer, SD_EVENT_ONESHOT);
        /* Out of resources: MHD's own timeouts then run at the next socket event only. */
        if (r < 0)
                log_full(LOG_WARNING, &(struct log_fields) { .event = "metrics" },
                         "metrics: cannot arm the timeout: %s", strerror(-r));
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct metrics *mx = userdata;
        MHD_run(mx->mhd);
        schedule(mx);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        return on_io(NULL, -1, 0, userdata);
}

int metrics_new(sd_event *e, const char *listen, struct manager *m, struct metrics **ret, char **error) {
        struct sockaddr_storage ss;
        unsigned len;
        int r;
        if (parse_listen_address(listen, &ss, &len) < 0) {
                *error = xasprintf("metrics_listen \"%s\" is not IPV4:PORT or [IPV6]:PORT", listen);
                return -EINVAL;
        }
        struct metrics *mx = xcalloc(1, sizeof(*mx));
        *mx = (struct metrics) { .manager = m, .starting = true };
        unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
        /* MHD binds SOCK_ADDR; the port argument only names it in MHD's messages. */
        uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                                       : ((struct sockaddr_in *) &ss)->sin_port);
        errno = 0;
        mx->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, mx,
                                   MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, mx,
                                   MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
                                   MHD_OPTION_CONNECTION_LIMIT, (unsigned) CONNECTION_LIMIT,
                                   MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) PER_IP_CONNECTION_LIMIT,
                                   MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
                                   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY_LIMIT,
                                   MHD_OPTION_END);
        mx->starting = false;
        if (!mx->mhd) {
                r = errno > 0 ? -errno : -EADDRNOTAVAIL;
                *error = mx->start_error ? xasprintf("cannot listen for metrics on %s: %s", listen, mx->start_error)
                                         : xasprintf("cannot listen for metrics on %s: %s", listen, strerror(-r));
                goto out;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(mx->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                r = -EINVAL;
                *error = xasprintf("metrics: libmicrohttpd has no epoll descriptor to watch");
                goto out;
        }
        r = sd_event_add_io(e, &mx->io, info->epoll_fd, EPOLLIN, on_io, mx);
        if (r >= 0)
                r = sd_event_add_time(e, &mx->timer, CLOCK_MONOTONIC, 0, 0, on_timer, mx);
        if (r < 0) {
                *error = xasprintf("metrics: cannot watch the listener: %s", strerror(-r));
                goto out;
        }
        /* Names for debugging only: failing to set one changes nothing. */
        (void) sd_event_source_set_description(mx->io, "metrics-http");
        (void) sd_event_source_set_description(mx->timer, "metrics-timeout");
        schedule(mx);
        r = 0;
out:
        if (r < 0)
                metrics_free(mx);
        else
                *ret = mx;
        return r;
}

void metrics_free(struct metrics *mx) {
        if (!mx)
                return;
        sd_event_source_disable_unref(mx->io);
        sd_event_source_disable_unref(mx->timer);
        if (mx->mhd)
                MHD_stop_daemon(mx->mhd);
        free(mx->start_error);
        free(mx);
}
