/* The API token's life and the requests that need it: login (email + password_file, or
 * token_file), the token kept in the state dir and reused after a restart while valid,
 * refreshes planned on the token's own lifetime (its iat, not our clock), a new login
 * and one retry after a 401, and the queue of requests waiting for a token. Failed logins
 * and refreshes back off like everything else ([backoff], with jitter); a token that is
 * expired when it arrives is a failure that says so. Neither password nor token is ever
 * logged (both are given to scrub while in use).
 *
 * A request completes through its callback exactly once, from the event loop, unless it
 * is cancelled; json is the parsed reply (NULL when empty), borrowed during the callback.
 * Errors are api.h's table. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "conf.h"

struct token;
struct token_req;

typedef void (*token_done_cb)(int error, const cJSON *json, const char *message, void *userdata);

/* Copies what it needs of c. Does no I/O. Returns 0 and *ret, or -errno. */
int token_new(sd_event *e, const struct config *c, struct token **ret);
/* Cancels every request (no callbacks fire) and frees. NULL is fine. */
void token_free(struct token *t);
void token_set_timeouts(struct token *t, uint64_t connect_usec, uint64_t total_usec);
/* Takes the saved token when still valid, else starts a login. Failures are logged and
 * retried with backoff. Returns true when a token is there or on its way. */
bool token_start(struct token *t);

/* Sends `method path` (path owned; NULL: "/user/{user_id}" of the current token) with body
 * (taken, may be NULL). auth: with the token, waiting for one if needed. Returns 0 and
 * *ret (may be NULL), or -ENOMEM. */
int token_request(struct token *t, const char *method, char *path, cJSON *body, bool auth,
                  token_done_cb done, void *userdata, struct token_req **ret);
/* Stops a request: its callback never fires. NULL is fine. */
void token_req_cancel(struct token_req *r);

/* A {token} reply of a login done on a user's behalf (`mysocketctl login`): decoded, made
 * current and saved. Returns 0 or -errno with *error (caller frees). */
int token_take_login(struct token *t, const cJSON *json, const char *email, char **error);
/* When the current token expires (realtime usec, by our clock), 0 when there is none. */
uint64_t token_expiry(struct token *t);
/* The user_id claim of the current token, NULL when there is none. */
const char *token_user_id(struct token *t);
