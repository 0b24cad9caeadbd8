/* The mysocket REST API client (SPEC §8): the face of agent/api/. Inside, http.c is the
 * transport (the only file that includes libcurl), token.c the token's life and the
 * requests that wait for it, json.c the API's JSON, calls.c (this header) the calls.
 *
 * Everything runs on the caller's sd-event loop through libcurl's multi-socket interface;
 * nothing blocks. Every call completes through its callback, never before the function
 * that started it has returned (so *ret is always set first). A callback fires exactly once
 * unless the call is cancelled; the struct api_call handle is freed right after it fires.
 *
 * The token (token.h): login (email + password_file, or token_file), persisted in
 * STATE_DIR/token (0600), reused after a restart while valid, refreshed before it expires,
 * and on a 401 a fresh login plus one retry of the request; failed logins back off.
 * Token events are logged with MYSOCKETD_EVENT=token-refresh / login; neither password
 * nor token is ever logged.
 *
 * Errors: negative errno plus a sentence for people (the `message` of the callbacks):
 *   -EACCES      HTTP 401 after a fresh login (or no way to log in again); bad credentials
 *   -ENOKEY      no credentials configured and no valid token (run `mysocketctl login`)
 *   -EPERM       HTTP 403, or a credentials file readable by others (refused)
 *   -ENOENT      HTTP 404 (delete calls treat it as success)
 *   -EINVAL      HTTP 400/409/422 and other 4xx (a short, sanitised part of the API's own
 *                message is quoted, never one that echoes what we sent)
 *   -EKEYEXPIRED the API issued a token that is already expired (clock?)
 *   -EAGAIN      the last login failed and the next is not due yet (that failure is said)
 *   -EREMOTEIO   HTTP 5xx (whatever the body: an HTML error page is named in the message)
 *   -EBADMSG     a 2xx body that is not JSON, or JSON of the wrong shape
 *   -EFBIG       a reply larger than HTTP_REPLY_MAX (1 MiB)
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EPROTO (TLS), -EIO: transport
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "conf.h"

struct api;
struct api_call;

/* ---- the client ----------------------------------------------------------------------- */

/* Creates the client for config c (api_url, credentials, state_dir are copied; c may be
 * freed afterwards). Does no I/O. Returns 0 and *ret, or -errno. */
int api_new(sd_event *e, const struct config *c, struct api **ret);
/* Cancels every call (no callbacks fire) and frees. NULL is fine. Never call it from
 * inside one of its own callbacks. */
void api_free(struct api *a);
/* For tests: per-request connect and total timeouts (defaults 10 s and 30 s). */
void api_set_timeouts(struct api *a, uint64_t connect_usec, uint64_t total_usec);

/* Loads STATE_DIR/token when still valid, else logs in; from then on keeps the token fresh
 * and learns the account's user_name. Cannot fail: failures are logged and retried on the
 * next call that needs a token. */
void api_start(struct api *a);
/* When the current token expires (realtime usec), 0 when there is none. */
uint64_t api_token_expiry(struct api *a);
/* The account's user_name (GET /user/{user_id}), NULL until known. */
const char *api_user_name(struct api *a);

/* Stops a call: its callback will never fire and the handle is freed. NULL is fine. */
void api_call_cancel(struct api_call *call);

struct api_binding_request {
        const char *name;              /* binding name: the key of its ids file, log prefix */
        const char *display_name;      /* the socket's name at the API (NULL: name) */
        enum socket_type type;
        bool protected_;
        const char *username;
        const char *password;
        const char *config_socket_id;  /* `socket_id =` from the config: attach, never recreate */
        unsigned tunnels;              /* how many tunnels the binding wants (1-8; 0 = 1) */
};

/* One tunnel of the socket, serving tunnel i of the binding. */
struct api_binding_tunnel {
        const char *tunnel_id;
        uint16_t relay_port;           /* the tunnel's local_port: each tunnel has its own */
};

struct api_binding_result {
        const char *socket_id;
        const char *tunnel_id;         /* tunnels[0]'s */
        uint16_t relay_port;           /* tunnels[0]'s */
        const struct api_binding_tunnel *tunnels;   /* req->tunnels of them, in the recorded order */
        size_t n_tunnels;
        const char *dnsname;
        uint16_t socket_tcp_port;      /* tcp/tls: the public port; 0 otherwise */
        const char *user_name;         /* the SSH login user */
        bool created;                  /* the daemon created the socket (purge may delete it) */
        bool recreated;                /* the recorded socket or tunnel was gone and was replaced */
};

/* result and message are valid only during the callback. On success error == 0 and message
 * is NULL; on failure r is NULL and message says what the API did. */
typedef void (*api_binding_cb)(int error, const struct api_binding_result *r,
                               const char *message, void *userdata);

/* Makes sure binding req->name has a socket and req->tunnels tunnels at the API and returns
 * them: uses the ids recorded in the state dir (state_ids_load) or req->config_socket_id
 * when the API still knows them, adopts the socket's unrecorded tunnels, otherwise creates
 * the socket (POST /socket) and/or tunnels (POST /socket/{id}/tunnel), recording the ids at
 * each change. Recorded tunnels beyond req->tunnels are deleted (DELETE) when mysocketd
 * created them (a delete that fails is kept and tried at the next call) and forgotten
 * otherwise. A recorded socket that is gone (404) or whose type/protection no longer
 * matches is replaced with a warning logged, a recorded tunnel that is gone likewise;
 * a config socket_id that is gone is an error (-ENOENT). req is copied. Returns 0 and
 * *ret (valid until the callback or api_call_cancel), or -EINVAL for a bad request. */
int api_ensure_binding(struct api *a, const struct api_binding_request *req,
                       api_binding_cb cb, void *userdata, struct api_call **ret);

/* For the passthrough commands: `reply` is the validated JSON the API answered (NULL for
 * deletes and login), borrowed during the callback (cJSON_Duplicate to keep it). */
typedef void (*api_json_cb)(int error, const cJSON *reply, const char *message, void *userdata);

/* The original client's commands (SPEC §6). Each returns 0 and *ret, or -errno at once. */
int api_login(struct api *a, const char *email, const char *password,
              api_json_cb cb, void *userdata, struct api_call **ret);   /* becomes the daemon's token */
int api_account_show(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret);
int api_socket_list(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret);
/* The socket is named spec->display_name (else spec->name); config_socket_id is ignored. */
int api_socket_create(struct api *a, const struct api_binding_request *spec,
                      api_json_cb cb, void *userdata, struct api_call **ret);
int api_socket_delete(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret);   /* 404 is success */
int api_tunnel_list(struct api *a, const char *socket_id,
                    api_json_cb cb, void *userdata, struct api_call **ret);
int api_tunnel_create(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret);
int api_tunnel_delete(struct api *a, const char *socket_id, const char *tunnel_id,
                      api_json_cb cb, void *userdata, struct api_call **ret);   /* 404 is success */
