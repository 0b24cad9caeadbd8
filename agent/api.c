/* The mysocket REST API client's transport: libcurl's multi-socket interface driven by
 * sd-event, one struct http_req per request, and the client's life cycle.
 * The only file of the daemon that includes libcurl. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <curl/curl.h>

#include "api-internal.h"
#include "log.h"
#include "util.h"

_Static_assert(API_CURL_ERROR_SIZE == CURL_ERROR_SIZE, "curl's error buffer size changed");

/* ---- libcurl on sd-event -------------------------------------------------------------- */

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

static void check_done(struct api *a);

static int on_curl_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct api *a = userdata;
        int flags = 0, running;
        if (revents & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(a->multi, fd, flags, &running);
        check_done(a);
        return 0;
}

static int on_curl_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct api *a = userdata;
        int running;
        curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(a);
        return 0;
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct api *a = userp;
        sd_event_source *src = socketp;
        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        curl_multi_assign(a->multi, fd, NULL);
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
        if (sd_event_add_io(a->event, &src, fd, events, on_curl_io, a) < 0)
                return -1;
        (void) sd_event_source_set_description(src, "api-curl-io");
        curl_multi_assign(a->multi, fd, src);
        return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        struct api *a = userp;
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(a->curl_timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        /* Not from inside this callback: curl forbids calling socket_action here. */
        uint64_t when = now_monotonic_usec() + (uint64_t) timeout_ms * 1000;
        if (sd_event_source_set_time(a->curl_timer, when) < 0 ||
            sd_event_source_set_enabled(a->curl_timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct http_req *h = userdata;
        size_t n = size * nmemb;
        if (n > API_REPLY_MAX || h->len + n > API_REPLY_MAX) {
                h->too_big = true;
                return 0;              /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        h->buf = xrealloc(h->buf, h->len + n + 1);
        memcpy(h->buf + h->len, ptr, n);
        h->len += n;
        h->buf[h->len] = '\0';
        return n;
}

/* ---- requests ------------------------------------------------------------------------- */

struct http_req *api_http_new(struct api *a, const char *method, char *path_owned,
                                 cJSON *body, bool auth, http_done_t done, void *userdata) {
        struct http_req *h = xcalloc(1, sizeof(*h));
        h->api = a;
        h->method = xstrdup(method);
        h->path = path_owned;
        if (body) {
                h->body = cJSON_PrintUnformatted(body);
                if (!h->body)
                        abort();
                cJSON_Delete(body);
        }
        h->auth = auth;
        h->done = done;
        h->userdata = userdata;
        return h;
}

static void http_detach(struct http_req *h) {
        struct api *a = h->api;
        if (h->where == REQ_WAITING)
                TAILQ_REMOVE(&a->waiting, h, link);
        else if (h->where == REQ_RUNNING) {
                TAILQ_REMOVE(&a->running, h, link);
                curl_multi_remove_handle(a->multi, h->easy);
        }
        h->where = REQ_IDLE;
        if (h->easy)
                curl_easy_cleanup(h->easy);
        h->easy = NULL;
        curl_slist_free_all(h->headers);
        h->headers = NULL;
}

/* Frees without calling done. */
void api_http_free(struct http_req *h) {
        if (!h)
                return;
        http_detach(h);
        if (h->api->login_req == h)
                h->api->login_req = NULL;
        if (h->api->refresh_req == h)
                h->api->refresh_req = NULL;
        if (h->body) {
                explicit_bzero(h->body, strlen(h->body));
                free(h->body);
        }
        free(h->method);
        free(h->path);
        free(h->token_used);
        free(h->buf);
        free(h);
}

bool api_token_usable(struct api *a) {
        return a->token && a->token_exp > now_realtime_usec() + TOKEN_MARGIN_USEC;
}

char *api_http_what(struct http_req *h) {
        return xasprintf("%s %s", h->method, h->path ? h->path : "/user/{user_id}");
}

/* Calls done exactly once and frees h. */
void api_http_complete(struct http_req *h, int error, cJSON *json, const char *message) {
        http_detach(h);
        if (h->api->login_req == h)
                h->api->login_req = NULL;
        if (h->api->refresh_req == h)
                h->api->refresh_req = NULL;
        h->done(h, error, json, message);
        cJSON_Delete(json);
        api_http_free(h);
}

int api_http_start(struct http_req *h) {
        struct api *a = h->api;
        if (!h->path && !a->user_id)
                return -ENOKEY;
        _cleanup_(freep) char *url = xasprintf("%s%s", a->url, h->path ? h->path : "");
        if (!h->path) {
                free(url);
                url = xasprintf("%s/user/%s", a->url, a->user_id);
        }
        CURL *e = curl_easy_init();
        if (!e)
                return -ENOMEM;
        h->easy = e;
        free(h->buf);
        h->buf = NULL;
        h->len = 0;
        h->too_big = false;
        h->errbuf[0] = '\0';

        h->headers = curl_slist_append(h->headers, "Accept: application/json");
        h->headers = curl_slist_append(h->headers, "Content-Type: application/json");
        h->headers = curl_slist_append(h->headers, "Expect:");
        if (h->auth) {
                _cleanup_(freep) char *hdr = xasprintf("x-access-token: %s", a->token);
                h->headers = curl_slist_append(h->headers, hdr);
                explicit_bzero(hdr, strlen(hdr));
                free(h->token_used);
                h->token_used = xstrdup(a->token);
        }
        if (!h->headers)
                return -ENOMEM;

        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, h);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (a->connect_timeout / 1000));
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (a->total_timeout / 1000));
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) API_REPLY_MAX);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "mysocketd/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        if (streq(h->method, "POST")) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) (h->body ? strlen(h->body) : 2));
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, h->body ? h->body : "{}");
        } else if (!streq(h->method, "GET"))
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, h->method);

        if (curl_multi_add_handle(a->multi, e) != CURLM_OK)
                return -ENOMEM;
        TAILQ_INSERT_TAIL(&a->running, h, link);
        h->where = REQ_RUNNING;
        return 0;
}

/* Starts h now, or queues it until a token is there. Completion is always asynchronous. */
void api_http_submit(struct http_req *h) {
        struct api *a = h->api;
        if (!h->auth || (api_token_usable(a) && (h->path || a->user_id))) {
                int r = api_http_start(h);
                if (r >= 0)
                        return;
                http_detach(h);
        }
        h->seq = ++a->seq;
        TAILQ_INSERT_TAIL(&a->waiting, h, link);
        h->where = REQ_WAITING;
        (void) sd_event_source_set_enabled(a->kick, SD_EVENT_ONESHOT);
}

static const char *json_message(const cJSON *j) {
        static const char *const keys[] = { "message", "error", "detail", "msg" };
        for (size_t i = 0; j && cJSON_IsObject(j) && i < ELEMENTSOF(keys); i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
                if (cJSON_IsString(v) && v->valuestring[0])
                        return v->valuestring;
        }
        return NULL;
}

static int map_status(long status) {
        if (status == 401)
                return -EACCES;
        if (status == 403)
                return -EPERM;
        if (status == 404)
                return -ENOENT;
        if (status >= 500)
                return -EREMOTEIO;
        return -EINVAL;
}

static void http_finished(struct http_req *h, CURLcode res) {
        struct api *a = h->api;
        _cleanup_(freep) char *what = api_http_what(h), *msg = NULL;
        long status = 0;
        char *ctype = NULL;
        cJSON *json = NULL;

        if (res != CURLE_OK) {
                if (h->too_big)
                        msg = xasprintf("API reply to %s is larger than %d KiB", what, API_REPLY_MAX / 1024);
                else
                        msg = xasprintf("API request %s failed: %s", what,
                                        h->errbuf[0] ? h->errbuf : curl_easy_strerror(res));
                api_http_complete(h, h->too_big ? -EFBIG : map_curl_error(res), NULL, msg);
                return;
        }
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h->easy, CURLINFO_CONTENT_TYPE, &ctype);
        _cleanup_(freep) char *ctype_safe = sanitize_text(ctype ? ctype : "no content type", 64);

        if (status == 401 && h->auth && !h->raw_401 && !h->retried) {
                /* The token is expired or revoked: drop it (unless a newer one came in the
                 * meantime), log in again, and retry this request once. */
                if (a->token && streq(a->token, h->token_used)) {
                        free(a->token);
                        a->token = NULL;
                        a->token_exp = 0;
                }
                h->retried = true;
                http_detach(h);
                api_http_submit(h);
                return;
        }

        if (h->len > 0)
                json = cJSON_ParseWithLengthOpts(h->buf, h->len + 1, NULL, true);
        if (status >= 200 && status < 300) {
                if (h->len > 0 && !json) {
                        msg = xasprintf("API returned HTTP %ld with a non-JSON body (%s) for %s",
                                        status, ctype_safe, what);
                        api_http_complete(h, -EBADMSG, NULL, msg);
                } else
                        api_http_complete(h, 0, json, NULL);
                return;
        }
        if (h->len > 0 && !json)
                msg = xasprintf("API returned HTTP %ld with a non-JSON body (%s) for %s", status, ctype_safe, what);
        else if (json_message(json)) {
                _cleanup_(freep) char *m = sanitize_text(json_message(json), 200);
                msg = xasprintf("API returned HTTP %ld for %s: %s", status, what, m);
        } else
                msg = xasprintf("API returned HTTP %ld for %s", status, what);
        cJSON_Delete(json);
        api_http_complete(h, map_status(status), NULL, msg);
}

static void check_done(struct api *a) {
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(a->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                struct http_req *h = NULL;
                CURLcode res = m->data.result;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &h);
                http_finished(h, res);
        }
}


/* ---- life cycle ------------------------------------------------------------------------- */

int api_new(sd_event *e, const struct config *c, struct api **ret) {
        struct api *a = xcalloc(1, sizeof(*a));
        int r = -ENOMEM;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(a);
                return -ENOMEM;
        }
        a->event = sd_event_ref(e);
        TAILQ_INIT(&a->waiting);
        TAILQ_INIT(&a->running);
        LIST_INIT(&a->calls);
        a->url = xstrdup(c->api_url ? c->api_url : "https://api.mysocket.io");
        for (size_t n = strlen(a->url); n > 0 && a->url[n - 1] == '/'; n--)
                a->url[n - 1] = '\0';
        a->email = xstrdup(c->api_email);
        a->password_file = xstrdup(c->api_password_file);
        a->token_file = xstrdup(c->api_token_file);
        a->state_dir = xstrdup(c->state_dir ? c->state_dir : LOCALSTATEDIR "/lib/mysocketd");
        a->connect_timeout = 10 * USEC_PER_SEC;
        a->total_timeout = 30 * USEC_PER_SEC;

        a->multi = curl_multi_init();
        if (!a->multi)
                goto fail;
        curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
        curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
        curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
        curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);

        if ((r = sd_event_add_time(e, &a->curl_timer, CLOCK_MONOTONIC, 0, 0, on_curl_timer, a)) < 0 ||
            (r = sd_event_source_set_enabled(a->curl_timer, SD_EVENT_OFF)) < 0 ||
            (r = sd_event_add_time(e, &a->maint, CLOCK_REALTIME, 0, 0, api_token_on_maint, a)) < 0 ||
            (r = sd_event_source_set_enabled(a->maint, SD_EVENT_OFF)) < 0 ||
            (r = sd_event_add_defer(e, &a->kick, api_token_on_kick, a)) < 0 ||
            (r = sd_event_source_set_enabled(a->kick, SD_EVENT_OFF)) < 0)
                goto fail;
        (void) sd_event_source_set_description(a->curl_timer, "api-curl-timer");
        (void) sd_event_source_set_description(a->maint, "api-token");
        (void) sd_event_source_set_description(a->kick, "api-kick");
        *ret = a;
        return 0;
fail:
        api_free(a);
        return r;
}

void api_free(struct api *a) {
        struct http_req *h;
        if (!a)
                return;
        while (!LIST_EMPTY(&a->calls))
                api_call_free(LIST_FIRST(&a->calls));
        while ((h = TAILQ_FIRST(&a->waiting)))
                api_http_free(h);
        while ((h = TAILQ_FIRST(&a->running)))
                api_http_free(h);
        if (a->multi)
                curl_multi_cleanup(a->multi);
        sd_event_source_disable_unref(a->curl_timer);
        sd_event_source_disable_unref(a->maint);
        sd_event_source_disable_unref(a->kick);
        sd_event_unref(a->event);
        curl_global_cleanup();
        if (a->token) {
                explicit_bzero(a->token, strlen(a->token));
                free(a->token);
        }
        free(a->url);
        free(a->email);
        free(a->password_file);
        free(a->token_file);
        free(a->state_dir);
        free(a->user_id);
        free(a->user_name);
        free(a);
}

void api_set_timeouts(struct api *a, uint64_t connect_usec, uint64_t total_usec) {
        a->connect_timeout = connect_usec;
        a->total_timeout = total_usec;
}

uint64_t api_token_expiry(struct api *a) {
        return a->token ? a->token_exp : 0;
}

const char *api_user_name(struct api *a) {
        return a->user_name;
}

