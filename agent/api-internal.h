/* What the api*.c files share and nobody else sees. Only api.c includes libcurl: the
 * handles here are opaque pointers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "api.h"

#define USEC_PER_SEC 1000000ULL
#define TOKEN_MARGIN_USEC (USEC_PER_SEC / 2)   /* a token this close to exp is not sent */
#define API_CURL_ERROR_SIZE 256                /* CURL_ERROR_SIZE, checked in api.c */

struct curl_slist;
struct Curl_multi;


struct http_req;
/* json: the parsed reply (NULL for an empty one), freed after done returns. */
typedef void (*http_done_t)(struct http_req *h, int error, cJSON *json, const char *message);

enum req_where { REQ_IDLE, REQ_WAITING, REQ_RUNNING };

struct http_req {
        struct api *api;
        TAILQ_ENTRY(http_req) link;
        enum req_where where;
        uint64_t seq;
        void *easy;                    /* CURL * */
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
        char errbuf[API_CURL_ERROR_SIZE];
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
        bool abandoned;                /* cancelled during POST /socket: delete what it makes */
        struct api_socket sock;
        struct api_tunnel tunnel;
};

struct api {
        sd_event *event;
        struct Curl_multi *multi;      /* CURLM * */
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


/* api.c: requests. A request is started (or queued until a token is there) by submit; its
 * done callback fires exactly once, from the event loop, then it is freed. */
struct http_req *api_http_new(struct api *a, const char *method, char *path_owned, cJSON *body,
                              bool auth, http_done_t done, void *userdata);
void api_http_submit(struct http_req *h);
int api_http_start(struct http_req *h);
void api_http_complete(struct http_req *h, int error, cJSON *json, const char *message);
void api_http_free(struct http_req *h);        /* without calling done */
char *api_http_what(struct http_req *h);       /* "POST /socket", for messages */

/* api-token.c: the token's life. */
bool api_token_usable(struct api *a);
int api_token_set(struct api *a, char *token, bool persist, char **error);
void api_token_log(struct api *a, const char *event, const char *what);
int api_token_on_kick(sd_event_source *s, void *userdata);
int api_token_on_maint(sd_event_source *s, uint64_t usec, void *userdata);

/* api-calls.c */
void api_call_free(struct api_call *c);
int api_json_call(struct api *a, const char *method, char *path, cJSON *body, bool auth,
                  enum call_decode decode, api_json_cb cb, void *userdata, struct api_call **ret);
