/* The API token's life: login (password_file or token_file), STATE_DIR/token, refresh
 * before exp, re-login after a 401, and the queue of requests waiting for a token. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api-internal.h"
#include "log.h"
#include "util.h"

#define CRED_FILE_MAX 8192

static void arm_maint(struct api *a, uint64_t when);

/* ---- the token ------------------------------------------------------------------------ */

/* Reads a credentials file that nobody but us may read. */
static int read_secret_file(const char *path, const char *what, char **ret, char **error) {
        char buf[CRED_FILE_MAX + 1];
        struct stat st;
        int r = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);   /* a FIFO must not block */
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
int api_token_set(struct api *a, char *token, bool persist, char **error) {
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

void api_token_log(struct api *a, const char *event, const char *what) {
        char when[32];
        log_full(LOG_INFO, &(struct log_fields) { .event = event }, "%s, valid until %s",
                 what, format_rfc3339(a->token_exp, when));
}

/* Fails the requests that were waiting when this started (not the ones queued meanwhile). */
static void fail_waiting(struct api *a, int error, const char *message) {
        uint64_t limit = a->seq;
        struct http_req *h;
        while ((h = TAILQ_FIRST(&a->waiting)) && h->seq <= limit)
                api_http_complete(h, error, NULL, message);
}

/* A {token} reply to a login or refresh: decoded and made current. Returns error, or the
 * decoding / saving failure with *err set. */
static int accept_token(struct api *a, int error, cJSON *json, char **err) {
        char *token = NULL;
        if (error >= 0)
                error = api_decode_token(json, &token, err);
        if (error >= 0)
                error = api_token_set(a, token, true, err);     /* takes token */
        return error;
}

static void login_done(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api *a = h->api;
        _cleanup_(freep) char *err = NULL;
        error = accept_token(a, error, json, &err);
        if (error < 0) {
                _cleanup_(freep) char *m = xasprintf("API login as %s failed: %s", a->email,
                                                     error == -EACCES ? "the API refused the email or password (HTTP 401)" :
                                                     message ? message : err);
                log_full(LOG_WARNING, &(struct log_fields) { .event = "login" }, "%s", m);
                fail_waiting(a, error, m);
                /* Keep trying on our own, but do not hammer the API with a wrong password. */
                if (!a->token)
                        arm_maint(a, now_realtime_usec() + (error == -EACCES ? 300 : 30) * USEC_PER_SEC);
                return;
        }
        _cleanup_(freep) char *what = xasprintf("logged in to the API as %s", a->email);
        api_token_log(a, "login", what);
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
                struct http_req *h = api_http_new(a, "POST", xstrdup("/login"), body, false, login_done, NULL);
                a->login_req = h;
                api_http_submit(h);
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
                r = api_token_set(a, token, false, error);
                if (r < 0)
                        return r;
                _cleanup_(freep) char *what = xasprintf("using the API token from %s", a->token_file);
                api_token_log(a, "login", what);
                return 1;
        }
        *error = xstrdup("not logged in to the API: set email + password_file or token_file in [api], "
                         "or run mysocketctl login");
        return -ENOKEY;
}

int api_token_on_kick(sd_event_source *s, void *userdata) {
        struct api *a = userdata;
        if (TAILQ_EMPTY(&a->waiting))
                return 0;
        if (!api_token_usable(a)) {
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
                int r = api_http_start(h);
                if (r < 0)
                        api_http_complete(h, r, NULL, "cannot start an API request");
        }
        return 0;
}

static void refresh_done(struct http_req *h, int error, cJSON *json, const char *message) {
        struct api *a = h->api;
        _cleanup_(freep) char *err = NULL;
        error = accept_token(a, error, json, &err);
        if (error >= 0) {
                api_token_log(a, "token-refresh", "token refreshed");
                return;
        }
        uint64_t now = now_realtime_usec();
        if (error == -EACCES || !api_token_usable(a)) {
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

int api_token_on_maint(sd_event_source *s, uint64_t usec, void *userdata) {
        struct api *a = userdata;
        if (a->login_req || a->refresh_req)
                return 0;
        /* Refreshing needs only a token that has not expired yet, however close. */
        if (a->token && a->token_exp > now_realtime_usec()) {
                struct http_req *h = api_http_new(a, "POST", xstrdup("/login/refresh"), NULL, true, refresh_done, NULL);
                h->raw_401 = true;
                a->refresh_req = h;
                int r = api_http_start(h);
                if (r < 0) {
                        api_http_free(h);
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


int api_start(struct api *a) {
        _cleanup_(freep) char *path = xasprintf("%s/token", a->state_dir), *err = NULL;
        char *token = NULL;
        struct api_jwt_claims c = {};

        if (read_secret_file(path, "saved token", &token, &err) >= 0 && api_jwt_claims(token, &c) >= 0 &&
            c.exp > now_realtime_usec() + TOKEN_MARGIN_USEC && (!a->email || !c.email || streq(a->email, c.email))) {
                if (api_token_set(a, token, false, &err) >= 0)
                        api_token_log(a, "login", "reusing the saved API token");
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
                (void) api_json_call(a, "GET", NULL, NULL, true, DECODE_USER, NULL, NULL, &a->user_call);
        return 0;
}

