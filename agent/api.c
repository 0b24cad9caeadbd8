/* The mysocket REST API client: libcurl's multi-socket interface driven by sd-event, the
 * token's life, and the calls the daemon makes. The only file that includes libcurl. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "api.h"
#include "log.h"
#include "util.h"

#define USEC_PER_SEC 1000000ULL
#define TOKEN_MARGIN_USEC (USEC_PER_SEC / 2)   /* a token this close to exp is not sent */
#define CRED_FILE_MAX 8192

struct http_req;
/* json: the parsed reply (NULL for an empty one), freed after done returns. */
typedef void (*http_done_t)(struct http_req *h, int error, cJSON *json, const char *message);

enum req_where { REQ_IDLE, REQ_WAITING, REQ_RUNNING };

struct http_req {
        struct api *api;
        TAILQ_ENTRY(http_req) link;
        enum req_where where;
        uint64_t seq;
        CURL *easy;
        struct curl_slist *headers;
        char *method;
        char *path;                    /* NULL: "/user/{user_id}" of the current token */
        char *body;                    /* may hold a password: wiped on free */
        bool auth;                     /* needs the token (waits for one) */
        bool raw_401;                  /* deliver a 401 as is (refresh), no re-login */
        bool retried;
        char *token_used;
        char *buf;
        size_t len;
        bool too_big;
        char errbuf[CURL_ERROR_SIZE];
        http_done_t done;
        void *userdata;
};
TAILQ_HEAD(req_list, http_req);

enum call_decode { DECODE_NONE, DECODE_USER, DECODE_SOCKET, DECODE_SOCKET_LIST, DECODE_TUNNEL,
                   DECODE_TUNNEL_LIST, DECODE_LOGIN, DECODE_DELETE };

struct api_call {
        struct api *api;
        LIST_ENTRY(api_call) link;
        struct http_req *req;          /* the request in flight, if any */
        api_binding_cb binding_cb;
        api_json_cb json_cb;
        void *userdata;
        enum call_decode decode;

        /* api_ensure_binding */
        char *name, *display_name, *username, *password, *config_socket_id;
        enum socket_type type;
        bool protected_;
        char *socket_id, *tunnel_id;
        bool created, recreated, tunnel_checked;
        struct api_socket sock;
        struct api_tunnel tunnel;
};

struct api {
        sd_event *event;
        CURLM *multi;
        sd_event_source *curl_timer;
        sd_event_source *kick;         /* deferred: serve the requests waiting for a token */
        sd_event_source *maint;        /* CLOCK_REALTIME: refresh or re-login */
        struct req_list waiting, running;
        uint64_t seq;
        LIST_HEAD(, api_call) calls;

        char *url, *email, *password_file, *token_file, *state_dir;
        uint64_t connect_timeout, total_timeout;

        char *token;
        uint64_t token_exp;
        char *user_id, *user_name;
        struct http_req *login_req, *refresh_req;
        struct api_call *user_call;
};

static void arm_maint(struct api *a, uint64_t when);

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

static struct http_req *http_new(struct api *a, const char *method, char *path_owned,
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
static void http_free(struct http_req *h) {
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

static bool token_usable(struct api *a) {
        return a->token && a->token_exp > now_realtime_usec() + TOKEN_MARGIN_USEC;
}

static char *req_what(struct http_req *h) {
        return xasprintf("%s %s", h->method, h->path ? h->path : "/user/{user_id}");
}

/* Calls done exactly once and frees h. */
static void http_complete(struct http_req *h, int error, cJSON *json, const char *message) {
        http_detach(h);
        if (h->api->login_req == h)
                h->api->login_req = NULL;
        if (h->api->refresh_req == h)
                h->api->refresh_req = NULL;
        h->done(h, error, json, message);
        cJSON_Delete(json);
        http_free(h);
}

static int http_start(struct http_req *h) {
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
static void http_submit(struct http_req *h) {
        struct api *a = h->api;
        if (!h->auth || (token_usable(a) && (h->path || a->user_id))) {
                int r = http_start(h);
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
        _cleanup_(freep) char *what = req_what(h), *msg = NULL;
        long status = 0;
        char *ctype = NULL;
        cJSON *json = NULL;

        if (res != CURLE_OK) {
                if (h->too_big)
                        msg = xasprintf("API reply to %s is larger than %d KiB", what, API_REPLY_MAX / 1024);
                else
                        msg = xasprintf("API request %s failed: %s", what,
                                        h->errbuf[0] ? h->errbuf : curl_easy_strerror(res));
                http_complete(h, h->too_big ? -EFBIG : map_curl_error(res), NULL, msg);
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
                http_submit(h);
                return;
        }

        if (h->len > 0)
                json = cJSON_ParseWithLengthOpts(h->buf, h->len + 1, NULL, true);
        if (status >= 200 && status < 300) {
                if (h->len > 0 && !json) {
                        msg = xasprintf("API returned HTTP %ld with a non-JSON body (%s) for %s",
                                        status, ctype_safe, what);
                        http_complete(h, -EBADMSG, NULL, msg);
                } else
                        http_complete(h, 0, json, NULL);
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
        http_complete(h, map_status(status), NULL, msg);
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

/* ---- the token ------------------------------------------------------------------------ */

/* Reads a credentials file that nobody but us may read. */
static int read_secret_file(const char *path, const char *what, char **ret, char **error) {
        char buf[CRED_FILE_MAX + 1];
        struct stat st;
        int r = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                *error = xasprintf("cannot open %s file %s: %s", what, path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = -EINVAL;
                *error = xasprintf("%s file %s is not a regular file", what, path);
                goto out;
        }
        if (st.st_mode & 077) {
                r = -EPERM;
                *error = xasprintf("%s file %s is readable by others (mode %04o); chmod 600 %s",
                                   what, path, (unsigned) (st.st_mode & 07777), path);
                goto out;
        }
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0) {
                r = -errno;
                *error = xasprintf("cannot read %s file %s: %s", what, path, strerror(-r));
                goto out;
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        buf[n] = '\0';
        if (n == 0 || strlen(buf) != (size_t) n) {
                r = -EINVAL;
                *error = xasprintf("%s file %s is empty or not text", what, path);
                goto out;
        }
        *ret = xstrdup(buf);
out:
        explicit_bzero(buf, sizeof(buf));
        close(fd);
        return r;
}

static void schedule_refresh(struct api *a) {
        uint64_t now = now_realtime_usec();
        uint64_t left = a->token_exp > now ? a->token_exp - now : 0;
        /* 80% of the remaining life, or 60 s before exp, whichever is earlier; for short
         * tokens the 60 s shrink to half the life so a 10 s token is refreshed at 5 s. */
        uint64_t margin = left / 2 < 60 * USEC_PER_SEC ? left / 2 : 60 * USEC_PER_SEC;
        uint64_t in = left * 8 / 10 < left - margin ? left * 8 / 10 : left - margin;
        if (in < USEC_PER_SEC)
                in = USEC_PER_SEC;
        arm_maint(a, now + in);
}

/* Takes ownership of token. Returns 0, or -EBADMSG (message in *error) for one we cannot use. */
static int token_set(struct api *a, char *token, bool persist, char **error) {
        struct api_jwt_claims c;
        int r = api_jwt_claims(token, &c);
        if (r < 0 || !c.user_id) {
                *error = xstrdup("the API's token is not a JWT with exp and user_id claims");
                free(token);
                api_jwt_claims_clear(&c);
                return -EBADMSG;
        }
        if (!streq(a->user_id, c.user_id)) {
                free(a->user_name);
                a->user_name = NULL;
                free(a->user_id);
                a->user_id = c.user_id;
                c.user_id = NULL;
        }
        free(a->token);
        a->token = token;
        a->token_exp = c.exp;
        api_jwt_claims_clear(&c);
        if (persist && a->state_dir) {
                _cleanup_(freep) char *path = xasprintf("%s/token", a->state_dir);
                _cleanup_(freep) char *data = xasprintf("%s\n", token);
                r = write_file_atomic(path, data, strlen(data), 0600);
                explicit_bzero(data, strlen(data));
                if (r < 0)
                        log_warning("cannot save the API token in %s: %s; it will not survive a restart",
                                    path, strerror(-r));
        }
        schedule_refresh(a);
        (void) sd_event_source_set_enabled(a->kick, SD_EVENT_ONESHOT);
        return 0;
}

static void token_log(struct api *a, const char *event, const char *what) {
        char when[32];
        log_full(LOG_INFO, &(struct log_fields) { .event = event }, "%s, valid until %s",
                 what, format_rfc3339(a->token_exp, when));
}

/* Fails the requests that were waiting when this started (not the ones queued meanwhile). */
static void fail_waiting(struct api *a, int error, const char *message) {
        uint64_t limit = a->seq;
        struct http_req *h;
        while ((h = TAILQ_FIRST(&a->waiting)) && h->seq <= limit)
                http_complete(h, error, NULL, message);
}

static void login_done(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api *a = h->api;
        _cleanup_(freep) char *err = NULL, *token = NULL;
        if (error >= 0)
                error = api_decode_token(json, &token, &err);
        if (error >= 0) {
                error = token_set(a, token, true, &err);
                token = NULL;
        }
        if (error < 0) {
                _cleanup_(freep) char *m = xasprintf("API login as %s failed: %s", a->email,
                                                     error == -EACCES ? "the API refused the email or password (HTTP 401)" :
                                                     message ? message : err);
                log_full(LOG_WARNING, &(struct log_fields) { .event = "login" }, "%s", m);
                fail_waiting(a, error, m);
                if (!a->token)
                        arm_maint(a, now_realtime_usec() + 30 * USEC_PER_SEC);
                return;
        }
        _cleanup_(freep) char *what = xasprintf("logged in to the API as %s", a->email);
        token_log(a, "login", what);
}

/* Starts getting a token. Returns 1 when one is there at once (token_file), 0 when a login
 * is under way, or -errno with *error set. */
static int login_start(struct api *a, char **error) {
        if (a->login_req)
                return 0;
        if (a->email && a->password_file) {
                char *password = NULL;
                int r = read_secret_file(a->password_file, "password", &password, error);
                if (r < 0)
                        return r;
                cJSON *body = cJSON_CreateObject();
                cJSON_AddStringToObject(body, "email", a->email);
                cJSON_AddStringToObject(body, "password", password);
                explicit_bzero(password, strlen(password));
                free(password);
                struct http_req *h = http_new(a, "POST", xstrdup("/login"), body, false, login_done, NULL);
                a->login_req = h;
                http_submit(h);
                return 0;
        }
        if (a->token_file) {
                char *token = NULL;
                int r = read_secret_file(a->token_file, "token", &token, error);
                if (r < 0)
                        return r;
                struct api_jwt_claims c;
                r = api_jwt_claims(token, &c);
                uint64_t exp = c.exp;
                api_jwt_claims_clear(&c);
                if (r < 0 || exp <= now_realtime_usec() + TOKEN_MARGIN_USEC) {
                        char when[32];
                        *error = r < 0 ? xasprintf("token file %s does not hold a JWT", a->token_file)
                                       : xasprintf("the token in %s expired at %s; put a fresh one there",
                                                   a->token_file, format_rfc3339(exp, when));
                        free(token);
                        return r < 0 ? -EINVAL : -EKEYEXPIRED;
                }
                r = token_set(a, token, false, error);
                if (r < 0)
                        return r;
                _cleanup_(freep) char *what = xasprintf("using the API token from %s", a->token_file);
                token_log(a, "login", what);
                return 1;
        }
        *error = xstrdup("not logged in to the API: set email + password_file or token_file in [api], "
                         "or run mysocketctl login");
        return -ENOKEY;
}

static int on_kick(sd_event_source *s, void *userdata) {
        struct api *a = userdata;
        if (TAILQ_EMPTY(&a->waiting))
                return 0;
        if (!token_usable(a)) {
                _cleanup_(freep) char *err = NULL;
                int r = login_start(a, &err);
                if (r < 0) {
                        fail_waiting(a, r, err);
                        return 0;
                }
                if (r == 0)
                        return 0;     /* login_done kicks again */
        }
        uint64_t limit = a->seq;
        struct http_req *h;
        while ((h = TAILQ_FIRST(&a->waiting)) && h->seq <= limit) {
                TAILQ_REMOVE(&a->waiting, h, link);
                h->where = REQ_IDLE;
                int r = http_start(h);
                if (r < 0)
                        http_complete(h, r, NULL, "cannot start an API request");
        }
        return 0;
}

static void refresh_done(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api *a = h->api;
        _cleanup_(freep) char *err = NULL, *token = NULL;
        if (error >= 0)
                error = api_decode_token(json, &token, &err);
        if (error >= 0) {
                error = token_set(a, token, true, &err);
                token = NULL;
        }
        if (error >= 0) {
                token_log(a, "token-refresh", "token refreshed");
                return;
        }
        uint64_t now = now_realtime_usec();
        if (error == -EACCES || !token_usable(a)) {
                log_full(LOG_NOTICE, &(struct log_fields) { .event = "token-refresh" },
                         "the API refused to refresh the token; logging in again");
                free(a->token);
                a->token = NULL;
                a->token_exp = 0;
                arm_maint(a, now);
                return;
        }
        uint64_t retry = (a->token_exp - now) / 4;
        retry = retry < USEC_PER_SEC ? USEC_PER_SEC : retry > 30 * USEC_PER_SEC ? 30 * USEC_PER_SEC : retry;
        log_full(LOG_WARNING, &(struct log_fields) { .event = "token-refresh" },
                 "token refresh failed: %s; retrying in %llu s", message ? message : err,
                 (unsigned long long) (retry / USEC_PER_SEC));
        arm_maint(a, now + retry);
}

static int on_maint(sd_event_source *s, uint64_t usec, void *userdata) {
        struct api *a = userdata;
        if (a->login_req || a->refresh_req)
                return 0;
        /* Refreshing needs only a token that has not expired yet, however close. */
        if (a->token && a->token_exp > now_realtime_usec()) {
                struct http_req *h = http_new(a, "POST", xstrdup("/login/refresh"), NULL, true, refresh_done, NULL);
                h->raw_401 = true;
                a->refresh_req = h;
                int r = http_start(h);
                if (r < 0) {
                        http_free(h);
                        arm_maint(a, now_realtime_usec() + 30 * USEC_PER_SEC);
                }
                return 0;
        }
        if (!(a->email && a->password_file) && !a->token_file)
                return 0;             /* nothing to log in with: wait for `mysocketctl login` */
        _cleanup_(freep) char *err = NULL;
        int r = login_start(a, &err);
        if (r < 0) {
                log_full(LOG_WARNING, &(struct log_fields) { .event = "login" },
                         "cannot log in to the API: %s; retrying in 60 s", err);
                arm_maint(a, now_realtime_usec() + 60 * USEC_PER_SEC);
        }
        return 0;
}

static void arm_maint(struct api *a, uint64_t when) {
        (void) sd_event_source_set_time(a->maint, when);
        (void) sd_event_source_set_enabled(a->maint, SD_EVENT_ONESHOT);
}

/* ---- calls ---------------------------------------------------------------------------- */

static struct api_call *call_new(struct api *a, void *userdata) {
        struct api_call *c = xcalloc(1, sizeof(*c));
        c->api = a;
        c->userdata = userdata;
        LIST_INSERT_HEAD(&a->calls, c, link);
        return c;
}

static void call_free(struct api_call *c) {
        if (!c)
                return;
        LIST_REMOVE(c, link);
        if (c->api->user_call == c)
                c->api->user_call = NULL;
        http_free(c->req);
        if (c->password) {
                explicit_bzero(c->password, strlen(c->password));
                free(c->password);
        }
        free(c->name);
        free(c->display_name);
        free(c->username);
        free(c->config_socket_id);
        free(c->socket_id);
        free(c->tunnel_id);
        api_socket_clear(&c->sock);
        api_tunnel_clear(&c->tunnel);
        free(c);
}

void api_call_cancel(struct api_call *c) {
        call_free(c);
}

/* Every done handler of a call starts with this: the request is http_complete's to free. */
static struct api_call *call_of(struct http_req *h) {
        struct api_call *c = h->userdata;
        c->req = NULL;
        return c;
}

static void call_request(struct api_call *c, const char *method, char *path, cJSON *body,
                         bool auth, http_done_t done) {
        c->req = http_new(c->api, method, path, body, auth, done, c);
        http_submit(c->req);
}

static cJSON *socket_body(const char *name, enum socket_type type, bool protected_,
                          const char *username, const char *password) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "name", name);
        cJSON_AddStringToObject(b, "socket_type", socket_type_to_string(type));
        cJSON_AddBoolToObject(b, "protected_socket", protected_);
        cJSON_AddStringToObject(b, "protected_username", protected_ && username ? username : "");
        cJSON_AddStringToObject(b, "protected_password", protected_ && password ? password : "");
        cJSON_AddBoolToObject(b, "cloud_authentication_enabled", false);
        /* sic: the API's own spelling */
        cJSON_AddArrayToObject(b, "cloud_authentication_email_allowed_addressses");
        cJSON_AddArrayToObject(b, "cloud_authentication_email_allowed_domains");
        return b;
}

static char *default_display_name(const char *name) {
        char host[256] = "localhost";
        (void) gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        return xasprintf("%s on %s", name, host);
}

/* ---- api_ensure_binding: socket, then tunnel, then the SSH user ------------------------ */

static void binding_fail(struct api_call *c, int error, const char *message) {
        c->binding_cb(error, NULL, message, c->userdata);
        call_free(c);
}

static void binding_fail_decode(struct api_call *c, struct http_req *h, char *err) {
        _cleanup_(freep) char *what = req_what(h);
        _cleanup_(freep) char *msg = xasprintf("API reply to %s: %s", what, err);
        free(err);
        binding_fail(c, -EBADMSG, msg);
}

static void binding_warn(struct api_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void binding_warn(struct api_call *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_fullv(LOG_WARNING, &(struct log_fields) { .binding = c->name, .event = "resolve",
                                                     .socket_id = c->socket_id, .tunnel_id = c->tunnel_id },
                  fmt, ap);
        va_end(ap);
}

static bool binding_save(struct api_call *c) {
        int r = api_ids_save(c->api->state_dir, c->name, c->socket_id, c->tunnel_id, c->created);
        if (r >= 0)
                return true;
        _cleanup_(freep) char *msg = xasprintf("cannot record the API ids in %s/ids: %s",
                                               c->api->state_dir, strerror(-r));
        binding_fail(c, r, msg);
        return false;
}

static void binding_finish(struct api_call *c) {
        struct api_binding_result r = {
                .socket_id = c->socket_id,
                .tunnel_id = c->tunnel_id,
                .relay_port = c->tunnel.local_port,
                .dnsname = c->sock.dnsname,
                .socket_tcp_port = c->sock.tcp_port,
                .user_name = c->api->user_name,
                .created = c->created,
                .recreated = c->recreated,
        };
        c->binding_cb(0, &r, NULL, c->userdata);
        call_free(c);
}

static void binding_on_user(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api_call *c = call_of(h);
        struct api_user u;
        char *err = NULL;
        if (error < 0)
                return binding_fail(c, error, message);
        if (api_decode_user(json, &u, &err) < 0)
                return binding_fail_decode(c, h, err);
        free(c->api->user_name);
        c->api->user_name = xstrdup(u.user_name);
        api_user_clear(&u);
        binding_finish(c);
}

static void binding_user(struct api_call *c) {
        if (c->api->user_name)
                return binding_finish(c);
        call_request(c, "GET", NULL, NULL, true, binding_on_user);
}

static void binding_on_tunnel(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api_call *c = call_of(h);
        bool created = streq(h->method, "POST");
        char *err = NULL;
        if (error == -ENOENT && !created) {
                binding_warn(c, "tunnel %s is gone at the API; creating a new one", c->tunnel_id);
                free(c->tunnel_id);
                c->tunnel_id = NULL;
                c->recreated = true;
                char *path = xasprintf("/socket/%s/tunnel", c->socket_id);
                return call_request(c, "POST", path, NULL, true, binding_on_tunnel);
        }
        if (error < 0)
                return binding_fail(c, error, message);
        api_tunnel_clear(&c->tunnel);
        if (api_decode_tunnel(json, &c->tunnel, &err) < 0)
                return binding_fail_decode(c, h, err);
        if (created) {
                free(c->tunnel_id);
                c->tunnel_id = xstrdup(c->tunnel.tunnel_id);
                if (!binding_save(c))
                        return;
        }
        binding_user(c);
}

static void binding_tunnel(struct api_call *c) {
        const struct api_socket *s = &c->sock;
        if (c->tunnel_id) {
                for (size_t i = 0; i < s->n_tunnels; i++)
                        if (streq(s->tunnels[i].tunnel_id, c->tunnel_id)) {
                                c->tunnel.tunnel_id = xstrdup(s->tunnels[i].tunnel_id);
                                c->tunnel.local_port = s->tunnels[i].local_port;
                                c->tunnel.tunnel_server = xstrdup(s->tunnels[i].tunnel_server);
                                return binding_user(c);
                        }
                /* Not embedded in the socket: ask for it, a 404 there means it is gone. */
                char *path = xasprintf("/socket/%s/tunnel/%s", c->socket_id, c->tunnel_id);
                return call_request(c, "GET", path, NULL, true, binding_on_tunnel);
        }
        if (s->n_tunnels > 0) {
                /* An attached socket, or one whose tunnel we made but never recorded. */
                c->tunnel.tunnel_id = xstrdup(s->tunnels[0].tunnel_id);
                c->tunnel.local_port = s->tunnels[0].local_port;
                c->tunnel.tunnel_server = xstrdup(s->tunnels[0].tunnel_server);
                c->tunnel_id = xstrdup(c->tunnel.tunnel_id);
                if (binding_save(c))
                        binding_user(c);
                return;
        }
        char *path = xasprintf("/socket/%s/tunnel", c->socket_id);
        call_request(c, "POST", path, NULL, true, binding_on_tunnel);
}

static void binding_on_socket(struct http_req *h, int error, cJSON *json, const char *message);

static void binding_create_socket(struct api_call *c) {
        free(c->socket_id);
        free(c->tunnel_id);
        c->socket_id = c->tunnel_id = NULL;
        api_socket_clear(&c->sock);
        cJSON *body = socket_body(c->display_name, c->type, c->protected_, c->username, c->password);
        call_request(c, "POST", xstrdup("/socket"), body, true, binding_on_socket);
}

static void binding_on_socket(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api_call *c = call_of(h);
        bool created = streq(h->method, "POST");
        char *err = NULL;
        if (error == -ENOENT && !created) {
                if (c->config_socket_id) {
                        _cleanup_(freep) char *m = xasprintf("socket %s (socket_id in the config) does not "
                                                             "exist at the API", c->config_socket_id);
                        return binding_fail(c, error, m);
                }
                binding_warn(c, "socket %s is gone at the API; creating a new one (the public name changes)",
                             c->socket_id);
                c->recreated = true;
                return binding_create_socket(c);
        }
        if (error < 0)
                return binding_fail(c, error, message);
        api_socket_clear(&c->sock);
        if (api_decode_socket(json, &c->sock, &err) < 0)
                return binding_fail_decode(c, h, err);
        if (created) {
                c->created = true;
                free(c->socket_id);
                c->socket_id = xstrdup(c->sock.socket_id);
                if (!binding_save(c))
                        return;
        } else if (!c->config_socket_id &&
                   (!streq(c->sock.socket_type, socket_type_to_string(c->type)) ||
                    c->sock.protected_ != c->protected_)) {
                /* The API has no update call: a changed type or protection needs a new socket. */
                binding_warn(c, "socket %s no longer matches the binding's type or protection; "
                             "creating a new one (the public name changes)", c->socket_id);
                c->recreated = true;
                return binding_create_socket(c);
        }
        binding_tunnel(c);
}

int api_ensure_binding(struct api *a, const struct api_binding_request *req,
                       api_binding_cb cb, void *userdata, struct api_call **ret) {
        if (!req || !binding_name_valid(req->name) || !cb || (unsigned) req->type >= _SOCKET_TYPE_MAX ||
            (req->config_socket_id && !req->config_socket_id[0]))
                return -EINVAL;
        struct api_call *c = call_new(a, userdata);
        c->binding_cb = cb;
        c->name = xstrdup(req->name);
        c->display_name = req->display_name ? xstrdup(req->display_name) : default_display_name(req->name);
        c->type = req->type;
        c->protected_ = req->protected_;
        c->username = xstrdup(req->username);
        c->password = xstrdup(req->password);
        c->config_socket_id = xstrdup(req->config_socket_id);

        char *sid = NULL, *tid = NULL;
        bool created = false;
        if (api_ids_load(a->state_dir, c->name, &sid, &tid, &created) < 0)
                sid = tid = NULL;
        if (c->config_socket_id && !streq(sid, c->config_socket_id)) {
                free(sid);
                free(tid);
                sid = xstrdup(c->config_socket_id);
                tid = NULL;
                created = false;
        }
        c->socket_id = sid;
        c->tunnel_id = tid;
        c->created = created;
        if (c->socket_id) {
                char *path = xasprintf("/socket/%s", c->socket_id);
                call_request(c, "GET", path, NULL, true, binding_on_socket);
        } else
                binding_create_socket(c);
        *ret = c;
        return 0;
}

/* ---- the passthrough commands ----------------------------------------------------------- */

static void json_on_done(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api_call *c = call_of(h);
        struct api *a = c->api;
        _cleanup_(freep) char *err = NULL, *msg = NULL, *token = NULL;
        struct api_user u = {};

        if (error == -ENOENT && c->decode == DECODE_DELETE)
                error = 0;
        if (error >= 0)
                switch (c->decode) {
                case DECODE_USER:
                        error = api_decode_user(json, &u, &err);
                        if (error >= 0) {
                                free(a->user_name);
                                a->user_name = xstrdup(u.user_name);
                        }
                        api_user_clear(&u);
                        break;
                case DECODE_SOCKET:
                        error = api_decode_socket(json, &c->sock, &err);
                        break;
                case DECODE_SOCKET_LIST:
                        error = api_decode_socket_list(json, &err);
                        break;
                case DECODE_TUNNEL:
                        error = api_decode_tunnel(json, &c->tunnel, &err);
                        break;
                case DECODE_TUNNEL_LIST:
                        error = api_decode_tunnel_list(json, &err);
                        break;
                case DECODE_LOGIN:
                        error = api_decode_token(json, &token, &err);
                        if (error >= 0) {
                                error = token_set(a, token, true, &err);
                                token = NULL;
                        }
                        if (error >= 0) {
                                _cleanup_(freep) char *what = xasprintf("logged in to the API as %s", c->name);
                                token_log(a, "login", what);
                        }
                        break;
                case DECODE_NONE:
                case DECODE_DELETE:
                        break;
                }
        if (err) {
                _cleanup_(freep) char *what = req_what(h);
                msg = xasprintf("API reply to %s: %s", what, err);
                message = msg;
        }
        bool give_json = error >= 0 && c->decode != DECODE_DELETE && c->decode != DECODE_LOGIN;
        if (c->json_cb)
                c->json_cb(error, give_json ? json : NULL, error < 0 ? message : NULL, c->userdata);
        call_free(c);
}

static int json_call(struct api *a, const char *method, char *path, cJSON *body, bool auth,
                     enum call_decode decode, api_json_cb cb, void *userdata, struct api_call **ret) {
        struct api_call *c = call_new(a, userdata);
        c->json_cb = cb;
        c->decode = decode;
        call_request(c, method, path, body, auth, json_on_done);
        if (ret)
                *ret = c;
        return 0;
}

static bool arg_id_valid(const char *id) {
        return id && id[0] && strlen(id) <= API_ID_MAX &&
               strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(id);
}

int api_login(struct api *a, const char *email, const char *password,
              api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!email || !email[0] || !password || !password[0])
                return -EINVAL;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "email", email);
        cJSON_AddStringToObject(body, "password", password);
        int r = json_call(a, "POST", xstrdup("/login"), body, false, DECODE_LOGIN, cb, userdata, ret);
        struct api_call *c = LIST_FIRST(&a->calls);
        c->name = xstrdup(email);      /* for the log line */
        return r;
}

int api_account_show(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret) {
        return json_call(a, "GET", NULL, NULL, true, DECODE_USER, cb, userdata, ret);
}

int api_socket_list(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret) {
        return json_call(a, "GET", xstrdup("/connect"), NULL, true, DECODE_SOCKET_LIST, cb, userdata, ret);
}

int api_socket_create(struct api *a, const struct api_binding_request *spec,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!spec || (!spec->display_name && !spec->name) || (unsigned) spec->type >= _SOCKET_TYPE_MAX ||
            (spec->protected_ && (!spec->username || !spec->password)))
                return -EINVAL;
        cJSON *body = socket_body(spec->display_name ? spec->display_name : spec->name, spec->type,
                                  spec->protected_, spec->username, spec->password);
        return json_call(a, "POST", xstrdup("/socket"), body, true, DECODE_SOCKET, cb, userdata, ret);
}

int api_socket_delete(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!arg_id_valid(socket_id))
                return -EINVAL;
        return json_call(a, "DELETE", xasprintf("/socket/%s", socket_id), NULL, true, DECODE_DELETE,
                         cb, userdata, ret);
}

int api_tunnel_list(struct api *a, const char *socket_id,
                    api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!arg_id_valid(socket_id))
                return -EINVAL;
        return json_call(a, "GET", xasprintf("/socket/%s/tunnel", socket_id), NULL, true,
                         DECODE_TUNNEL_LIST, cb, userdata, ret);
}

int api_tunnel_create(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!arg_id_valid(socket_id))
                return -EINVAL;
        return json_call(a, "POST", xasprintf("/socket/%s/tunnel", socket_id), NULL, true,
                         DECODE_TUNNEL, cb, userdata, ret);
}

int api_tunnel_delete(struct api *a, const char *socket_id, const char *tunnel_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!arg_id_valid(socket_id) || !arg_id_valid(tunnel_id))
                return -EINVAL;
        return json_call(a, "DELETE", xasprintf("/socket/%s/tunnel/%s", socket_id, tunnel_id), NULL,
                         true, DECODE_DELETE, cb, userdata, ret);
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
            (r = sd_event_add_time(e, &a->maint, CLOCK_REALTIME, 0, 0, on_maint, a)) < 0 ||
            (r = sd_event_source_set_enabled(a->maint, SD_EVENT_OFF)) < 0 ||
            (r = sd_event_add_defer(e, &a->kick, on_kick, a)) < 0 ||
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
                call_free(LIST_FIRST(&a->calls));
        while ((h = TAILQ_FIRST(&a->waiting)))
                http_free(h);
        while ((h = TAILQ_FIRST(&a->running)))
                http_free(h);
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

int api_start(struct api *a) {
        _cleanup_(freep) char *path = xasprintf("%s/token", a->state_dir), *err = NULL;
        char *token = NULL;
        struct api_jwt_claims c = {};

        if (read_secret_file(path, "saved token", &token, &err) >= 0 && api_jwt_claims(token, &c) >= 0 &&
            c.exp > now_realtime_usec() + TOKEN_MARGIN_USEC && (!a->email || !c.email || streq(a->email, c.email))) {
                if (token_set(a, token, false, &err) >= 0)
                        token_log(a, "login", "reusing the saved API token");
        } else
                free(token);
        api_jwt_claims_clear(&c);
        free(err);
        err = NULL;

        if (!a->token) {
                int r = login_start(a, &err);
                if (r < 0 && r != -ENOKEY) {
                        log_full(LOG_WARNING, &(struct log_fields) { .event = "login" },
                                 "cannot log in to the API: %s; retrying in 60 s", err);
                        arm_maint(a, now_realtime_usec() + 60 * USEC_PER_SEC);
                } else if (r == -ENOKEY)
                        log_notice("%s", err);
        }
        /* Learn the SSH user early, so `status` can show it before any binding needs it. */
        if (a->token || a->login_req)
                (void) json_call(a, "GET", NULL, NULL, true, DECODE_USER, NULL, NULL, &a->user_call);
        return 0;
}
