#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands-api.h"
#include "commands.h"
#include "api/api.h"
#include "localfwd.h"
#include "log.h"
#include "metrics.h"
#include "state.h"

struct command {
        const char *name;
        bool changes;           /* needs root, our uid or control_group */
        cJSON *(*fn)(struct commands *ctx, struct control_client *c, const cJSON *req);
};

static cJSON *binding_json(const struct binding *b) {
        struct proto_binding p;
        binding_to_proto(b, &p);
        cJSON *o = proto_binding_to_json(&p);
        proto_binding_clear(&p);
        return o;
}

static cJSON *strv_json(const struct strv *v) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < v->n; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(v->items[i]));
        return a;
}

static cJSON *cmd_list(struct commands *ctx, struct control_client *c, const cJSON *req) {
        cJSON *reply = proto_reply_ok();
        cJSON *a = cJSON_AddArrayToObject(reply, PROTO_KEY_BINDINGS);
        for (size_t i = 0; i < ctx->manager->n_bindings; i++)
                cJSON_AddItemToArray(a, binding_json(ctx->manager->bindings[i]));
        return reply;
}

static cJSON *cmd_show(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *name;
        char *error = NULL;
        if (proto_get_string(req, PROTO_KEY_NAME, true, &name, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        const struct binding *b = manager_find(ctx->manager, name);
        if (!b)
                return proto_reply_error_take(PROTO_CODE_NOT_FOUND, xasprintf("no binding named \"%s\"", name));
        cJSON *reply = proto_reply_ok();
        cJSON_AddItemToObject(reply, PROTO_KEY_BINDING, binding_json(b));
        return reply;
}

static struct binding_conf *binding_conf_from_add(const struct proto_add *a) {
        struct binding_conf *bc = xcalloc(1, sizeof(*bc));
        *bc = (struct binding_conf) {
                .name = xstrdup(a->name),
                .host = xstrdup(a->host ? a->host : BINDING_DEFAULT_HOST),
                .port = a->port,
                .type = a->type ? socket_type_from_string(a->type) : SOCKET_TYPE_HTTP,
                .display_name = xstrdup(a->display_name),
                .protected_ = a->protected_,
                .username = xstrdup(a->username),
                .password = xstrdup(a->password),
                .socket_id = xstrdup(a->socket_id),
                .remote_port = a->remote_port,
                .max_connections = (unsigned) a->max_connections,
                .tunnels = a->tunnels > 1 ? (unsigned) a->tunnels : 0,
                .remote_host = xstrdup(a->remote_host),
                .remote_port_any = a->remote_port_any,
                .edge_log = a->edge_log ? conf_edge_log_from_string(a->edge_log) : EDGE_LOG_AUTO,
                .source = BINDING_SOURCE_RUNTIME,
        };
        return bc;
}

/* Adds the binding described by o; returns the reply (ok with the binding, or the error). */
static cJSON *add_binding(struct commands *ctx, const cJSON *o, bool temporary) {
        struct proto_add a = { 0 };
        char *error = NULL;
        enum proto_code code;
        if (proto_add_from_json(o, &a, &error) < 0) {
                proto_add_clear(&a);
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        }
        struct binding_conf *bc = binding_conf_from_add(&a);
        proto_add_clear(&a);
        if (manager_add(ctx->manager, bc, temporary, &code, &error) < 0) {
                conf_binding_free(bc);
                return proto_reply_error_take(code, error);
        }
        cJSON *reply = proto_reply_ok();
        cJSON_AddItemToObject(reply, PROTO_KEY_BINDING, binding_json(manager_find(ctx->manager, bc->name)));
        return reply;
}

static const cJSON *binding_arg(const cJSON *req, cJSON **error) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(req, PROTO_KEY_BINDING);
        if (!cJSON_IsObject(o))
                *error = proto_reply_error(PROTO_CODE_INVALID, "\"binding\" must be an object");
        return cJSON_IsObject(o) ? o : NULL;
}

static cJSON *cmd_add(struct commands *ctx, struct control_client *c, const cJSON *req) {
        cJSON *error = NULL;
        const cJSON *o = binding_arg(req, &error);
        return o ? add_binding(ctx, o, false) : error;
}

static cJSON *cmd_remove(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *name;
        bool purge;
        char *error = NULL;
        enum proto_code code;
        if (proto_get_string(req, PROTO_KEY_NAME, true, &name, &error) < 0 ||
            proto_get_bool(req, PROTO_KEY_PURGE, false, &purge, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        _cleanup_(freep) char *copy = xstrdup(name);
        if (manager_remove(ctx->manager, copy, purge, &code, &error) < 0)
                return proto_reply_error_take(code, error);
        cJSON *reply = proto_reply_ok();
        cJSON_AddStringToObject(reply, PROTO_KEY_REMOVED, copy);
        return reply;
}

static cJSON *cmd_status(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const struct manager *m = ctx->manager;
        unsigned up, failed;
        manager_count(m, &up, &failed);
        cJSON *reply = proto_reply_ok();
        cJSON *s = cJSON_AddObjectToObject(reply, PROTO_KEY_STATUS);
        cJSON_AddStringToObject(s, PROTO_KEY_VERSION, PACKAGE_VERSION);
        cJSON_AddNumberToObject(s, PROTO_KEY_PID, getpid());
        proto_add_time_or_null(s, PROTO_KEY_STARTED, m->started);
        cJSON_AddNumberToObject(s, PROTO_KEY_UPTIME, (double) ((now_realtime_usec() - m->started) / USEC_PER_SEC));
        cJSON_AddStringToObject(s, PROTO_KEY_MODE, m->config->api ? PROTO_MODE_API : PROTO_MODE_DIRECT);
        cJSON_AddStringToObject(s, PROTO_KEY_CONFIG, m->config->path);
        cJSON_AddStringToObject(s, PROTO_KEY_CONTROL_SOCKET, ctx->control_socket);
        cJSON_AddStringToObject(s, PROTO_KEY_STATE_DIR, m->config->state_dir);
        proto_add_time_or_null(s, PROTO_KEY_TOKEN_EXPIRY, m->api ? api_token_expiry(m->api) : 0);
        if (m->config->ssh_proxy) {
                _cleanup_(freep) char *proxy = conf_proxy_display(m->config->ssh_proxy);
                cJSON_AddStringToObject(s, PROTO_KEY_PROXY, proxy);
        } else
                cJSON_AddNullToObject(s, PROTO_KEY_PROXY);
        cJSON_AddNumberToObject(s, PROTO_KEY_BINDINGS, (double) m->n_bindings);
        cJSON_AddNumberToObject(s, PROTO_KEY_UP, up);
        cJSON_AddNumberToObject(s, PROTO_KEY_FAILED, failed);
        unsigned per_state[_BINDING_STATE_MAX] = { 0 };
        for (size_t i = 0; i < m->n_bindings; i++)
                per_state[m->bindings[i]->state]++;
        cJSON *states = cJSON_AddObjectToObject(s, PROTO_KEY_STATES);
        for (int st = 0; st < _BINDING_STATE_MAX; st++)
                cJSON_AddNumberToObject(states, binding_state_to_string(st), per_state[st]);
        return reply;
}

/* The text /metrics serves, for node_exporter's textfile collector without a listener. */
static cJSON *cmd_metrics(struct commands *ctx, struct control_client *c, const cJSON *req) {
        _cleanup_(freep) char *text = metrics_render(ctx->manager);
        cJSON *reply = proto_reply_ok();
        cJSON_AddStringToObject(reply, PROTO_KEY_METRICS, text);
        return reply;
}

static cJSON *cmd_reload(struct commands *ctx, struct control_client *c, const cJSON *req) {
        struct reload_result res = { 0 };
        struct strv errors = { 0 };
        cJSON *reply;
        if (manager_reload(ctx->manager, &res, &errors) < 0) {
                reply = proto_reply_error(PROTO_CODE_INVALID,
                                          "config not reloaded: %zu error%s; the running config stays in force",
                                          errors.n, errors.n == 1 ? "" : "s");
                cJSON_AddItemToObject(reply, PROTO_KEY_ERRORS, strv_json(&errors));
        } else {
                reply = proto_reply_ok();
                cJSON *r = cJSON_AddObjectToObject(reply, PROTO_KEY_RELOAD);
                cJSON_AddItemToObject(r, PROTO_KEY_ADDED, strv_json(&res.added));
                cJSON_AddItemToObject(r, PROTO_KEY_REMOVED, strv_json(&res.removed));
                cJSON_AddItemToObject(r, PROTO_KEY_CHANGED, strv_json(&res.changed));
                cJSON_AddItemToObject(r, PROTO_KEY_UNCHANGED, strv_json(&res.unchanged));
                cJSON_AddItemToObject(r, PROTO_KEY_RETRIED, strv_json(&res.retried));
        }
        cJSON_AddItemToObject(reply, PROTO_KEY_WARNINGS, strv_json(&res.warnings));
        manager_reload_result_clear(&res);
        strv_clear(&errors);
        return reply;
}

static cJSON *event_json(const struct eventlog_entry *e) {
        struct proto_event pe = {
                .time = e->time,
                .priority = (char *) log_level_to_string(e->priority),
                .binding = e->binding,
                .event = e->event,
                .message = e->message,
        };
        return proto_event_to_json(&pe);
}

static void count_event(const struct eventlog_entry *e, void *userdata) {
        (*(unsigned *) userdata)++;
}

static void collect_event(const struct eventlog_entry *e, void *userdata) {
        cJSON_AddItemToArray(userdata, event_json(e));
}

/* A follower of `logs -f` or `connect`: which binding it wants, and where to send. */
struct follower {
        struct control_client *client;
        struct eventlog *eventlog;
        char *binding;
        struct manager *remove_on_close;        /* connect: the binding dies with the client */
};

static void follow_event(const struct eventlog_entry *e, void *userdata) {
        struct follower *f = userdata;
        if (f->binding && !streq(f->binding, e->binding))
                return;
        _cleanup_(proto_json_freep) cJSON *line = proto_event_line(event_json(e));
        control_client_send(f->client, line);
}

static void follower_closed(struct control_client *c, void *userdata) {
        struct follower *f = userdata;
        eventlog_unsubscribe(f->eventlog, f);
        if (f->remove_on_close) {
                enum proto_code code;
                char *error = NULL;
                log_binding(LOG_INFO, f->binding, "connect", "quick connect client went away; removing");
                if (manager_remove(f->remove_on_close, f->binding, true, &code, &error) < 0) {
                        log_binding(LOG_WARNING, f->binding, "connect", "%s", error);
                        free(error);
                }
        }
        free(f->binding);
        free(f);
}

static cJSON *dropped_notice(uint64_t n) {
        _cleanup_(freep) char *msg = xasprintf("%" PRIu64 " event%s dropped: this reader fell behind", n,
                                               n == 1 ? "" : "s");
        struct proto_event pe = { .time = now_realtime_usec(),
                                  .priority = (char *) log_level_to_string(LOG_WARNING),
                                  .event = (char *) PROTO_EVENT_DROPPED, .message = msg };
        return proto_event_line(proto_event_to_json(&pe));
}

static cJSON *stream_refusal(int r) {
        return proto_reply_error(PROTO_CODE_UNAVAILABLE, r == -EUSERS
                                 ? "too many streams open (%u); try again later"
                                 : "too many streams open for your uid (%u); close some",
                                 r == -EUSERS ? CONTROL_MAX_STREAMS : CONTROL_MAX_STREAMS_PER_UID);
}

/* Sends `first` (consumed) and streams to c for f, or returns the refusal (and frees f). */
static cJSON *start_follow(struct commands *ctx, struct control_client *c, cJSON *first, struct follower *f) {
        int r = control_client_stream(c, first, follower_closed, dropped_notice, f);
        cJSON_Delete(first);
        if (r < 0) {
                free(f->binding);
                free(f);
                return stream_refusal(r);
        }
        eventlog_subscribe(ctx->eventlog, follow_event, f);
        return NULL;
}

static cJSON *cmd_logs(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *name;
        bool follow;
        uint64_t lines;
        char *error = NULL;
        if (proto_get_string(req, PROTO_KEY_NAME, false, &name, &error) < 0 ||
            proto_get_bool(req, PROTO_KEY_FOLLOW, false, &follow, &error) < 0 ||
            proto_get_uint(req, PROTO_KEY_LINES, EVENTLOG_SIZE, 100, &lines, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        /* Refused before the reply of up to 1000 events is built: a crowd of refusals is cheap. */
        int r = follow ? control_client_may_stream(c) : 0;
        if (r < 0)
                return stream_refusal(r);
        if (name && !manager_find(ctx->manager, name)) {
                /* A binding removed a moment ago still has its story in the ring. */
                unsigned n = 0;
                eventlog_foreach(ctx->eventlog, name, 1, count_event, &n);
                if (n == 0)
                        return proto_reply_error_take(PROTO_CODE_NOT_FOUND, xasprintf("no binding named \"%s\"", name));
        }
        cJSON *reply = proto_reply_ok();
        eventlog_foreach(ctx->eventlog, name, (unsigned) lines, collect_event,
                         cJSON_AddArrayToObject(reply, PROTO_KEY_EVENTS));
        if (!follow)
                return reply;
        struct follower *f = xcalloc(1, sizeof(*f));
        *f = (struct follower) { .client = c, .eventlog = ctx->eventlog, .binding = xstrdup(name) };
        return start_follow(ctx, c, reply, f);
}

/* Quick connect: a temporary binding (never in the state dir) whose events stream to the
 * client; when the client goes (Ctrl-C, kill -9), the binding and its socket go too. */
static cJSON *cmd_connect(struct commands *ctx, struct control_client *c, const cJSON *req) {
        cJSON *error = NULL;
        const cJSON *o = binding_arg(req, &error);
        if (!o)
                return error;
        int r = control_client_may_stream(c);
        if (r < 0)
                return stream_refusal(r);
        /* The daemon names it, never reusing a name in its lifetime: the follower removes
         * its binding by name when the client goes, and must not hit a newer namesake. */
        _cleanup_(proto_json_freep) cJSON *copy = cJSON_Duplicate(o, true);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, PROTO_KEY_NAME);
        while (!cJSON_GetObjectItemCaseSensitive(copy, PROTO_KEY_NAME)) {
                _cleanup_(freep) char *name = xasprintf(CONNECT_NAME_PREFIX "%u", ++ctx->connect_seq);
                if (!manager_find(ctx->manager, name))
                        cJSON_AddStringToObject(copy, PROTO_KEY_NAME, name);
        }
        cJSON *reply = add_binding(ctx, copy, true);
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_OK)))
                return reply;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(copy, PROTO_KEY_NAME));
        struct follower *f = xcalloc(1, sizeof(*f));
        *f = (struct follower) {
                .client = c, .eventlog = ctx->eventlog, .binding = xstrdup(name),
                .remove_on_close = ctx->manager,
        };
        cJSON *refused = start_follow(ctx, c, reply, f);
        if (refused) {
                /* Nobody would hold the binding: it goes at once. */
                enum proto_code code;
                char *why = NULL;
                if (manager_remove(ctx->manager, name, true, &code, &why) < 0)
                        free(why);
        }
        return refused;
}

/* ---- local forwards -------------------------------------------------------------------- */

static cJSON *forward_json(const struct localfwds *s, size_t i) {
        struct proto_forward p;
        localfwd_to_proto(s, i, &p);
        cJSON *o = proto_forward_to_json(&p);
        proto_forward_clear(&p);
        return o;
}

static cJSON *cmd_forward_list(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const struct localfwds *s = ctx->manager->forwards;
        (void) c, (void) req;
        cJSON *reply = proto_reply_ok();
        cJSON *a = cJSON_AddArrayToObject(reply, PROTO_KEY_FORWARDS);
        for (size_t i = 0; i < localfwd_count(s); i++)
                cJSON_AddItemToArray(a, forward_json(s, i));
        return reply;
}

static cJSON *cmd_forward_add(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(req, PROTO_KEY_FORWARD);
        const char *name, *listen, *target;
        char *error = NULL;
        enum proto_code code;
        (void) c;
        if (!cJSON_IsObject(o))
                return proto_reply_error(PROTO_CODE_INVALID, "\"%s\" must be an object", PROTO_KEY_FORWARD);
        if (proto_get_string(o, PROTO_KEY_NAME, true, &name, &error) < 0 ||
            proto_get_string(o, PROTO_KEY_LISTEN, true, &listen, &error) < 0 ||
            proto_get_string(o, PROTO_KEY_TARGET, true, &target, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        if (!binding_name_valid(name))
                return proto_reply_error(PROTO_CODE_INVALID, "\"%s\" is not a valid forward name (" BINDING_NAME_RULE ")",
                                         name);
        struct forward_conf *fc = xcalloc(1, sizeof(*fc));
        fc->name = xstrdup(name);
        fc->listen = xstrdup(listen);
        if (conf_forward_parse_target(target, &fc->target_host, &fc->target_port, &error) < 0) {
                conf_forward_free(fc);
                return proto_reply_error_take(PROTO_CODE_INVALID, xasprintf("[forward \"%s\"] target: %s", name, error));
        }
        if (localfwd_add(ctx->manager->forwards, fc, &code, &error) < 0) {
                conf_forward_free(fc);
                return proto_reply_error_take(code, error);
        }
        size_t i;
        cJSON *reply = proto_reply_ok();
        if (localfwd_find(ctx->manager->forwards, name, &i) == 0)
                cJSON_AddItemToObject(reply, PROTO_KEY_FORWARD, forward_json(ctx->manager->forwards, i));
        return reply;
}

static cJSON *cmd_forward_remove(struct commands *ctx, struct control_client *c, const cJSON *req) {
        const char *name;
        char *error = NULL;
        enum proto_code code;
        (void) c;
        if (proto_get_string(req, PROTO_KEY_NAME, true, &name, &error) < 0)
                return proto_reply_error_take(PROTO_CODE_INVALID, error);
        _cleanup_(freep) char *copy = xstrdup(name);
        if (localfwd_remove(ctx->manager->forwards, copy, &code, &error) < 0)
                return proto_reply_error_take(code, error);
        cJSON *reply = proto_reply_ok();
        cJSON_AddStringToObject(reply, PROTO_KEY_REMOVED, copy);
        return reply;
}

static const struct command commands[] = {
        { PROTO_CMD_LIST,    false, cmd_list },
        { PROTO_CMD_SHOW,    false, cmd_show },
        { PROTO_CMD_STATUS,  false, cmd_status },
        { PROTO_CMD_LOGS,    false, cmd_logs },
        { PROTO_CMD_METRICS, false, cmd_metrics },
        { PROTO_CMD_ADD,     true,  cmd_add },
        { PROTO_CMD_REMOVE,  true,  cmd_remove },
        { PROTO_CMD_RELOAD,  true,  cmd_reload },
        { PROTO_CMD_CONNECT, true,  cmd_connect },
        { PROTO_CMD_LOGIN,   true,  commands_login },
        { PROTO_CMD_ACCOUNT, true,  commands_account },
        { PROTO_CMD_SOCKET,  true,  commands_socket },
        { PROTO_CMD_TUNNEL,  true,  commands_tunnel },
        { PROTO_CMD_FORWARD_LIST,   false, cmd_forward_list },
        { PROTO_CMD_FORWARD_ADD,    true,  cmd_forward_add },
        { PROTO_CMD_FORWARD_REMOVE, true,  cmd_forward_remove },
};

static bool privileged(const struct commands *ctx, const struct control_client *c) {
        uid_t uid = control_client_uid(c);
        return uid == 0 || uid == geteuid() || control_client_in_group(c, ctx->manager->control_gid);
}

cJSON *commands_dispatch(struct control_client *c, const cJSON *req, const char *cmd, void *userdata) {
        struct commands *ctx = userdata;
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                if (!streq(commands[i].name, cmd))
                        continue;
                if (commands[i].changes && !privileged(ctx, c)) {
                        log_full(LOG_NOTICE, &(struct log_fields) { .event = "permission" },
                                 "control: refused \"%s\" from uid %u (not root, not uid %u, not in control_group)",
                                 cmd, (unsigned) control_client_uid(c), (unsigned) geteuid());
                        return proto_reply_error(PROTO_CODE_PERMISSION,
                                                 "permission denied: \"%s\" needs root or membership of the control group", cmd);
                }
                return commands[i].fn(ctx, c, req);
        }
        _cleanup_(freep) char *safe = sanitize_text(cmd, 64);
        return proto_reply_error(PROTO_CODE_INVALID, "unknown command \"%s\"", safe);
}
