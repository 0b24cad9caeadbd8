/* mysocketctl's subcommands. Each builds one request, sends it and prints the reply;
 * field names come from common/protocol.c, so the two sides cannot disagree. */
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "commands-api.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

#define WAIT_DEFAULT_SEC 60
#define WAIT_POLL_MS 200
#define LOGS_DEFAULT_LINES 100

int ctl_print_help(const struct ctl_context *ctx) {
        const struct ctl_command *c = ctx->cmd;

        printf("Usage: mysocketctl [-s SOCKET] [--json] %s%s%s\n\n%s\n", c->name, *c->usage ? " " : "",
               c->usage, c->summary);
        if (c->alias)
                printf("Alias: %s\n", c->alias);
        if (c->help && *c->help)
                printf("\n%s", c->help);
        return 0;
}

int ctl_usage_error(const struct ctl_context *ctx, const char *fmt, ...) {
        va_list ap;

        if (fmt) {
                fprintf(stderr, "mysocketctl %s: ", ctx->cmd->name);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        fprintf(stderr, "Try 'mysocketctl %s --help'.\n", ctx->cmd->name);
        return CTL_EXIT_USAGE;
}

/* Handles --help, --json and getopt's errors: returns -1 to go on, else the exit status. */
int ctl_common_option(struct ctl_context *ctx, int c) {
        switch (c) {
        case CTL_OPT_HELP:
                return ctl_print_help(ctx);
        case CTL_OPT_JSON:
                ctx->json = true;
                return -1;
        default:        /* getopt_long has already said what was wrong */
                return ctl_usage_error(ctx, NULL);
        }
}

/* The positional arguments left after the options must number between min and max. */
int ctl_check_args(const struct ctl_context *ctx, int argc, char **argv, int min, int max, const char *what) {
        int n = argc - optind;

        if (n < min)
                return ctl_usage_error(ctx, "missing %s", what);
        if (n > max)
                return ctl_usage_error(ctx, "unexpected argument \"%s\"", argv[optind + max]);
        return -1;
}

/* Prints the reply without its envelope ("v", "ok"): the result of remove and reload. */
void ctl_print_result_json(const cJSON *reply) {
        cJSON *copy = cJSON_Duplicate(reply, true);

        cJSON_DeleteItemFromObjectCaseSensitive(copy, "v");
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "ok");
        output_json(copy);
        cJSON_Delete(copy);
}

int ctl_malformed(const char *what) {
        fprintf(stderr, "mysocketctl: ctl_malformed reply from mysocketd: %s\n", what);
        return CTL_EXIT_FAILURE;
}

/* ---- list, show ----------------------------------------------------------------------- */

static char *remote_text(const struct proto_binding *b) {
        if (b->public_url)
                return xstrdup(b->public_url);
        if (b->relay_port)
                return xasprintf("relay:%u", b->relay_port);
        if (b->remote_port)
                return xasprintf("remote:%u", b->remote_port);
        return NULL;
}

static char *since_text(const struct proto_binding *b) {
        uint64_t now = now_realtime_usec();
        char buf[32];

        if (streq(b->state, "up") && b->connected_since)
                return xstrdup(format_duration(now > b->connected_since ? (now - b->connected_since) / 1000000 : 0, buf));
        if (streq(b->state, "backoff") && b->next_attempt)
                return xasprintf("next in %s",
                                 format_duration(b->next_attempt > now ? (b->next_attempt - now + 999999) / 1000000 : 0, buf));
        return NULL;
}

static void add_binding_row(struct table *t, const struct proto_binding *b) {
        _cleanup_(freep) char *local = NULL, *remote = NULL, *since = NULL, *conns = NULL, *reconn = NULL;
        bool v6 = b->host && strchr(b->host, ':');

        local = xasprintf("%s%s%s:%u", v6 ? "[" : "", b->host ?: "?", v6 ? "]" : "", b->port);
        remote = remote_text(b);
        since = since_text(b);
        conns = xasprintf("%" PRIu64 "/%" PRIu64, b->connections_active, b->connections_total);
        reconn = xasprintf("%" PRIu64, b->reconnects);
        table_add_row(t, (const char *const[]) {
                b->name, b->state, b->type, local, remote, since, conns, reconn, b->last_error });
}

static int cmd_list(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        static const char *const headers[] = {
                "NAME", "STATE", "TYPE", "LOCAL", "REMOTE", "SINCE", "CONNS", "RECONN", "ERROR" };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *bindings, *i;
        struct table *t = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new("list");
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        bindings = cJSON_GetObjectItemCaseSensitive(reply, "bindings");
        if (!cJSON_IsArray(bindings)) {
                r = ctl_malformed("\"bindings\" is not an array");
                goto out;
        }
        if (ctx->json) {
                output_json(bindings);
                goto out;
        }
        if (cJSON_GetArraySize(bindings) == 0) {
                printf("No bindings.\n");
                goto out;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(i, bindings) {
                struct proto_binding b = {};
                char *error = NULL;

                if (proto_binding_from_json(i, &b, &error) < 0) {
                        r = ctl_malformed(error);
                        free(error);
                        goto out;
                }
                add_binding_row(t, &b);
                proto_binding_clear(&b);
        }
        table_print(t, stdout, true);
out:
        table_free(t);
        cJSON_Delete(reply);
        return r;
}

/* Asks for one binding; *ret owns the whole reply, *binding points into it. */
static int fetch_binding(const struct ctl_context *ctx, const char *name, cJSON **ret, const cJSON **binding) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new("show");
        cJSON *reply = NULL;
        const cJSON *b;
        int r;

        cJSON_AddStringToObject(req, "name", name);
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        b = cJSON_GetObjectItemCaseSensitive(reply, "binding");
        if (!cJSON_IsObject(b)) {
                cJSON_Delete(reply);
                return ctl_malformed("\"binding\" is not an object");
        }
        *ret = reply;
        *binding = b;
        return 0;
}

static int cmd_show(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        cJSON *reply = NULL;
        const cJSON *b;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                return r;

        r = fetch_binding(ctx, argv[optind], &reply, &b);
        if (r != 0)
                return r;
        if (ctx->json)
                output_json(b);
        else
                output_object(b, stdout);
        cJSON_Delete(reply);
        return 0;
}

/* ---- add ------------------------------------------------------------------------------ */

static void print_progress(const struct proto_binding *b) {
        _cleanup_(freep) char *name = sanitize_text(b->name ?: "?", 256);
        _cleanup_(freep) char *err = b->last_error ? sanitize_text(b->last_error, 1024) : NULL;
        _cleanup_(freep) char *since = since_text(b);

        if (streq(b->state, "backoff"))
                fprintf(stderr, "%s: backoff%s%s%s%s\n", name, err ? ": " : "", err ?: "",
                        since ? ", " : "", since ?: "");
        else
                fprintf(stderr, "%s: %s\n", name, b->state ?: "?");
}

/* Polls `show` until the binding is up, failed, or the time is over. *final owns the last
 * binding object seen (for --json). */
static int wait_until_up(const struct ctl_context *ctx, const char *name, unsigned seconds, cJSON **final) {
        uint64_t deadline = now_monotonic_usec() + (uint64_t) seconds * 1000000;
        _cleanup_(freep) char *last_state = NULL;
        int r;

        for (;;) {
                struct proto_binding b = {};
                cJSON *reply = NULL;
                const cJSON *o;
                char *error = NULL;

                r = fetch_binding(ctx, name, &reply, &o);
                if (r != 0)
                        return r;
                if (proto_binding_from_json(o, &b, &error) < 0) {
                        cJSON_Delete(reply);
                        r = ctl_malformed(error);
                        free(error);
                        return r;
                }
                cJSON_Delete(*final);
                *final = cJSON_Duplicate(o, true);
                cJSON_Delete(reply);

                if (!streq(b.state, last_state)) {
                        print_progress(&b);
                        free(last_state);
                        last_state = xstrdup(b.state);
                }
                if (streq(b.state, "up")) {
                        proto_binding_clear(&b);
                        return 0;
                }
                if (streq(b.state, "failed")) {
                        _cleanup_(freep) char *err = sanitize_text(b.last_error ?: "no reason given", 1024);
                        fprintf(stderr, "mysocketctl: %s failed: %s\n", name, err);
                        proto_binding_clear(&b);
                        return CTL_EXIT_FAILURE;
                }
                if (now_monotonic_usec() >= deadline) {
                        _cleanup_(freep) char *err = b.last_error ? sanitize_text(b.last_error, 1024) : NULL;
                        fprintf(stderr, "mysocketctl: %s is not up after %u s (state: %s%s%s)\n", name, seconds,
                                b.state ?: "?", err ? "; last error: " : "", err ?: "");
                        proto_binding_clear(&b);
                        return CTL_EXIT_FAILURE;
                }
                proto_binding_clear(&b);
                nanosleep(&(struct timespec) { .tv_nsec = WAIT_POLL_MS * 1000000L }, NULL);
        }
}

static int cmd_add(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_PORT = 0x200, OPT_HOST, OPT_TYPE, OPT_NAME, OPT_PROTECTED, OPT_USERNAME,
               OPT_PASSWORD, OPT_SOCKET_ID, OPT_REMOTE_PORT, OPT_WAIT };
        static const struct option opts[] = {
                { "port", required_argument, NULL, OPT_PORT },
                { "host", required_argument, NULL, OPT_HOST },
                { "type", required_argument, NULL, OPT_TYPE },
                { "name", required_argument, NULL, OPT_NAME },
                { "protected", no_argument, NULL, OPT_PROTECTED },
                { "username", required_argument, NULL, OPT_USERNAME },
                { "password", required_argument, NULL, OPT_PASSWORD },
                { "socket-id", required_argument, NULL, OPT_SOCKET_ID },
                { "remote-port", required_argument, NULL, OPT_REMOTE_PORT },
                { "wait", optional_argument, NULL, OPT_WAIT },
                COMMON_OPTIONS,
                {}
        };
        struct proto_add a = {};
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL, *final = NULL;
        const cJSON *b;
        unsigned wait = 0;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case OPT_PORT:
                        if (parse_port(optarg, &a.port) < 0) {
                                r = ctl_usage_error(ctx, "--port: \"%s\" is not a port (1-65535)", optarg);
                                goto out;
                        }
                        break;
                case OPT_HOST:
                        free(a.host);
                        a.host = xstrdup(optarg);
                        break;
                case OPT_TYPE:
                        if (!proto_type_valid(optarg)) {
                                r = ctl_usage_error(ctx, "--type: \"%s\" is not one of http, https, tcp, tls", optarg);
                                goto out;
                        }
                        free(a.type);
                        a.type = xstrdup(optarg);
                        break;
                case OPT_NAME:
                        free(a.display_name);
                        a.display_name = xstrdup(optarg);
                        break;
                case OPT_PROTECTED:
                        a.protected_ = true;
                        break;
                case OPT_USERNAME:
                        free(a.username);
                        a.username = xstrdup(optarg);
                        break;
                case OPT_PASSWORD:
                        free(a.password);
                        a.password = xstrdup(optarg);
                        break;
                case OPT_SOCKET_ID:
                        free(a.socket_id);
                        a.socket_id = xstrdup(optarg);
                        break;
                case OPT_REMOTE_PORT:
                        if (parse_port(optarg, &a.remote_port) < 0) {
                                r = ctl_usage_error(ctx, "--remote-port: \"%s\" is not a port (1-65535)", optarg);
                                goto out;
                        }
                        break;
                case OPT_WAIT:
                        wait = WAIT_DEFAULT_SEC;
                        if (optarg && parse_uint(optarg, 1, 86400, &wait) < 0) {
                                r = ctl_usage_error(ctx, "--wait: \"%s\" is not a number of seconds (1-86400)", optarg);
                                goto out;
                        }
                        break;
                default:
                        if ((r = ctl_common_option(ctx, c)) >= 0)
                                goto out;
                }
        }
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                goto out;
        if (!binding_name_valid(argv[optind])) {
                r = ctl_usage_error(ctx, "\"%s\" is not a valid binding name (letters, digits, '_', '.', '-'; "
                                "at most %d; starting with a letter or digit)", argv[optind], BINDING_NAME_MAX);
                goto out;
        }
        if (a.port == 0) {
                r = ctl_usage_error(ctx, "missing --port PORT");
                goto out;
        }
        a.name = xstrdup(argv[optind]);

        req = proto_request_new("add");
        cJSON_AddItemToObject(req, "binding", proto_add_to_json(&a));
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                goto out;
        b = cJSON_GetObjectItemCaseSensitive(reply, "binding");
        if (!cJSON_IsObject(b)) {
                r = ctl_malformed("\"binding\" is not an object");
                goto out;
        }

        if (wait > 0) {
                r = wait_until_up(ctx, a.name, wait, &final);
                if (r == 0 && !ctx->json) {
                        const cJSON *url = cJSON_GetObjectItemCaseSensitive(final, "public_url");
                        _cleanup_(freep) char *u = cJSON_IsString(url) ? sanitize_text(url->valuestring, 1024) : NULL;
                        printf("%s is up%s%s\n", a.name, u ? ": " : ".", u ?: "");
                } else if (r == 0)
                        output_json(final);
                goto out;
        }
        if (ctx->json)
                output_json(b);
        else {
                const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
                printf("Added %s (state: %s). Follow it with 'mysocketctl logs %s -f'.\n", a.name,
                       cJSON_IsString(state) ? state->valuestring : "?", a.name);
        }
out:
        cJSON_Delete(final);
        cJSON_Delete(reply);
        proto_add_clear(&a);
        return r;
}

/* ---- remove, status, reload ----------------------------------------------------------- */

static int cmd_remove(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { { "purge", no_argument, NULL, 'p' }, COMMON_OPTIONS, {} };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        bool purge = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == 'p')
                        purge = true;
                else if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        }
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                return r;

        req = proto_request_new("remove");
        cJSON_AddStringToObject(req, "name", argv[optind]);
        cJSON_AddBoolToObject(req, "purge", purge);
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_print_result_json(reply);
        else {
                _cleanup_(freep) char *name = sanitize_text(argv[optind], 256);
                printf("Removed %s%s.\n", name, purge ? " (and its socket at the API, if the daemon created it)" : "");
        }
        cJSON_Delete(reply);
        return 0;
}

static int cmd_status(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL, *copy;
        const cJSON *status, *uptime;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new("status");
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        status = cJSON_GetObjectItemCaseSensitive(reply, "status");
        if (!cJSON_IsObject(status)) {
                cJSON_Delete(reply);
                return ctl_malformed("\"status\" is not an object");
        }
        if (ctx->json) {
                output_json(status);
                cJSON_Delete(reply);
                return 0;
        }
        /* People read "3h12m" faster than 11520. */
        copy = cJSON_Duplicate(status, true);
        uptime = cJSON_GetObjectItemCaseSensitive(copy, "uptime");
        if (cJSON_IsNumber(uptime) && uptime->valuedouble >= 0) {
                char buf[32], *s;

                s = xasprintf("%s (%.0f s)", format_duration((uint64_t) uptime->valuedouble, buf), uptime->valuedouble);
                cJSON_ReplaceItemInObjectCaseSensitive(copy, "uptime", cJSON_CreateString(s));
                free(s);
        }
        output_object(copy, stdout);
        cJSON_Delete(copy);
        cJSON_Delete(reply);
        return 0;
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

static int cmd_reload(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *rl, *w;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new("reload");
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(reply, "warnings"))
                if (cJSON_IsString(w)) {
                        _cleanup_(freep) char *s = sanitize_text(w->valuestring, 4096);
                        fprintf(stderr, "warning: %s\n", s);
                }
        if (ctx->json)
                ctl_print_result_json(reply);
        else {
                rl = cJSON_GetObjectItemCaseSensitive(reply, "reload");
                printf("Configuration reloaded.\n");
                print_names("added:", cJSON_GetObjectItemCaseSensitive(rl, "added"));
                print_names("removed:", cJSON_GetObjectItemCaseSensitive(rl, "removed"));
                print_names("changed:", cJSON_GetObjectItemCaseSensitive(rl, "changed"));
                print_names("unchanged:", cJSON_GetObjectItemCaseSensitive(rl, "unchanged"));
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- logs ----------------------------------------------------------------------------- */

int ctl_print_event(const struct ctl_context *ctx, const cJSON *o) {
        struct proto_event e = {};
        char *error = NULL, buf[32];

        if (ctx->json) {
                output_json_line(o);
                return 0;
        }
        if (proto_event_from_json(o, &e, &error) < 0) {
                int r = ctl_malformed(error);
                free(error);
                return r;
        }
        _cleanup_(freep) char *msg = sanitize_text(e.message, PROTO_LINE_MAX);
        _cleanup_(freep) char *binding = e.binding ? sanitize_text(e.binding, 256) : NULL;
        _cleanup_(freep) char *prio = sanitize_text(e.priority ?: "info", 16);
        printf("%s %-7s %s%s%s%s\n", e.time ? format_rfc3339(e.time, buf) : "-", prio,
               binding ? "[" : "", binding ?: "", binding ? "] " : "", msg);
        fflush(stdout);
        proto_event_clear(&e);
        return 0;
}

static int cmd_logs(struct ctl_context *ctx, int argc, char **argv) {
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

        req = proto_request_new("logs");
        if (optind < argc)
                cJSON_AddStringToObject(req, "name", argv[optind]);
        cJSON_AddBoolToObject(req, "follow", follow);
        cJSON_AddNumberToObject(req, "lines", lines);

        r = client_open(&cl, ctx->socket_path);
        if (r != 0)
                return r;
        if ((r = client_send(&cl, req)) != 0 || (r = client_read(&cl, CTL_REPLY_TIMEOUT_MS, &reply)) != 0)
                goto out;
        if (!reply) {
                fprintf(stderr, "mysocketctl: mysocketd closed the connection without replying\n");
                r = CTL_EXIT_FAILURE;
                goto out;
        }
        if ((r = client_report_error(reply)) != 0)
                goto out;
        events = cJSON_GetObjectItemCaseSensitive(reply, "events");
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
                const cJSON *ev;

                cJSON_Delete(reply);
                reply = NULL;
                if ((r = client_read(&cl, -1, &reply)) != 0 || !reply)
                        goto out;
                ev = cJSON_GetObjectItemCaseSensitive(reply, "event");
                if (!ev) {
                        r = client_report_error(reply);
                        if (r == 0)
                                r = ctl_malformed("expected an event line");
                        goto out;
                }
                if ((r = ctl_print_event(ctx, ev)) != 0)
                        goto out;
        }
out:
        cJSON_Delete(reply);
        client_close(&cl);
        return r;
}

/* ---- the table ------------------------------------------------------------------------ */

static const struct ctl_command commands[] = {
        { "add", NULL, cmd_add,
          "NAME --port PORT [OPTIONS]",
          "Add a binding at run time (kept across restarts).",
          "  --port PORT          the local service's port (required)\n"
          "  --host HOST          the local service's host (default 127.0.0.1)\n"
          "  --type TYPE          http, https, tcp or tls (default http)\n"
          "  --name DISPLAY       the socket's display name at the API\n"
          "  --protected          basic auth at the edge (http/https), with:\n"
          "  --username U --password P\n"
          "  --socket-id ID       attach to an existing socket instead of creating one\n"
          "  --remote-port N      direct mode: the port bound on the relay\n"
          "  --wait[=SECONDS]     wait until the binding is up (default 60 s), showing progress\n"
          "  --json               print the binding as JSON\n" },
        { "remove", "rm", cmd_remove,
          "NAME [--purge]",
          "Stop a binding added with 'add' and forget it.",
          "  --purge              also delete its socket at the API, if the daemon created it\n"
          "  --json               print the result as JSON\n" },
        { "list", "ls", cmd_list,
          "",
          "One row per binding: state, local and public address, connections, last error.",
          "  --json               print an array of binding objects\n" },
        { "show", NULL, cmd_show,
          "NAME",
          "Every detail of one binding.",
          "  --json               print the binding object\n" },
        { "status", NULL, cmd_status,
          "",
          "Daemon version, uptime, mode, token expiry and binding counts.",
          "  --json               print the status object\n" },
        { "reload", NULL, cmd_reload,
          "",
          "Re-read the configuration files; unchanged bindings keep their connections.",
          "  --json               print the result as JSON\n" },
        { "logs", NULL, cmd_logs,
          "[NAME] [-f] [-n LINES]",
          "Recent events and edge logs, of all bindings or of one.",
          "  -f, --follow         keep printing new events until interrupted\n"
          "  -n, --lines LINES    how many recent events (default 100)\n"
          "  --json               print JSON (with -f: one event object per line)\n" },
        { "connect", NULL, ctl_cmd_connect,
          "--port PORT [--host H] [--type T] [--name DISPLAY] [--protected --username U --password P]",
          "Quick connect: a temporary binding whose logs stream here; Ctrl-C removes it.",
          CTL_CONNECT_HELP },
        { "login", NULL, ctl_cmd_login,
          "--email E [--password-file F]",
          "Log the daemon in to the mysocket API.",
          CTL_LOGIN_HELP },
        { "account", NULL, ctl_cmd_account,
          "show",
          "The API account the daemon uses.",
          CTL_ACCOUNT_HELP },
        { "socket", NULL, ctl_cmd_socket,
          "ls | create --name N --type T [...] | delete SOCKET_ID",
          "Sockets at the API.",
          CTL_SOCKET_HELP },
        { "tunnel", NULL, ctl_cmd_tunnel,
          "ls SOCKET_ID | create SOCKET_ID | delete SOCKET_ID TUNNEL_ID",
          "Tunnels of a socket at the API.",
          CTL_TUNNEL_HELP },
};

const struct ctl_command *ctl_command_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name) || streq(commands[i].alias, name))
                        return &commands[i];
        return NULL;
}

void ctl_commands_list(FILE *f) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}
