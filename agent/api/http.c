/* HTTP requests over libcurl's multi-socket interface, driven by sd-event. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>

#include <curl/curl.h>

#include "conf.h"
#include "http.h"
#include "util.h"

#define USEC_PER_MSEC 1000ULL

struct http {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        TAILQ_HEAD(, http_req) running;
        uint64_t connect_timeout, total_timeout;
};

struct http_req {
        struct http *http;
        TAILQ_ENTRY(http_req) link;
        CURL *easy;
        struct curl_slist *headers;
        char *body;                    /* may hold a password: wiped on free */
        char *buf;
        size_t len;
        bool too_big;
        char errbuf[CURL_ERROR_SIZE];
        http_done_cb done;
        void *userdata;
        /* A proxy tunnel (http_tunnel_start) instead of a request: */
        http_tunnel_cb tunnel_done;
        char *proxy_url;               /* may hold credentials: wiped on free */
        char *proxy_name;              /* "host:port", for sentences */
        char *target;                  /* "host:port" asked of the proxy */
        bool proxy_http;
};

static int map_curl_error(CURLcode res) {
        switch (res) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_WRITE_ERROR:
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
                return -EPROTO;
        default:
                return -EIO;
        }
}

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static void req_free(struct http_req *r) {
        if (!r)
                return;
        if (r->easy) {
                TAILQ_REMOVE(&r->http->running, r, link);
                curl_multi_remove_handle(r->http->multi, r->easy);
                curl_easy_cleanup(r->easy);
        }
        for (struct curl_slist *l = r->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(r->headers);
        wipe_free(r->body);
        wipe_free(r->proxy_url);
        free(r->proxy_name);
        free(r->target);
        free(r->buf);
        free(r);
}

void http_cancel(struct http_req *r) {
        req_free(r);
}

static void tunnel_finished(struct http_req *r, CURLcode res);

static void finished(struct http_req *r, CURLcode res) {
        if (r->tunnel_done) {
                tunnel_finished(r, res);
                return;
        }
        struct http_reply reply = { .body = r->buf ? r->buf : "", .len = r->len };
        if (res != CURLE_OK) {
                reply.error = r->too_big ? -EFBIG : map_curl_error(res);
                reply.message = r->too_big ? "reply too large"
                                           : r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
                reply.body = "";
                reply.len = 0;
        } else {
                char *ctype = NULL;
                curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &reply.status);
                curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
                reply.content_type = ctype;
        }
        r->done(&reply, r->userdata);
        req_free(r);
}

static void check_done(struct http *h) {
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                struct http_req *r = NULL;
                CURLcode res = m->data.result;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
                finished(r, res);
        }
}

static int on_curl_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct http *h = userdata;
        int flags = 0, running;
        if (revents & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(h->multi, fd, flags, &running);
        check_done(h);
        return 0;
}

static int on_curl_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct http *h = userdata;
        int running;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(h);
        return 0;
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct http *h = userp;
        sd_event_source *src = socketp;
        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        curl_multi_assign(h->multi, fd, NULL);
                        sd_event_source_disable_unref(src);
                }
                return 0;
        }
        uint32_t events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
        if (src) {
                if (sd_event_source_set_io_events(src, events) < 0 ||
                    sd_event_source_set_enabled(src, SD_EVENT_ON) < 0)
                        return -1;
                return 0;
        }
        if (sd_event_add_io(h->event, &src, fd, events, on_curl_io, h) < 0)
                return -1;
        (void) sd_event_source_set_description(src, "api-curl-io");
        curl_multi_assign(h->multi, fd, src);
        return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        struct http *h = userp;
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(h->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        /* Not from inside this callback: curl forbids calling socket_action here. */
        uint64_t when = now_monotonic_usec() + (uint64_t) timeout_ms * USEC_PER_MSEC;
        if (sd_event_source_set_time(h->timer, when) < 0 ||
            sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct http_req *r = userdata;
        size_t n = size * nmemb;
        if (n > HTTP_REPLY_MAX || r->len + n > HTTP_REPLY_MAX) {
                r->too_big = true;
                return 0;              /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        r->buf = xrealloc(r->buf, r->len + n + 1);
        memcpy(r->buf + r->len, ptr, n);
        r->len += n;
        r->buf[r->len] = '\0';
        return n;
}

/* An easy handle for r with what every transfer sets. NULL when libcurl has no memory. */
static CURL *easy_new(struct http_req *r, const char *url, bool https) {
        CURL *e = curl_easy_init();
        if (!e)
                return NULL;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "mysocketd/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, https ? "http,https" : "http");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | (https ? CURLPROTO_HTTPS : 0)));
#endif
        return e;
}

/* Hands e to the multi handle: r runs from now on. Returns 0 and *ret, or -ENOMEM (r freed). */
static int easy_run(struct http *h, struct http_req *r, CURL *e, struct http_req **ret) {
        if (!e || curl_multi_add_handle(h->multi, e) != CURLM_OK) {
                curl_easy_cleanup(e);
                req_free(r);
                return -ENOMEM;
        }
        r->easy = e;
        TAILQ_INSERT_TAIL(&h->running, r, link);
        *ret = r;
        return 0;
}

int http_start(struct http *h, const char *method, const char *url, const char *body,
               const char *const *headers, http_done_cb done, void *userdata, struct http_req **ret) {
        struct http_req *r = xcalloc(1, sizeof(*r));
        r->http = h;
        r->done = done;
        r->userdata = userdata;
        r->body = xstrdup(body);

        static const char *const fixed[] = { "Accept: application/json",
                                             "Content-Type: application/json", "Expect:" };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (!(r->headers = curl_slist_append(r->headers, fixed[i])))
                        goto fail;
        for (size_t i = 0; headers && headers[i]; i++)
                if (!(r->headers = curl_slist_append(r->headers, headers[i])))
                        goto fail;
        CURL *e = easy_new(r, url, true);
        if (!e)
                goto fail;
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (h->connect_timeout / USEC_PER_MSEC));
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (h->total_timeout / USEC_PER_MSEC));
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) HTTP_REPLY_MAX);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        if (streq(method, "POST")) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) (r->body ? strlen(r->body) : 2));
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "{}");
        } else if (!streq(method, "GET"))
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        return easy_run(h, r, e, ret);
fail:
        req_free(r);
        return -ENOMEM;
}

int http_new(sd_event *e, struct http **ret) {
        struct http *h = xcalloc(1, sizeof(*h));
        int r = -ENOMEM;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(h);
                return -ENOMEM;
        }
        h->event = sd_event_ref(e);
        TAILQ_INIT(&h->running);
        h->connect_timeout = 10 * 1000 * USEC_PER_MSEC;
        h->total_timeout = 30 * 1000 * USEC_PER_MSEC;
        h->multi = curl_multi_init();
        if (!h->multi)
                goto fail;
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        /* Accuracy 1 us: curl's timeouts are milliseconds, often 0 ("go on at once"), and
         * sd-event's default accuracy (0: 250 ms) would hold every API call that long and
         * finish the ones in flight together, on one tick. */
        if ((r = sd_event_add_time(e, &h->timer, CLOCK_MONOTONIC, 0, 1, on_curl_timer, h)) < 0 ||
            (r = sd_event_source_set_enabled(h->timer, SD_EVENT_OFF)) < 0)
                goto fail;
        (void) sd_event_source_set_description(h->timer, "api-curl-timer");
        *ret = h;
        return 0;
fail:
        http_free(h);
        return r;
}

void http_free(struct http *h) {
        struct http_req *r;
        if (!h)
                return;
        while ((r = TAILQ_FIRST(&h->running)))
                req_free(r);
        if (h->multi)
                curl_multi_cleanup(h->multi);
        sd_event_source_disable_unref(h->timer);
        sd_event_unref(h->event);
        curl_global_cleanup();
        free(h);
}

void http_set_timeouts(struct http *h, uint64_t connect_usec, uint64_t total_usec) {
        h->connect_timeout = connect_usec;
        h->total_timeout = total_usec;
}

/* ---- proxy tunnels --------------------------------------------------------------------- */

static const char *socks_reply(long code) {
        switch (code) {
        case CURLPX_REPLY_NOT_ALLOWED:
                return "connection not allowed by its rules";
        case CURLPX_REPLY_CONNECTION_REFUSED:
                return "connection refused by the target";
        case CURLPX_REPLY_HOST_UNREACHABLE:
                return "host unreachable";
        case CURLPX_REPLY_NETWORK_UNREACHABLE:
                return "network unreachable";
        case CURLPX_REPLY_GENERAL_SERVER_FAILURE:
                return "general SOCKS server failure";
        case CURLPX_REPLY_TTL_EXPIRED:
                return "TTL expired";
        case CURLPX_RESOLVE_HOST:
                return "the target's name does not resolve";
        case CURLPX_NO_AUTH:
        case CURLPX_REQUEST_FAILED:
        case CURLPX_USER_REJECTED:
                return "authentication refused";
        default:
                return NULL;
        }
}

/* Takes the socket before libcurl closes it with the easy handle: a duplicate stays ours. */
static void tunnel_finished(struct http_req *r, CURLcode res) {
        _cleanup_(freep) char *msg = NULL;
        long code = 0, oserr = 0;
        int error = 0, fd = -1;

        curl_easy_getinfo(r->easy, CURLINFO_HTTP_CONNECTCODE, &code);
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &oserr);
        const char *seen = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
        if (res == CURLE_OK) {
                curl_socket_t s = CURL_SOCKET_BAD;
                if (curl_easy_getinfo(r->easy, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD) {
                        error = -EIO;
                        msg = xasprintf("proxy %s: no socket after connecting to %s", r->proxy_name, r->target);
                } else if ((fd = fcntl(s, F_DUPFD_CLOEXEC, 3)) < 0) {
                        error = -errno;
                        msg = xasprintf("cannot keep the socket through proxy %s: %s", r->proxy_name, strerror(errno));
                }
        } else if (r->proxy_http && code >= 300) {
                /* 407 asks for credentials; some proxies (tinyproxy) answer wrong ones with 401. */
                bool auth = code == 407 || code == 401;
                error = auth ? -EACCES : -ECONNREFUSED;
                msg = xasprintf("proxy %s refused CONNECT to %s: HTTP %ld%s%s", r->proxy_name, r->target, code,
                                code == 407 ? " (proxy authentication required" : code == 401 ?
                                " (proxy authentication failed" : "",
                                auth ? ": check the user and password in [ssh] proxy)" : "");
        } else if (res == CURLE_COULDNT_RESOLVE_PROXY) {
                error = -EHOSTUNREACH;
                msg = xasprintf("cannot resolve proxy %s: %s", r->proxy_name, seen);
        } else if (res == CURLE_OPERATION_TIMEDOUT) {
                error = -ETIMEDOUT;
                msg = xasprintf("timed out connecting through proxy %s to %s", r->proxy_name, r->target);
        } else if (res == CURLE_PROXY) {
                long px = 0;
                curl_easy_getinfo(r->easy, CURLINFO_PROXY_ERROR, &px);
                const char *why = socks_reply(px);
                error = px == CURLPX_NO_AUTH || px == CURLPX_USER_REJECTED ? -EACCES : -ECONNREFUSED;
                msg = xasprintf("proxy %s refused the connection to %s: %s%s%s%s", r->proxy_name, r->target,
                                why ? why : seen, why ? " (" : "", why ? seen : "", why ? ")" : "");
        } else if (res == CURLE_COULDNT_CONNECT && oserr) {
                error = -ECONNREFUSED;
                msg = xasprintf("cannot connect to proxy %s: %s", r->proxy_name, strerror((int) oserr));
        } else {
                error = map_curl_error(res);
                msg = xasprintf("proxy %s, connecting to %s: %s", r->proxy_name, r->target, seen);
        }
        http_tunnel_cb done = r->tunnel_done;
        void *userdata = r->userdata;
        req_free(r);                   /* closes libcurl's socket; fd is a duplicate */
        done(userdata, error, msg, fd);
}

static char *host_port(const char *host, unsigned port) {
        return xasprintf(strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

int http_tunnel_start(struct http *h, const char *proxy_url, const char *host, uint16_t port, uint64_t timeout_usec,
                      http_tunnel_cb done, void *userdata, struct http_req **ret) {
        struct http_req *r = xcalloc(1, sizeof(*r));
        struct conf_proxy p;
        r->http = h;
        r->tunnel_done = done;
        r->userdata = userdata;
        r->proxy_url = xstrdup(proxy_url);
        r->proxy_name = conf_proxy_name(proxy_url);
        r->target = host_port(host, port);
        if (conf_proxy_parse(proxy_url, &p) == 0) {
                r->proxy_http = streq(p.scheme, "http");
                conf_proxy_clear(&p);
        }
        _cleanup_(freep) char *url = xasprintf("http://%s/", r->target);

        CURL *e = easy_new(r, url, false);
        if (e) {
                curl_easy_setopt(e, CURLOPT_PROXY, r->proxy_url);
                curl_easy_setopt(e, CURLOPT_NOPROXY, "");  /* no_proxy in the environment: not for the relay */
                curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);   /* CONNECT (SOCKS ignores it) */
                curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);      /* done once connected: the socket is ours */
                curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (timeout_usec / USEC_PER_MSEC));
        }
        return easy_run(h, r, e, ret);
}
