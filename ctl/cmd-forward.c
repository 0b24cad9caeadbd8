/* Local forwards (SPEC §10): forward add NAME --listen H:P --target H:P, forward ls,
 * forward rm NAME. Builds the requests and prints the replies; the wire shapes are in
 * docs/PROTOCOL.md. */
#include "commands.h"

#include <getopt.h>
#include <stdlib.h>

#include "output.h"
#include "protocol.h"
#include "util.h"

static char *number_text(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? xasprintf("%.0f", v->valuedouble) : xstrdup("-");
}

static void forward_ls_print(const cJSON *forwards) {
        static const char *const headers[] = {
                "NAME", "STATE", "LISTEN", "TARGET", "CONNS", "TOTAL", "REFUSED", "IN", "OUT", "ERROR" };
        const cJSON *f;
        if (cJSON_GetArraySize(forwards) == 0) {
                printf("No forwards.\n");
                return;
        }
        struct table *t = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(f, forwards) {
                _cleanup_(freep) char *active = number_text(f, PROTO_KEY_CONNECTIONS_ACTIVE),
                        *total = number_text(f, PROTO_KEY_CONNECTIONS_TOTAL),
                        *refused = number_text(f, PROTO_KEY_CONNECTIONS_REFUSED),
                        *in = number_text(f, PROTO_KEY_BYTES_IN), *out = number_text(f, PROTO_KEY_BYTES_OUT);
                const char *error = proto_str_of(f, PROTO_KEY_LAST_ERROR);
                if (!error)
                        error = proto_str_of(f, PROTO_KEY_LAST_REFUSAL);
                table_add_row(t, (const char *const[]) {
                        proto_str_of(f, PROTO_KEY_NAME), proto_str_of(f, PROTO_KEY_STATE), proto_str_of(f, PROTO_KEY_LISTEN),
                        proto_str_of(f, PROTO_KEY_TARGET), active, total, refused, in, out, error ? error : "-" });
        }
        table_print(t, stdout, true);
        table_free(t);
}

static int forward_ls(struct ctl_context *ctx) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new(PROTO_CMD_FORWARD_LIST);
        cJSON *reply = NULL;
        const cJSON *forwards;
        int r = ctl_call_for(ctx, req, PROTO_KEY_FORWARDS, cJSON_IsArray, "an array", &reply, &forwards);
        if (r != 0)
                return r;
        if (ctx->json)
                output_json(forwards);
        else
                forward_ls_print(forwards);
        cJSON_Delete(reply);
        return 0;
}

static int forward_add(struct ctl_context *ctx, const char *name, const char *listen, const char *target) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new(PROTO_CMD_FORWARD_ADD);
        cJSON *reply = NULL;
        const cJSON *f;
        if (!listen || !target)
                return ctl_usage_error(ctx, "add: needs --listen HOST:PORT and --target HOST:PORT");
        cJSON *o = cJSON_AddObjectToObject(req, PROTO_KEY_FORWARD);
        cJSON_AddStringToObject(o, PROTO_KEY_NAME, name);
        cJSON_AddStringToObject(o, PROTO_KEY_LISTEN, listen);
        cJSON_AddStringToObject(o, PROTO_KEY_TARGET, target);
        int r = ctl_call_for(ctx, req, PROTO_KEY_FORWARD, cJSON_IsObject, "an object", &reply, &f);
        if (r != 0)
                return r;
        if (ctx->json)
                output_json(f);
        else
                printf("forward %s added: %s -> %s (through the relay)\n", name, listen, target);
        cJSON_Delete(reply);
        return 0;
}

static int forward_rm(struct ctl_context *ctx, const char *name) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new(PROTO_CMD_FORWARD_REMOVE);
        cJSON *reply = NULL;
        cJSON_AddStringToObject(req, PROTO_KEY_NAME, name);
        int r = ctl_call_for(ctx, req, NULL, NULL, NULL, &reply, NULL);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_print_result_json(reply);
        else
                printf("forward %s removed\n", name);
        cJSON_Delete(reply);
        return 0;
}

int ctl_cmd_forward(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_LISTEN = _CTL_OPT_BINDING_MAX, OPT_TARGET };
        static const struct option opts[] = {
                { "listen", required_argument, NULL, OPT_LISTEN },
                { "target", required_argument, NULL, OPT_TARGET },
                COMMON_OPTIONS,
                {}
        };
        const char *listen = NULL, *target = NULL, *action;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == OPT_LISTEN)
                        listen = optarg;
                else if (c == OPT_TARGET)
                        target = optarg;
                else if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        }
        if (optind >= argc)
                return ctl_usage_error(ctx, "missing action (add, ls, rm)");
        action = argv[optind];
        int left = argc - optind - 1;
        bool is_add = streq(action, "add");
        if (!is_add && (listen || target))
                return ctl_usage_error(ctx, "--listen and --target are for 'add'");
        if (streq(action, "ls") || streq(action, "list")) {
                if (left != 0)
                        return ctl_usage_error(ctx, "ls takes no arguments");
                return forward_ls(ctx);
        }
        if (!is_add && !streq(action, "rm") && !streq(action, "remove"))
                return ctl_usage_error(ctx, "unknown action \"%s\" (add, ls, rm)", action);
        if (left != 1)
                return ctl_usage_error(ctx, "%s: needs exactly one NAME", action);
        const char *name = argv[optind + 1];
        if (!binding_name_valid(name))
                return ctl_usage_error(ctx, "\"%s\" is not a valid forward name (" BINDING_NAME_RULE ")", name);
        return is_add ? forward_add(ctx, name, listen, target) : forward_rm(ctx, name);
}
