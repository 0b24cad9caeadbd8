/* The original mysocketctl's commands, answered by the daemon that holds the token
 * (SPEC §6): login, account, socket, tunnel, and `connect` (a temporary binding streamed
 * to the terminal). Each API call answers later, so the client is kept as a stream until
 * the reply goes out; if it disconnects first, the call is cancelled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "commands-api.h"
#include "log.h"

struct pending {
        struct control_client *client;
        struct api_call *call;
        const char *result_key;         /* where the API's JSON goes in our reply */
};

static void pending_closed(struct control_client *c, void *userdata) {
        struct pending *p = userdata;
        api_call_cancel(p->call);
        free(p);
}

static void on_api_reply(int error, const cJSON *reply, const char *message, void *userdata) {
        struct pending *p = userdata;
        cJSON *out;
        p->call = NULL;
        if (error < 0)
                out = proto_reply_error(error == -ENOENT ? PROTO_CODE_NOT_FOUND
                                        : error == -EINVAL ? PROTO_CODE_INVALID : PROTO_CODE_UNAVAILABLE,
                                        /* api.c's messages mostly name the API already */
                                        "%s%s", strncmp(message, "API", 3) ? "API: " : "", message);
        else {
                out = proto_reply_ok();
                if (reply && p->result_key)
                        cJSON_AddItemToObject(out, p->result_key, cJSON_Duplicate(reply, true));
        }
        control_client_send(p->client, out);
        cJSON_Delete(out);
}

static struct api *need_api(struct commands *ctx, cJSON **reply) {
        if (!ctx->manager->api)
                *reply = proto_reply_error(PROTO_CODE_UNAVAILABLE,
                                           "the daemon runs in direct mode (no [api] section in %s)",
                                           ctx->manager->config->path);
        return ctx->manager->api;
}

/* The call is started (r is its result): park the client until it answers. */
static cJSON *park(struct control_client *c, int r, struct pending *p) {
        if (r < 0) {
                free(p);
                return proto_reply_error(PROTO_CODE_INVALID, "cannot ask the API: %s", strerror(-r));
        }
        control_client_park(c, pending_closed, p);
        return NULL;
}

static struct pending *pending_new(struct control_client *c, const char *result_key) {
        struct pending *p = xcalloc(1, sizeof(*p));
        p->client = c;
        p->result_key = result_key;
        return p;
}

cJSON *commands_login(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *email, *password;
        char *error = NULL;
        cJSON *reply = NULL;
        struct api *api = need_api(ctx, &reply);
        if (!api)
                return reply;
        if (proto_get_string(req, PROTO_KEY_EMAIL, true, &email, &error) < 0 ||
            proto_get_string(req, PROTO_KEY_PASSWORD, true, &password, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        struct pending *p = pending_new(c, NULL);
        return park(c, api_login(api, email, password, on_api_reply, p, &p->call), p);
}

cJSON *commands_account(struct commands *ctx, struct control_client *c, const cJSON *req) {
        cJSON *reply = NULL;
        struct api *api = need_api(ctx, &reply);
        if (!api)
                return reply;
        struct pending *p = pending_new(c, PROTO_KEY_ACCOUNT);
        return park(c, api_account_show(api, on_api_reply, p, &p->call), p);
}

cJSON *commands_socket(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *action, *id, *name, *type, *username, *password;
        bool protected_;
        char *error = NULL;
        cJSON *reply = NULL;
        struct api *api = need_api(ctx, &reply);
        if (!api)
                return reply;
        if (proto_get_string(req, PROTO_KEY_ACTION, true, &action, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        if (streq(action, PROTO_ACTION_LS)) {
                struct pending *p = pending_new(c, PROTO_KEY_SOCKETS);
                return park(c, api_socket_list(api, on_api_reply, p, &p->call), p);
        }
        if (streq(action, PROTO_ACTION_DELETE)) {
                if (proto_get_string(req, PROTO_KEY_SOCKET_ID, true, &id, &error) < 0)
                        return proto_reply_error_take(PROTO_CODE_INVALID, error);
                struct pending *p = pending_new(c, NULL);
                return park(c, api_socket_delete(api, id, on_api_reply, p, &p->call), p);
        }
        if (!streq(action, PROTO_ACTION_CREATE))
                return proto_reply_error(PROTO_CODE_INVALID, "socket: unknown action (ls, create, delete)");
        if (proto_get_string(req, PROTO_KEY_NAME, true, &name, &error) < 0 ||
            proto_get_string(req, PROTO_KEY_TYPE, false, &type, &error) < 0 ||
            proto_get_bool(req, PROTO_KEY_PROTECTED, false, &protected_, &error) < 0 ||
            proto_get_string(req, PROTO_KEY_USERNAME, false, &username, &error) < 0 ||
            proto_get_string(req, PROTO_KEY_PASSWORD, false, &password, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        int t = type ? socket_type_from_string(type) : SOCKET_TYPE_HTTP;
        if (t < 0)
                return proto_reply_error(PROTO_CODE_INVALID, "\"type\" must be one of " SOCKET_TYPE_NAMES);
        if (protected_ && (!username || !password))
                return proto_reply_error(PROTO_CODE_INVALID, "a protected socket needs \"username\" and \"password\"");
        const struct api_binding_request spec = {
                .name = name, .display_name = name, .type = (enum socket_type) t,
                .protected_ = protected_, .username = username, .password = password,
        };
        struct pending *p = pending_new(c, PROTO_KEY_SOCKET);
        return park(c, api_socket_create(api, &spec, on_api_reply, p, &p->call), p);
}

cJSON *commands_tunnel(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *action, *sid, *tid;
        char *error = NULL;
        cJSON *reply = NULL;
        struct api *api = need_api(ctx, &reply);
        if (!api)
                return reply;
        if (proto_get_string(req, PROTO_KEY_ACTION, true, &action, &error) < 0 ||
            proto_get_string(req, PROTO_KEY_SOCKET_ID, true, &sid, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        if (streq(action, PROTO_ACTION_LS)) {
                struct pending *p = pending_new(c, PROTO_KEY_TUNNELS);
                return park(c, api_tunnel_list(api, sid, on_api_reply, p, &p->call), p);
        }
        if (streq(action, PROTO_ACTION_CREATE)) {
                struct pending *p = pending_new(c, PROTO_KEY_TUNNEL);
                return park(c, api_tunnel_create(api, sid, on_api_reply, p, &p->call), p);
        }
        if (!streq(action, PROTO_ACTION_DELETE))
                return proto_reply_error(PROTO_CODE_INVALID, "tunnel: unknown action (ls, create, delete)");
        if (proto_get_string(req, PROTO_KEY_TUNNEL_ID, true, &tid, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        struct pending *p = pending_new(c, NULL);
        return park(c, api_tunnel_delete(api, sid, tid, on_api_reply, p, &p->call), p);
}
