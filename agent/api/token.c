/* The API token's life: login, STATE_DIR/token, refresh on the token's own lifetime,
 * re-login after a 401, backoff after failures, and the queue of requests waiting. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "json.h"
#include "list.h"
#include "log.h"
#include "scrub.h"
#include "state.h"
#include "token.h"
#include "util.h"

#define TOKEN_MARGIN_USEC (USEC_PER_SEC / 2)   /* a token this close to its end is not sent */
#define SKEW_TOLERANCE_USEC (60 * USEC_PER_SEC) /* iat this far from our clock: say so */

enum req_where { REQ_IDLE, REQ_WAITING, REQ_RUNNING };

struct token_req {
        struct token *token;
        struct token_req *prev, *next; /* in waiting or running, as `where` says */
        enum req_where where;
        uint64_t seq;
        struct http_req *http;
        char *method;
        char *path;                    /* NULL: "/user/{user_id}" of the current token */
        char *body;                    /* may hold a password: wiped on free */
        bool auth;                     /* needs the token (waits for one) */
        bool raw_401;                  /* deliver a 401 as is (refresh), no re-login */
        bool retried;
        char *token_used;
        token_done_cb done;
        void *userdata;
};

struct token {
        sd_event *event;
        struct http *http;
        sd_event_source *kick;         /* deferred: serve the requests waiting for a token */
        sd_event_source *maint;        /* CLOCK_REALTIME: refresh, or log in again */
        struct token_req *waiting, *waiting_tail, *running, *running_tail;
        uint64_t seq;

        char *url, *email, *password_file, *token_file, *state_dir;
        char *password_scrubbed;       /* the password as given to scrub, while in use */
        unsigned backoff_initial, backoff_max;

        char *token;
        uint64_t exp;                  /* when it expires by our clock (realtime usec) */
        char *user_id;
        struct token_req *login_req, *refresh_req;

        unsigned failures;             /* consecutive failed logins/refreshes */
        uint64_t not_before;           /* realtime usec: no new login before this */
        char *last_error;              /* why the last one failed */
        int last_errno;
};

/* Arming a source fails only when the loop is out of memory: the work then waits for the
 * next event that arms it again, and the warning says so. */
static void arm_maint(struct token *t, uint64_t when) {
        int r;
        if ((r = sd_event_source_set_time(t->maint, when)) < 0 ||
            (r = sd_event_source_set_enabled(t->maint, SD_EVENT_ONESHOT)) < 0)
                log_warning("API token: cannot arm the refresh timer: %s", strerror(-r));
}

static void kick(struct token *t) {
        int r = sd_event_source_set_enabled(t->kick, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning("API token: cannot schedule the waiting calls: %s", strerror(-r));
}

/* Exponential from [backoff] initial to max with full jitter, as the bindings do. */
static uint64_t backoff_delay(const struct token *t, unsigned failures) {
        return backoff_usec((uint64_t) t->backoff_initial * USEC_PER_SEC,
                            (uint64_t) t->backoff_max * USEC_PER_SEC, failures);
}

static bool usable(struct token *t) {
        return t->token && t->exp > now_realtime_usec() + TOKEN_MARGIN_USEC;
}

static void drop_token(struct token *t) {
        scrub_remove(t->token);
        scrub_free(t->token);
        t->token = NULL;
        t->exp = 0;
}

/* ---- requests ------------------------------------------------------------------------- */

static char *req_what(const struct token_req *r) {
        return xasprintf("%s %s", r->method, r->path ? r->path : "/user/{user_id}");
}

static void req_detach(struct token_req *r) {
        struct token *t = r->token;
        if (r->where == REQ_WAITING)
                LIST_REMOVE(t->waiting, t->waiting_tail, r);
        else if (r->where == REQ_RUNNING)
                LIST_REMOVE(t->running, t->running_tail, r);
        r->where = REQ_IDLE;
        http_cancel(r->http);
        r->http = NULL;
        if (t->login_req == r)
                t->login_req = NULL;
        if (t->refresh_req == r)
                t->refresh_req = NULL;
}

static void req_free(struct token_req *r) {
        if (!r)
                return;
        req_detach(r);
        scrub_free(r->body);
        free(r->method);
        free(r->path);
        scrub_free(r->token_used);
        free(r);
}

void token_req_cancel(struct token_req *r) {
        req_free(r);
}

/* Calls done exactly once and frees r. */
static void req_complete(struct token_req *r, int error, const cJSON *json, const char *message) {
        req_detach(r);
        r->done(error, json, message, r->userdata);
        req_free(r);
}

static void req_submit(struct token_req *r);

static void on_http_done(const struct http_reply *reply, void *userdata) {
        struct token_req *r = userdata;
        struct token *t = r->token;
        _cleanup_(freep) char *what = req_what(r), *msg = NULL;
        cJSON *json = NULL;

        r->http = NULL;                /* the transport frees it when this returns */
        if (reply->error < 0) {
                if (reply->error == -EFBIG)
                        msg = xasprintf("API reply to %s is larger than %d KiB", what, HTTP_REPLY_MAX / 1024);
                else
                        msg = xasprintf("API request %s failed: %s", what, reply->message);
                return req_complete(r, reply->error, NULL, msg);
        }
        if (reply->status == 401 && r->auth && !r->raw_401 && !r->retried) {
                /* The token is expired or revoked: drop it (unless a newer one came in the
                 * meantime), log in again, and retry this request once. */
                if (t->token && streq(t->token, r->token_used))
                        drop_token(t);
                r->retried = true;
                req_detach(r);
                return req_submit(r);
        }
        int error = apijson_reply(what, reply->status, reply->body, reply->len, reply->content_type,
                                  r->body, &json, &msg);
        req_complete(r, error, json, msg);
        cJSON_Delete(json);
}

static int req_start(struct token_req *r) {
        struct token *t = r->token;
        if (!r->path && !t->user_id)
                return -ENOKEY;
        _cleanup_(freep) char *url = r->path ? xasprintf("%s%s", t->url, r->path)
                                             : xasprintf("%s/user/%s", t->url, t->user_id);
        char *hdr = NULL;
        if (r->auth) {
                hdr = xasprintf("x-access-token: %s", t->token);
                scrub_free(r->token_used);
                r->token_used = xstrdup(t->token);
        }
        const char *headers[] = { hdr, NULL };
        int e = http_start(t->http, r->method, url, r->body, headers, on_http_done, r, &r->http);
        scrub_free(hdr);
        if (e < 0)
                return e;
        LIST_APPEND(t->running, t->running_tail, r);
        r->where = REQ_RUNNING;
        return 0;
}

/* Starts r now, or queues it until a token is there. Completion is always asynchronous. */
static void req_submit(struct token_req *r) {
        struct token *t = r->token;
        if ((!r->auth || (usable(t) && (r->path || t->user_id))) && req_start(r) >= 0)
                return;
        r->seq = ++t->seq;
        LIST_APPEND(t->waiting, t->waiting_tail, r);
        r->where = REQ_WAITING;
        kick(t);
}

static struct token_req *req_new(struct token *t, const char *method, char *path, cJSON *body,
                                 bool auth, token_done_cb done, void *userdata) {
        struct token_req *r = xcalloc(1, sizeof(*r));
        r->token = t;
        r->method = xstrdup(method);
        r->path = path;
        if (body) {
                r->body = cJSON_PrintUnformatted(body);
                if (!r->body)
                        abort();
                cJSON_Delete(body);
        }
        r->auth = auth;
        r->done = done;
        r->userdata = userdata;
        return r;
}

int token_request(struct token *t, const char *method, char *path, cJSON *body, bool auth,
                  token_done_cb done, void *userdata, struct token_req **ret) {
        struct token_req *r = req_new(t, method, path, body, auth, done, userdata);
        req_submit(r);
        if (ret)
                *ret = r;
        return 0;
}

/* Fails the requests that were waiting when this started (not the ones queued meanwhile). */
static void fail_waiting(struct token *t, int error, const char *message) {
        uint64_t limit = t->seq;
        struct token_req *r;
        while ((r = t->waiting) && r->seq <= limit)
                req_complete(r, error, NULL, message);
}

/* ---- the token ------------------------------------------------------------------------ */

/* When a token with these claims ends by our clock (apijson_jwt_end), saying why not. */
static int token_end(const struct api_jwt_claims *c, const char *source, uint64_t now, uint64_t *ret,
                     char **error) {
        int64_t skew;
        if (apijson_jwt_end(c, now, TOKEN_MARGIN_USEC, SKEW_TOLERANCE_USEC, ret, &skew) < 0) {
                _cleanup_(freep) char *d = c->exp <= now ? format_timespan(now - c->exp) : NULL;
                *error = d ? xasprintf("%s that expired %s ago: is the clock right?", source, d)
                           : xasprintf("%s that is valid for less than a second", source);
                return -EKEYEXPIRED;
        }
        if (skew != 0) {
                _cleanup_(freep) char *d = format_timespan(skew > 0 ? (uint64_t) skew : (uint64_t) -skew);
                log_full(LOG_WARNING, &(struct log_fields) { .event = "login" },
                         "the API issued its token %s %s our clock: is the clock right? "
                         "Planning on the token's own lifetime", d, skew > 0 ? "after" : "before");
        }
        return 0;
}

static void schedule_refresh(struct token *t) {
        uint64_t now = now_realtime_usec();
        uint64_t left = t->exp > now ? t->exp - now : 0;
        /* 80% of the remaining life, or 60 s before exp, whichever is earlier; for short
         * tokens the 60 s shrink to half the life so a 10 s token is refreshed at 5 s. */
        uint64_t margin = left / 2 < 60 * USEC_PER_SEC ? left / 2 : 60 * USEC_PER_SEC;
        uint64_t in = left * 8 / 10 < left - margin ? left * 8 / 10 : left - margin;
        if (in < USEC_PER_SEC)
                in = USEC_PER_SEC;
        arm_maint(t, now + in);
}

/* Takes ownership of token (source: "the API issued a token", for messages). Returns 0,
 * or -EBADMSG / -EKEYEXPIRED (*error) for one we cannot use. */
static int token_set(struct token *t, char *token, const char *source, bool persist, char **error) {
        struct api_jwt_claims c;
        uint64_t end = 0;
        int r = apijson_jwt_claims(token, &c);
        if (r < 0 || !c.user_id) {
                *error = xasprintf("%s that is not a JWT with exp and user_id claims", source);
                r = -EBADMSG;
        } else
                r = token_end(&c, source, now_realtime_usec(), &end, error);
        if (r < 0) {
                scrub_free(token);
                apijson_jwt_claims_clear(&c);
                return r;
        }
        free(t->user_id);
        t->user_id = c.user_id;
        c.user_id = NULL;
        apijson_jwt_claims_clear(&c);
        drop_token(t);
        t->token = token;
        t->exp = end;
        scrub_add(token);
        if (persist && t->state_dir) {
                _cleanup_(freep) char *path = state_token_path(t->state_dir);
                char *data = xasprintf("%s\n", token);
                r = write_file_atomic(path, data, strlen(data), 0600);
                scrub_free(data);
                if (r < 0)
                        log_warning("cannot save the API token in %s: %s; it will not survive a restart",
                                    path, strerror(-r));
        }
        t->failures = 0;
        t->not_before = 0;
        free(t->last_error);
        t->last_error = NULL;
        schedule_refresh(t);
        kick(t);
        return 0;
}

static void token_log(struct token *t, const char *event, const char *what) {
        char when[32];
        log_full(LOG_INFO, &(struct log_fields) { .event = event }, "%s, valid until %s",
                 what, format_rfc3339(t->exp, when));
}

/* A login or refresh failed: the next one waits for the backoff, and until then calls
 * that need a token fail at once with this error (the API is not asked again). A failure
 * of our own (an unreadable password file) only delays the next attempt of our own.
 * Returns the delay. */
static uint64_t note_failure(struct token *t, int error, const char *message, bool gate) {
        uint64_t delay = backoff_delay(t, t->failures++);
        t->not_before = now_realtime_usec() + delay;
        free(t->last_error);
        t->last_error = gate ? xstrdup(message) : NULL;
        t->last_errno = error;
        return delay;
}

/* A login that could not even start (a failure of our own): the next one after the backoff. */
static void login_later(struct token *t, int error, const char *err) {
        _cleanup_(freep) char *d = format_timespan(note_failure(t, error, err, false));
        log_full(LOG_WARNING, &(struct log_fields) { .event = "login" },
                 "cannot log in to the API: %s; retrying in %s", err, d);
        arm_maint(t, t->not_before);
}

static int take_reply(struct token *t, int error, const cJSON *json, char **err) {
        char *token = NULL;
        if (error >= 0)
                error = apijson_token(json, &token, err);
        if (error >= 0)
                error = token_set(t, token, "the API issued a token", true, err);   /* takes token */
        return error;
}

static void login_done(int error, const cJSON *json, const char *message, void *userdata) {
        struct token *t = userdata;
        _cleanup_(freep) char *err = NULL;
        error = take_reply(t, error, json, &err);
        if (error >= 0) {
                _cleanup_(freep) char *what = xasprintf("logged in to the API as %s", t->email);
                return token_log(t, "login", what);
        }
        _cleanup_(freep) char *m = xasprintf("API login as %s failed: %s", t->email,
                                             error == -EACCES ? "the API refused the email or password (HTTP 401)" :
                                             err ? err : message);
        uint64_t delay = note_failure(t, error, m, true);
        _cleanup_(freep) char *d = format_timespan(delay);
        log_full(LOG_WARNING, &(struct log_fields) { .event = "login" }, "%s; next login in %s", m, d);
        fail_waiting(t, error, m);
        if (!t->token)
                arm_maint(t, t->not_before);
}

/* Starts getting a token. Returns 1 when one is there at once (token_file), 0 when a login
 * is under way, or -errno with *error set. */
static int login_start(struct token *t, char **error) {
        if (t->login_req)
                return 0;
        if (t->not_before > now_realtime_usec() && t->last_error) {
                _cleanup_(freep) char *d = format_timespan(t->not_before - now_realtime_usec());
                *error = xasprintf("%s (next login in %s)", t->last_error, d);
                return t->last_errno;
        }
        if (t->email && t->password_file) {
                char *password = NULL;
                int r = secret_file_read(t->password_file, "password", SECRET_FILE_MAX, &password, error);
                if (r < 0)
                        return r;
                if (!streq(password, t->password_scrubbed)) {
                        scrub_remove(t->password_scrubbed);
                        scrub_free(t->password_scrubbed);
                        t->password_scrubbed = xstrdup(password);
                        scrub_add(password);
                }
                cJSON *body = cJSON_CreateObject();
                cJSON_AddStringToObject(body, "email", t->email);
                cJSON_AddStringToObject(body, "password", password);
                scrub_free(password);
                t->login_req = req_new(t, "POST", xstrdup("/login"), body, false, login_done, t);
                req_submit(t->login_req);
                return 0;
        }
        if (t->token_file) {
                char *token = NULL;
                int r = secret_file_read(t->token_file, "token", SECRET_FILE_MAX, &token, error);
                if (r < 0)
                        return r;
                _cleanup_(freep) char *source = xasprintf("%s holds a token", t->token_file);
                r = token_set(t, token, source, false, error);
                if (r < 0)
                        return r;
                _cleanup_(freep) char *what = xasprintf("using the API token from %s", t->token_file);
                token_log(t, "login", what);
                return 1;
        }
        *error = xstrdup("not logged in to the API: set email + password_file or token_file in [api], "
                         "or run mysocketctl login");
        return -ENOKEY;
}

static int on_kick(sd_event_source *s, void *userdata) {
        struct token *t = userdata;
        if (!t->waiting)
                return 0;
        if (!usable(t)) {
                _cleanup_(freep) char *err = NULL;
                int r = login_start(t, &err);
                if (r < 0) {
                        fail_waiting(t, r, err);
                        return 0;
                }
                if (r == 0)
                        return 0;     /* login_done kicks again */
        }
        uint64_t limit = t->seq;
        struct token_req *r;
        while ((r = t->waiting) && r->seq <= limit) {
                LIST_REMOVE(t->waiting, t->waiting_tail, r);
                r->where = REQ_IDLE;
                int e = req_start(r);
                if (e < 0)
                        req_complete(r, e, NULL, "cannot start an API request");
        }
        return 0;
}

static void refresh_done(int error, const cJSON *json, const char *message, void *userdata) {
        struct token *t = userdata;
        _cleanup_(freep) char *err = NULL;
        error = take_reply(t, error, json, &err);
        if (error >= 0)
                return token_log(t, "token-refresh", "token refreshed");
        uint64_t now = now_realtime_usec();
        if (error == -EACCES || !usable(t)) {
                log_full(LOG_NOTICE, &(struct log_fields) { .event = "token-refresh" },
                         "the API refused to refresh the token (%s); logging in again", err ? err : message);
                drop_token(t);
                if (error != -EACCES)
                        note_failure(t, error, err ? err : message, true);
                arm_maint(t, t->not_before > now ? t->not_before : now);
                return;
        }
        /* The token still holds: retry with backoff, well before it ends. */
        uint64_t retry = backoff_delay(t, t->failures++), half = (t->exp - now) / 2;
        retry = retry > half ? half : retry;
        retry = retry < USEC_PER_SEC ? USEC_PER_SEC : retry;
        _cleanup_(freep) char *d = format_timespan(retry);
        log_full(LOG_WARNING, &(struct log_fields) { .event = "token-refresh" },
                 "token refresh failed: %s; retrying in %s", err ? err : message, d);
        arm_maint(t, now + retry);
}

static int on_maint(sd_event_source *s, uint64_t usec, void *userdata) {
        struct token *t = userdata;
        if (t->login_req || t->refresh_req)
                return 0;
        /* Refreshing needs only a token that has not expired yet, however close. */
        if (t->token && t->exp > now_realtime_usec()) {
                struct token_req *r = req_new(t, "POST", xstrdup("/login/refresh"), NULL, true, refresh_done, t);
                r->raw_401 = true;
                t->refresh_req = r;
                if (req_start(r) < 0) {
                        req_free(r);
                        arm_maint(t, now_realtime_usec() + backoff_delay(t, t->failures++));
                }
                return 0;
        }
        if (!(t->email && t->password_file) && !t->token_file)
                return 0;             /* nothing to log in with: wait for `mysocketctl login` */
        if (t->not_before > now_realtime_usec()) {
                arm_maint(t, t->not_before);
                return 0;
        }
        _cleanup_(freep) char *err = NULL;
        int r = login_start(t, &err);
        if (r < 0)
                login_later(t, r, err);
        return 0;
}

bool token_start(struct token *t) {
        _cleanup_(freep) char *path = state_token_path(t->state_dir), *err = NULL;
        char *saved = NULL;
        struct api_jwt_claims c = {};

        if (secret_file_read(path, "saved token", SECRET_FILE_MAX, &saved, &err) >= 0 && apijson_jwt_claims(saved, &c) >= 0 &&
            c.exp > now_realtime_usec() + TOKEN_MARGIN_USEC && (!t->email || !c.email || streq(t->email, c.email))) {
                if (token_set(t, saved, "the saved token is one", false, &err) >= 0)
                        token_log(t, "login", "reusing the saved API token");
        } else
                scrub_free(saved);
        apijson_jwt_claims_clear(&c);
        free(err);
        err = NULL;

        if (!t->token) {
                int r = login_start(t, &err);
                if (r == -ENOKEY)
                        log_notice("%s", err);
                else if (r < 0)
                        login_later(t, r, err);
        }
        return t->token || t->login_req;
}

int token_take_login(struct token *t, const cJSON *json, const char *email, char **error) {
        int r = take_reply(t, 0, json, error);
        if (r >= 0) {
                _cleanup_(freep) char *what = xasprintf("logged in to the API as %s", email);
                token_log(t, "login", what);
        }
        return r;
}

uint64_t token_expiry(struct token *t) {
        return t->token ? t->exp : 0;
}

const char *token_user_id(struct token *t) {
        return t->token ? t->user_id : NULL;
}

/* ---- life cycle ------------------------------------------------------------------------- */

int token_new(sd_event *e, const struct config *c, struct token **ret) {
        struct token *t = xcalloc(1, sizeof(*t));
        int r;

        t->event = sd_event_ref(e);
        t->url = xstrdup(c->api_url ? c->api_url : "https://api.mysocket.io");
        for (size_t n = strlen(t->url); n > 0 && t->url[n - 1] == '/'; n--)
                t->url[n - 1] = '\0';
        t->email = xstrdup(c->api_email);
        t->password_file = xstrdup(c->api_password_file);
        t->token_file = xstrdup(c->api_token_file);
        t->state_dir = xstrdup(c->state_dir ? c->state_dir : STATE_DIR_DEFAULT);
        t->backoff_initial = c->backoff_initial ? c->backoff_initial : 1;
        t->backoff_max = c->backoff_max > t->backoff_initial ? c->backoff_max : t->backoff_initial;

        if ((r = http_new(e, &t->http)) < 0 ||
            (r = sd_event_add_time(e, &t->maint, CLOCK_REALTIME, 0, 0, on_maint, t)) < 0 ||
            (r = sd_event_source_set_enabled(t->maint, SD_EVENT_OFF)) < 0 ||
            (r = sd_event_add_defer(e, &t->kick, on_kick, t)) < 0 ||
            (r = sd_event_source_set_enabled(t->kick, SD_EVENT_OFF)) < 0) {
                token_free(t);
                return r;
        }
        (void) sd_event_source_set_description(t->maint, "api-token");
        (void) sd_event_source_set_description(t->kick, "api-kick");
        *ret = t;
        return 0;
}

void token_free(struct token *t) {
        struct token_req *r;
        if (!t)
                return;
        while ((r = t->waiting))
                req_free(r);
        while ((r = t->running))
                req_free(r);
        http_free(t->http);
        sd_event_source_disable_unref(t->maint);
        sd_event_source_disable_unref(t->kick);
        sd_event_unref(t->event);
        drop_token(t);
        scrub_remove(t->password_scrubbed);
        scrub_free(t->password_scrubbed);
        free(t->url);
        free(t->email);
        free(t->password_file);
        free(t->token_file);
        free(t->state_dir);
        free(t->user_id);
        free(t->last_error);
        free(t);
}

void token_set_timeouts(struct token *t, uint64_t connect_usec, uint64_t total_usec) {
        http_set_timeouts(t->http, connect_usec, total_usec);
}
