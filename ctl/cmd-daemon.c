/* The commands on the daemon itself: status, reload, metrics, and logs (recent events, or
 * a stream of them with -f). */
#include "commands.h"

#include <getopt.h>
#include <stdlib.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

#define LOGS_DEFAULT_LINES 100

/* ---- status, reload ------------------------------------------------------------------- */

int ctl_cmd_status(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL, *copy;
        const cJSON *status, *uptime;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_STATUS);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_STATUS, cJSON_IsObject, "an object", &reply, &status)) != 0)
                return r;
        if (ctx->json) {
                output_json(status);
                cJSON_Delete(reply);
                return 0;
        }
        /* People read "3h12m" faster than 11520. */
        copy = cJSON_Duplicate(status, true);
        uptime = cJSON_GetObjectItemCaseSensitive(copy, PROTO_KEY_UPTIME);
        if (cJSON_IsNumber(uptime) && uptime->valuedouble >= 0) {
                char buf[32];

                cJSON_ReplaceItemInObjectCaseSensitive(copy, PROTO_KEY_UPTIME,
                                                       cJSON_CreateString(format_duration((uint64_t) uptime->valuedouble, buf)));
        }
        /* "states: up 2, backoff 1": the states with bindings in them. */
        const cJSON *states = cJSON_GetObjectItemCaseSensitive(copy, PROTO_KEY_STATES), *i;
        if (cJSON_IsObject(states)) {
                _cleanup_(freep) char *line = xstrdup("");
                cJSON_ArrayForEach(i, states) {
                        if (!cJSON_IsNumber(i) || i->valuedouble <= 0 || !i->string)
                                continue;
                        char *n = xasprintf("%s%s%s %.0f", line, *line ? ", " : "", i->string, i->valuedouble);
                        free(line);
                        line = n;
                }
                cJSON_ReplaceItemInObjectCaseSensitive(copy, PROTO_KEY_STATES, cJSON_CreateString(*line ? line : "none"));
        }
        output_object(copy, stdout);
        cJSON_Delete(copy);
        cJSON_Delete(reply);
        return 0;
}

/* The Prometheus text as the daemon rendered it, byte for byte: node_exporter's textfile
 * collector reads it from a file (`mysocketctl metrics > DIR/mysocketd.prom.tmp && mv ...`). */
int ctl_cmd_metrics(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *text;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_METRICS);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_METRICS, cJSON_IsString, "a string", &reply, &text)) != 0)
                return r;
        if (ctx->json)
                ctl_print_result_json(reply);
        else
                fputs(text->valuestring, stdout);
        cJSON_Delete(reply);
        return fflush(stdout) == 0 ? 0 : 1;
}

static void print_names(const char *label, const cJSON *list) {
        const cJSON *i;
        bool first = true;

        if (cJSON_GetArraySize(list) == 0)
                return;
        printf("  %-10s", label);
        cJSON_ArrayForEach(i, list) {
                if (!cJSON_IsString(i))
                        continue;
                _cleanup_(freep) char *s = sanitize_text(i->valuestring, 256);
                printf("%s%s", first ? " " : ", ", s);
                first = false;
        }
        putchar('\n');
}

int ctl_cmd_reload(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *rl, *w;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_RELOAD);
        if ((r = ctl_call_for(ctx, req, NULL, NULL, NULL, &reply, NULL)) != 0)
                return r;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_WARNINGS))
                if (cJSON_IsString(w)) {
                        _cleanup_(freep) char *s = sanitize_text(w->valuestring, 4096);
                        fprintf(stderr, "warning: %s\n", s);
                }
        if (ctx->json)
                ctl_print_result_json(reply);
        else {
                rl = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_RELOAD);
                printf("Configuration reloaded.\n");
                print_names("added:", cJSON_GetObjectItemCaseSensitive(rl, PROTO_KEY_ADDED));
                print_names("removed:", cJSON_GetObjectItemCaseSensitive(rl, PROTO_KEY_REMOVED));
                print_names("changed:", cJSON_GetObjectItemCaseSensitive(rl, PROTO_KEY_CHANGED));
                print_names("unchanged:", cJSON_GetObjectItemCaseSensitive(rl, PROTO_KEY_UNCHANGED));
                print_names("retried:", cJSON_GetObjectItemCaseSensitive(rl, PROTO_KEY_RETRIED));
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- logs ----------------------------------------------------------------------------- */

int ctl_cmd_logs(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = {
                { "follow", no_argument, NULL, 'f' },
                { "lines", required_argument, NULL, 'n' },
                COMMON_OPTIONS,
                {}
        };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *events, *i;
        struct client cl = { .fd = -1 };
        unsigned lines = LOGS_DEFAULT_LINES;
        bool follow = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "hfn:", opts, NULL)) >= 0) {
                if (c == 'f')
                        follow = true;
                else if (c == 'n') {
                        if (parse_uint(optarg, 0, 100000, &lines) < 0)
                                return ctl_usage_error(ctx, "--lines: \"%s\" is not a number (0-100000)", optarg);
                } else if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        }
        if ((r = ctl_check_args(ctx, argc, argv, 0, 1, "")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_LOGS);
        if (optind < argc)
                cJSON_AddStringToObject(req, PROTO_KEY_NAME, argv[optind]);
        cJSON_AddBoolToObject(req, PROTO_KEY_FOLLOW, follow);
        cJSON_AddNumberToObject(req, PROTO_KEY_LINES, lines);

        if ((r = ctl_stream_open(ctx, &cl, req, &reply)) != 0)
                goto out;
        events = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_EVENTS);
        if (!cJSON_IsArray(events)) {
                r = ctl_malformed("\"events\" is not an array");
                goto out;
        }
        if (ctx->json && !follow)
                output_json(events);
        else
                cJSON_ArrayForEach(i, events)
                        if ((r = ctl_print_event(ctx, i)) != 0)
                                goto out;

        /* Following: one {"v":1,"event":{...}} line per event until the daemon closes. */
        while (follow) {
                cJSON_Delete(reply);
                reply = NULL;
                if ((r = client_read(&cl, -1, &reply)) != 0 || !reply)
                        goto out;
                if ((r = ctl_print_event_line(ctx, reply, NULL)) != 0)
                        goto out;
        }
out:
        cJSON_Delete(reply);
        client_close(&cl);
        return r;
}
