/* The socket and tunnel calls: api_ensure_binding (socket, tunnel, SSH user, ids recorded),
 * the original client's commands passed through, and the client's life cycle. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "list.h"
#include "log.h"
#include "scrub.h"
#include "state.h"
#include "token.h"
#include "util.h"

enum call_decode { DECODE_NONE, DECODE_USER, DECODE_SOCKET, DECODE_SOCKET_LIST, DECODE_TUNNEL,
                   DECODE_TUNNEL_LIST, DECODE_LOGIN, DECODE_DELETE };

struct api_call {
        struct api *api;
        struct api_call *prev, *next;
        struct token_req *req;         /* the request in flight, if any */
        const char *method;            /* of that request, or the last one */
        char *path;                    /* likewise; NULL: /user/{user_id} */
        api_binding_cb binding_cb;
        api_json_cb json_cb;
        void *userdata;
        enum call_decode decode;

        /* api_ensure_binding */
        char *name, *display_name, *username, *password, *config_socket_id;
        enum socket_type type;
        bool protected_;
        struct state_ids ids;          /* the record: socket, then the tunnels in use first */
        bool recreated;
        bool abandoned;                /* cancelled during POST /socket: delete what it makes */
        struct api_socket sock;
        struct api_tunnel tunnel;
        unsigned want;                 /* tunnels */
        size_t cursor;                 /* the record's tunnel being checked or deleted */
        size_t n_got;                  /* ids.tunnels[0..n_got) are checked: they serve */
        uint16_t ports[STATE_TUNNELS_MAX];   /* their relay ports */
        struct strv known;             /* tunnel ids recorded or adopted: never adopted again */
};

struct api {
        struct token *token;
        struct api_call *calls, *calls_tail;   /* every call not yet freed */
        char *state_dir;
        char *user_name, *user_name_of;        /* the account's SSH user, and its user_id */
        struct api_call *user_call;
};

static struct api_call *json_call(struct api *a, const char *method, char *path, cJSON *body, bool auth,
                                  enum call_decode decode, api_json_cb cb, void *userdata, struct api_call **ret);

/* ---- calls ---------------------------------------------------------------------------- */

static struct api_call *call_new(struct api *a, void *userdata) {
        struct api_call *c = xcalloc(1, sizeof(*c));
        c->api = a;
        c->userdata = userdata;
        LIST_APPEND(a->calls, a->calls_tail, c);
        return c;
}

static void call_free(struct api_call *c) {
        if (!c)
                return;
        LIST_REMOVE(c->api->calls, c->api->calls_tail, c);
        if (c->api->user_call == c)
                c->api->user_call = NULL;
        token_req_cancel(c->req);
        scrub_remove(c->password);
        scrub_free(c->password);
        free(c->path);
        free(c->name);
        free(c->display_name);
        free(c->username);
        free(c->config_socket_id);
        state_ids_clear(&c->ids);
        strv_clear(&c->known);
        apijson_socket_clear(&c->sock);
        apijson_tunnel_clear(&c->tunnel);
        free(c);
}

static void binding_on_socket(int error, const cJSON *json, const char *message, void *userdata);

void api_call_cancel(struct api_call *c) {
        if (!c)
                return;
        /* A POST /socket already sent may create a socket nobody would ever know of: let it
         * finish quietly and delete what it made (binding_on_socket). */
        if (c->req && streq(c->method, "POST") && streq(c->path, "/socket") && c->binding_cb) {
                c->abandoned = true;
                c->binding_cb = NULL;
                return;
        }
        call_free(c);
}

static void on_abandoned_deleted(int error, const cJSON *reply, const char *message, void *userdata) {
        _cleanup_(freep) char *name = userdata;
        if (error < 0)
                log_binding(LOG_WARNING, name, "purge", "could not delete the socket of a removed binding: %s", message);
}

/* The POST /socket of a cancelled call answered: delete what it created, then go. */
static void abandoned_socket_done(struct api_call *c, int error, const cJSON *json) {
        struct api_socket sock;
        struct api_call *del;
        char *err = NULL;
        if (error >= 0 && apijson_socket(json, &sock, &err) == 0) {
                log_binding(LOG_INFO, c->name, "purge", "deleting socket %s, created as its binding went away",
                            sock.socket_id);
                char *name = xstrdup(c->name);
                if (api_socket_delete(c->api, sock.socket_id, on_abandoned_deleted, name, &del) < 0)
                        free(name);
                apijson_socket_clear(&sock);
        }
        free(err);
        call_free(c);
}

/* Every done handler of a call starts with this: the request is token.c's to free. */
static struct api_call *call_of(void *userdata) {
        struct api_call *c = userdata;
        c->req = NULL;
        return c;
}

/* method: a string literal. path: owned, NULL for /user/{user_id}. */
static void call_request(struct api_call *c, const char *method, char *path, cJSON *body,
                         bool auth, token_done_cb done) {
        c->method = method;
        free(c->path);
        c->path = xstrdup(path);
        (void) token_request(c->api->token, method, path, body, auth, done, c, &c->req);
}

static void set_user_name(struct api *a, const struct api_user *u) {
        free(a->user_name);
        free(a->user_name_of);
        a->user_name = xstrdup(u->user_name);
        a->user_name_of = xstrdup(u->user_id);
}

static char *call_what(const struct api_call *c) {
        return xasprintf("%s %s", c->method, c->path ? c->path : "/user/{user_id}");
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

/* ---- api_ensure_binding: socket, then tunnel, then the SSH user ------------------------ */

static void binding_fail(struct api_call *c, int error, const char *message) {
        c->binding_cb(error, NULL, message, c->userdata);
        call_free(c);
}

static void binding_fail_decode(struct api_call *c, char *err) {
        _cleanup_(freep) char *what = call_what(c);
        _cleanup_(freep) char *msg = xasprintf("API reply to %s: %s", what, err);
        free(err);
        binding_fail(c, -EBADMSG, msg);
}

static void binding_warn(struct api_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void binding_warn(struct api_call *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_fullv(LOG_WARNING, &(struct log_fields) { .binding = c->name, .event = "resolve",
                                                     .socket_id = c->ids.socket_id },
                  fmt, ap);
        va_end(ap);
}

static bool binding_save(struct api_call *c) {
        int r = state_ids_save(c->api->state_dir, c->name, &c->ids);
        if (r >= 0)
                return true;
        _cleanup_(freep) char *msg = xasprintf("cannot record the API ids in %s: %s",
                                               c->api->state_dir, strerror(-r));
        binding_fail(c, r, msg);
        return false;
}

static void binding_finish(struct api_call *c) {
        struct api_binding_tunnel t[STATE_TUNNELS_MAX];
        for (size_t i = 0; i < c->n_got; i++)
                t[i] = (struct api_binding_tunnel) { c->ids.tunnels[i].tunnel_id, c->ports[i] };
        struct api_binding_result r = {
                .socket_id = c->ids.socket_id,
                .tunnel_id = t[0].tunnel_id,
                .relay_port = t[0].relay_port,
                .tunnels = t,
                .n_tunnels = c->n_got,
                .dnsname = c->sock.dnsname,
                .socket_tcp_port = c->sock.tcp_port,
                .user_name = api_user_name(c->api),
                .created = c->ids.created,
                .recreated = c->recreated,
        };
        c->binding_cb(0, &r, NULL, c->userdata);
        call_free(c);
}

static void binding_on_user(int error, const cJSON *json, const char *message, void *userdata) {
        struct api_call *c = call_of(userdata);
        struct api_user u;
        char *err = NULL;
        if (error < 0)
                return binding_fail(c, error, message);
        if (apijson_user(json, &u, &err) < 0)
                return binding_fail_decode(c, err);
        set_user_name(c->api, &u);
        apijson_user_clear(&u);
        binding_finish(c);
}

static void binding_user(struct api_call *c) {
        if (api_user_name(c->api))
                return binding_finish(c);
        call_request(c, "GET", NULL, NULL, true, binding_on_user);
}

/* ---- the tunnels: the recorded ones checked in order, those over the count deleted, the
 * socket's unrecorded ones adopted, new ones created; the record saved at every change ---- */

static void tunnels_next(struct api_call *c);

/* Record entry `cursor` serves, at relay port `port`. */
static void tunnel_serves(struct api_call *c, uint16_t port) {
        c->ports[c->n_got++] = port;
        c->cursor++;
}

static void tunnel_record(struct api_call *c, const char *tunnel_id, bool created) {
        state_ids_add_tunnel(&c->ids, tunnel_id, created);
        strv_push(&c->known, xstrdup(tunnel_id));
}

static void binding_on_tunnel(int error, const cJSON *json, const char *message, void *userdata) {
        struct api_call *c = call_of(userdata);
        bool created = streq(c->method, "POST");
        char *err = NULL;
        if (error == -ENOENT && !created) {
                binding_warn(c, "tunnel %s is gone at the API; creating a new one",
                             c->ids.tunnels[c->cursor].tunnel_id);
                state_ids_drop_tunnel(&c->ids, c->cursor);
                c->recreated = true;
                if (binding_save(c))
                        tunnels_next(c);
                return;
        }
        if (error < 0)
                return binding_fail(c, error, message);
        apijson_tunnel_clear(&c->tunnel);
        if (apijson_tunnel(json, &c->tunnel, &err) < 0)
                return binding_fail_decode(c, err);
        if (created) {
                tunnel_record(c, c->tunnel.tunnel_id, true);
                if (!binding_save(c))
                        return;
        }
        tunnel_serves(c, c->tunnel.local_port);
        tunnels_next(c);
}

static void binding_on_tunnel_deleted(int error, const cJSON *json, const char *message, void *userdata) {
        struct api_call *c = call_of(userdata);
        const char *tid = c->ids.tunnels[c->cursor].tunnel_id;
        if (error < 0 && error != -ENOENT) {
                /* Kept in the record, so the next resolve deletes it; the binding does not wait. */
                binding_warn(c, "cannot delete tunnel %s, no longer wanted (tunnels = %u): %s; trying again at "
                             "the next resolve", tid, c->want, message);
                c->cursor++;
                return tunnels_next(c);
        }
        log_full(LOG_NOTICE, &(struct log_fields) { .binding = c->name, .event = "resolve",
                                                   .socket_id = c->ids.socket_id, .tunnel_id = tid },
                 "API: tunnel %s deleted (tunnels = %u)", tid, c->want);
        state_ids_drop_tunnel(&c->ids, c->cursor);
        if (binding_save(c))
                tunnels_next(c);
}

static void tunnels_next(struct api_call *c) {
        struct state_ids *ids = &c->ids;
        while (c->cursor < ids->n_tunnels) {
                const struct state_tunnel *t = &ids->tunnels[c->cursor];
                if (c->n_got >= c->want) {
                        if (t->created || ids->created)
                                return call_request(c, "DELETE", xasprintf("/socket/%s/tunnel/%s", ids->socket_id,
                                                                           t->tunnel_id),
                                                    NULL, true, binding_on_tunnel_deleted);
                        state_ids_drop_tunnel(ids, c->cursor);  /* not ours: no longer used, left alone */
                        if (!binding_save(c))
                                return;
                        continue;
                }
                const struct api_tunnel *e = NULL;
                for (size_t i = 0; i < c->sock.n_tunnels && !e; i++)
                        if (streq(c->sock.tunnels[i].tunnel_id, t->tunnel_id))
                                e = &c->sock.tunnels[i];
                /* Not embedded in the socket: ask for it, a 404 there means it is gone. */
                if (!e)
                        return call_request(c, "GET", xasprintf("/socket/%s/tunnel/%s", ids->socket_id, t->tunnel_id),
                                            NULL, true, binding_on_tunnel);
                tunnel_serves(c, e->local_port);
        }
        /* Too few: the socket's tunnels nobody recorded (an attached socket, or one whose
         * tunnel we made but never recorded), then new ones. */
        for (size_t i = 0; i < c->sock.n_tunnels && c->n_got < c->want; i++) {
                const struct api_tunnel *e = &c->sock.tunnels[i];
                if (strv_contains(&c->known, e->tunnel_id))
                        continue;
                tunnel_record(c, e->tunnel_id, ids->created);
                tunnel_serves(c, e->local_port);
                if (!binding_save(c))
                        return;
        }
        if (c->n_got < c->want)
                return call_request(c, "POST", xasprintf("/socket/%s/tunnel", ids->socket_id), NULL, true,
                                    binding_on_tunnel);
        binding_user(c);
}

static void binding_create_socket(struct api_call *c) {
        state_ids_clear(&c->ids);       /* the old socket's tunnels are not the new one's */
        strv_clear(&c->known);
        apijson_socket_clear(&c->sock);
        cJSON *body = socket_body(c->display_name, c->type, c->protected_, c->username, c->password);
        call_request(c, "POST", xstrdup("/socket"), body, true, binding_on_socket);
}

static void binding_on_socket(int error, const cJSON *json, const char *message, void *userdata) {
        struct api_call *c = call_of(userdata);
        bool created = streq(c->method, "POST");
        char *err = NULL;
        if (c->abandoned)
                return abandoned_socket_done(c, error, json);
        if (error == -ENOENT && !created) {
                if (c->config_socket_id) {
                        _cleanup_(freep) char *m = xasprintf("socket %s (socket_id in the config) does not "
                                                             "exist at the API", c->config_socket_id);
                        return binding_fail(c, error, m);
                }
                binding_warn(c, "socket %s is gone at the API; creating a new one (the public name changes)",
                             c->ids.socket_id);
                c->recreated = true;
                return binding_create_socket(c);
        }
        if (error < 0)
                return binding_fail(c, error, message);
        apijson_socket_clear(&c->sock);
        if (apijson_socket(json, &c->sock, &err) < 0)
                return binding_fail_decode(c, err);
        if (created) {
                c->ids.created = true;
                c->ids.socket_id = xstrdup(c->sock.socket_id);
                if (!binding_save(c))
                        return;
        } else if (!c->config_socket_id &&
                   (!streq(c->sock.socket_type, socket_type_to_string(c->type)) ||
                    c->sock.protected_ != c->protected_)) {
                /* The API has no update call: a changed type or protection needs a new socket. */
                binding_warn(c, "socket %s no longer matches the binding's type or protection; "
                             "creating a new one (the public name changes)", c->ids.socket_id);
                c->recreated = true;
                return binding_create_socket(c);
        }
        tunnels_next(c);
}

int api_ensure_binding(struct api *a, const struct api_binding_request *req,
                       api_binding_cb cb, void *userdata, struct api_call **ret) {
        if (!req || !binding_name_valid(req->name) || !cb || (unsigned) req->type >= _SOCKET_TYPE_MAX ||
            (req->config_socket_id && !req->config_socket_id[0]))
                return -EINVAL;
        struct api_call *c = call_new(a, userdata);
        c->binding_cb = cb;
        c->name = xstrdup(req->name);
        c->display_name = xstrdup(req->display_name ? req->display_name : req->name);
        c->type = req->type;
        c->protected_ = req->protected_;
        c->username = xstrdup(req->username);
        c->password = xstrdup(req->password);
        scrub_add(c->password);
        c->config_socket_id = xstrdup(req->config_socket_id);

        c->want = req->tunnels == 0 ? 1 : req->tunnels > STATE_TUNNELS_MAX ? STATE_TUNNELS_MAX : req->tunnels;

        int r = state_ids_load(a->state_dir, c->name, &c->ids);
        if (r < 0 && r != -ENOENT)
                log_full(LOG_WARNING, &(struct log_fields) { .binding = c->name, .event = "resolve" },
                         "cannot read its recorded API ids in %s (%s); a new socket will be created",
                         a->state_dir, strerror(-r));
        if (c->config_socket_id && !streq(c->ids.socket_id, c->config_socket_id)) {
                state_ids_clear(&c->ids);
                c->ids.socket_id = xstrdup(c->config_socket_id);
        }
        for (size_t i = 0; i < c->ids.n_tunnels; i++)
                strv_push(&c->known, xstrdup(c->ids.tunnels[i].tunnel_id));
        if (c->ids.socket_id) {
                char *path = xasprintf("/socket/%s", c->ids.socket_id);
                call_request(c, "GET", path, NULL, true, binding_on_socket);
        } else
                binding_create_socket(c);
        *ret = c;
        return 0;
}

/* ---- the passthrough commands ----------------------------------------------------------- */

static void json_on_done(int error, const cJSON *json, const char *message, void *userdata) {
        struct api_call *c = call_of(userdata);
        struct api *a = c->api;
        _cleanup_(freep) char *err = NULL, *msg = NULL;
        struct api_user u = {};

        if (error == -ENOENT && c->decode == DECODE_DELETE)
                error = 0;
        if (error >= 0)
                switch (c->decode) {
                case DECODE_USER:
                        error = apijson_user(json, &u, &err);
                        if (error >= 0)
                                set_user_name(a, &u);
                        apijson_user_clear(&u);
                        break;
                case DECODE_SOCKET:
                        error = apijson_socket(json, &c->sock, &err);
                        break;
                case DECODE_SOCKET_LIST:
                        error = apijson_socket_list(json, &err);
                        break;
                case DECODE_TUNNEL:
                        error = apijson_tunnel(json, &c->tunnel, &err);
                        break;
                case DECODE_TUNNEL_LIST:
                        error = apijson_tunnel_list(json, &err);
                        break;
                case DECODE_LOGIN:
                        error = token_take_login(a->token, json, c->name, &err);
                        break;
                case DECODE_NONE:
                case DECODE_DELETE:
                        break;
                }
        if (err) {
                _cleanup_(freep) char *what = call_what(c);
                msg = xasprintf("API reply to %s: %s", what, err);
                message = msg;
        }
        bool give_json = error >= 0 && c->decode != DECODE_DELETE && c->decode != DECODE_LOGIN;
        if (c->json_cb)
                c->json_cb(error, give_json ? json : NULL, error < 0 ? message : NULL, c->userdata);
        call_free(c);
}

/* Starts a call whose reply goes to cb as JSON; *ret (if ret) and the return value are the call. */
static struct api_call *json_call(struct api *a, const char *method, char *path, cJSON *body, bool auth,
                                  enum call_decode decode, api_json_cb cb, void *userdata, struct api_call **ret) {
        struct api_call *c = call_new(a, userdata);
        c->json_cb = cb;
        c->decode = decode;
        call_request(c, method, path, body, auth, json_on_done);
        if (ret)
                *ret = c;
        return c;
}

int api_login(struct api *a, const char *email, const char *password,
              api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!email || !email[0] || !password || !password[0])
                return -EINVAL;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "email", email);
        cJSON_AddStringToObject(body, "password", password);
        struct api_call *c = json_call(a, "POST", xstrdup("/login"), body, false, DECODE_LOGIN, cb, userdata, ret);
        c->name = xstrdup(email);      /* for the log line */
        return 0;
}

int api_account_show(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret) {
        json_call(a, "GET", NULL, NULL, true, DECODE_USER, cb, userdata, ret);
        return 0;
}

int api_socket_list(struct api *a, api_json_cb cb, void *userdata, struct api_call **ret) {
        json_call(a, "GET", xstrdup("/connect"), NULL, true, DECODE_SOCKET_LIST, cb, userdata, ret);
        return 0;
}

int api_socket_create(struct api *a, const struct api_binding_request *spec,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!spec || (!spec->display_name && !spec->name) || (unsigned) spec->type >= _SOCKET_TYPE_MAX ||
            (spec->protected_ && (!spec->username || !spec->password)))
                return -EINVAL;
        cJSON *body = socket_body(spec->display_name ? spec->display_name : spec->name, spec->type,
                                  spec->protected_, spec->username, spec->password);
        struct api_call *c = json_call(a, "POST", xstrdup("/socket"), body, true, DECODE_SOCKET, cb, userdata, ret);
        c->password = xstrdup(spec->password);      /* scrubbed from any text while in use */
        scrub_add(c->password);
        return 0;
}

int api_socket_delete(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!remote_id_valid(socket_id))
                return -EINVAL;
        json_call(a, "DELETE", xasprintf("/socket/%s", socket_id), NULL, true, DECODE_DELETE, cb, userdata, ret);
        return 0;
}

int api_tunnel_list(struct api *a, const char *socket_id,
                    api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!remote_id_valid(socket_id))
                return -EINVAL;
        json_call(a, "GET", xasprintf("/socket/%s/tunnel", socket_id), NULL, true, DECODE_TUNNEL_LIST, cb, userdata, ret);
        return 0;
}

int api_tunnel_create(struct api *a, const char *socket_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!remote_id_valid(socket_id))
                return -EINVAL;
        json_call(a, "POST", xasprintf("/socket/%s/tunnel", socket_id), NULL, true, DECODE_TUNNEL, cb, userdata, ret);
        return 0;
}

int api_tunnel_delete(struct api *a, const char *socket_id, const char *tunnel_id,
                      api_json_cb cb, void *userdata, struct api_call **ret) {
        if (!remote_id_valid(socket_id) || !remote_id_valid(tunnel_id))
                return -EINVAL;
        json_call(a, "DELETE", xasprintf("/socket/%s/tunnel/%s", socket_id, tunnel_id), NULL,
                         true, DECODE_DELETE, cb, userdata, ret);
        return 0;
}

/* ---- life cycle ------------------------------------------------------------------------- */

int api_new(sd_event *e, const struct config *c, struct api **ret) {
        struct api *a = xcalloc(1, sizeof(*a));
        int r = token_new(e, c, &a->token);
        if (r < 0) {
                free(a);
                return r;
        }
        a->state_dir = xstrdup(c->state_dir ? c->state_dir : STATE_DIR_DEFAULT);
        *ret = a;
        return 0;
}

void api_free(struct api *a) {
        if (!a)
                return;
        while (a->calls)
                call_free(a->calls);
        token_free(a->token);
        free(a->state_dir);
        free(a->user_name);
        free(a->user_name_of);
        free(a);
}

void api_set_timeouts(struct api *a, uint64_t connect_usec, uint64_t total_usec) {
        token_set_timeouts(a->token, connect_usec, total_usec);
}

void api_start(struct api *a) {
        /* Learn the SSH user early, so `status` can show it before any binding needs it. */
        if (token_start(a->token))
                json_call(a, "GET", NULL, NULL, true, DECODE_USER, NULL, NULL, &a->user_call);
}

uint64_t api_token_expiry(struct api *a) {
        return token_expiry(a->token);
}

const char *api_user_name(struct api *a) {
        const char *uid = token_user_id(a->token);
        /* Another account's token (mysocketctl login as someone else): not ours any more. */
        return !uid || streq(uid, a->user_name_of) ? a->user_name : NULL;
}
