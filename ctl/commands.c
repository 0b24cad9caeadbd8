/* mysocketctl's table of subcommands, and what the command files share: option parsing,
 * one request and its reply, streamed events. Field names come from common/protocol*.c,
 * so the two sides cannot disagree. */
#include "commands.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

/* ---- options and usage ---------------------------------------------------------------- */

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

int ctl_binding_option(struct ctl_context *ctx, int c, struct proto_add *a) {
        switch (c) {
        case CTL_OPT_PORT:
                if (parse_port(optarg, &a->port) < 0)
                        return ctl_usage_error(ctx, "--port: \"%s\" is not a port (1-65535)", optarg);
                return -1;
        case CTL_OPT_HOST:
                free(a->host);
                a->host = xstrdup(optarg);
                return -1;
        case CTL_OPT_TYPE:
                if (!proto_type_valid(optarg))
                        return ctl_usage_error(ctx, "--type: \"%s\" is not one of " SOCKET_TYPE_NAMES, optarg);
                free(a->type);
                a->type = xstrdup(optarg);
                return -1;
        case CTL_OPT_NAME:
                free(a->display_name);
                a->display_name = xstrdup(optarg);
                return -1;
        case CTL_OPT_PROTECTED:
                a->protected_ = true;
                return -1;
        case CTL_OPT_USERNAME:
                free(a->username);
                a->username = xstrdup(optarg);
                return -1;
        case CTL_OPT_PASSWORD:
                free(a->password);
                a->password = xstrdup(optarg);
                return -1;
        case CTL_OPT_SOCKET_ID:
                free(a->socket_id);
                a->socket_id = xstrdup(optarg);
                return -1;
        case CTL_OPT_REMOTE_PORT:
                a->remote_port_any = streq(optarg, "0");
                if (!a->remote_port_any && parse_port(optarg, &a->remote_port) < 0)
                        return ctl_usage_error(ctx, "--remote-port: \"%s\" is not a port (1-65535, or 0: the "
                                               "relay chooses)", optarg);
                return -1;
        case CTL_OPT_REMOTE_HOST:
                free(a->remote_host);
                a->remote_host = xstrdup(optarg);
                return -1;
        case CTL_OPT_MAX_CONNECTIONS: {
                unsigned n;
                if (parse_uint(optarg, 0, 1000000, &n) < 0)
                        return ctl_usage_error(ctx, "--max-connections: \"%s\" is not a number from 0 to 1000000",
                                               optarg);
                a->max_connections = n;
                return -1;
        }
        case CTL_OPT_TUNNELS: {
                unsigned n;
                if (parse_uint(optarg, 1, 8, &n) < 0)
                        return ctl_usage_error(ctx, "--tunnels: \"%s\" is not a number from 1 to 8", optarg);
                a->tunnels = n;
                return -1;
        }
        case CTL_OPT_EDGE_LOG:
                if (!streq(optarg, "auto") && !streq(optarg, "yes") && !streq(optarg, "no"))
                        return ctl_usage_error(ctx, "--edge-log: \"%s\" is not auto, yes or no", optarg);
                free(a->edge_log);
                a->edge_log = xstrdup(optarg);
                return -1;
        default:
                return ctl_common_option(ctx, c);
        }
}

int ctl_parse_common(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        return -1;
}

/* ---- requests and replies ------------------------------------------------------------- */

int ctl_check_remote_port(const struct ctl_context *ctx, const struct proto_add *a) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        if (a->remote_port || a->remote_port_any)
                return -1;
        /* Only the daemon knows its mode; if it cannot say, it will answer the add itself. */
        req = proto_request_new(PROTO_CMD_STATUS);
        if (client_call(ctx->socket_path, req, &reply) != 0)
                return -1;
        const char *mode = proto_str_of(cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_STATUS), PROTO_KEY_MODE);
        bool direct = streq(mode, PROTO_MODE_DIRECT);
        cJSON_Delete(reply);
        if (!direct)
                return -1;
        return ctl_usage_error(ctx, "missing --remote-port PORT: the daemon runs in direct mode, where each "
                               "binding names the port it listens on at the relay");
}

int ctl_call_for(const struct ctl_context *ctx, const cJSON *req, const char *key,
                 cJSON_bool (*is)(const cJSON *), const char *shape, cJSON **reply, const cJSON **ret) {
        int r = client_call(ctx->socket_path, req, reply);
        if (r != 0)
                return r;
        if (!key)
                return 0;
        *ret = cJSON_GetObjectItemCaseSensitive(*reply, key);
        if (!is(*ret)) {
                _cleanup_(freep) char *what = shape ? xasprintf("\"%s\" is not %s", key, shape)
                                                    : xasprintf("\"%s\" is missing or of the wrong type", key);
                cJSON_Delete(*reply);
                *reply = NULL;
                return ctl_malformed(what);
        }
        return 0;
}

int ctl_stream_open(const struct ctl_context *ctx, struct client *cl, const cJSON *req, cJSON **ret) {
        cJSON *reply = NULL;
        int r;

        if ((r = client_open(cl, ctx->socket_path)) != 0)
                return r;
        if ((r = client_send(cl, req)) != 0 || (r = client_read(cl, CTL_REPLY_TIMEOUT_MS, &reply)) != 0)
                return r;
        if (!reply) {
                fprintf(stderr, "mysocketctl: mysocketd closed the connection without replying\n");
                return CTL_EXIT_FAILURE;
        }
        if ((r = client_report_error(reply)) != 0) {
                cJSON_Delete(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

/* Prints the reply without its envelope ("v", "ok"): the result of remove and reload. */
void ctl_print_result_json(const cJSON *reply) {
        cJSON *copy = cJSON_Duplicate(reply, true);

        cJSON_DeleteItemFromObjectCaseSensitive(copy, PROTO_KEY_V);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, PROTO_KEY_OK);
        output_json(copy);
        cJSON_Delete(copy);
}

int ctl_malformed(const char *what) {
        fprintf(stderr, "mysocketctl: ctl_malformed reply from mysocketd: %s\n", what);
        return CTL_EXIT_FAILURE;
}

/* ---- events --------------------------------------------------------------------------- */

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

int ctl_print_event_line(const struct ctl_context *ctx, const cJSON *line, const cJSON **ev) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(line, PROTO_KEY_EVENT);
        int r;

        if (!e) {
                r = client_report_error(line);
                return r ? r : ctl_malformed("expected an event line");
        }
        if ((r = ctl_print_event(ctx, e)) != 0)
                return r;
        if (ev)
                *ev = e;
        return 0;
}

/* ---- the table ------------------------------------------------------------------------ */

/* The binding-spec options add and connect share (BINDING_OPTIONS). */
#define BINDING_HELP \
        "  --port PORT          the local service's port (required)\n" \
        "  --host HOST          the local service's host (default 127.0.0.1)\n" \
        "  --type TYPE          http, https, tcp or tls (default http)\n" \
        "  --name DISPLAY       the socket's display name at the API\n" \
        "  --protected          basic auth at the edge (http/https), with:\n" \
        "  --username U --password P\n" \
        "  --max-connections N  relay connections open at once (0 = no limit)\n" \
        "  --tunnels N          API mode: tunnels (SSH sessions) serving the socket (1-8)\n"

static const struct ctl_command commands[] = {
        { "add", NULL, ctl_cmd_add,
          "NAME --port PORT [OPTIONS]",
          "Add a binding at run time (kept across restarts).",
          BINDING_HELP
          "  --socket-id ID       attach to an existing socket instead of creating one\n"
          "  --remote-port N      direct mode: the port bound on the relay (0: the relay chooses)\n"
          "  --remote-host H      direct mode: the address bound on the relay (default localhost)\n"
          "  --edge-log auto|yes|no  read the relay's log lines on a shell (auto: API mode only)\n"
          "  --wait[=SECONDS]     wait until the binding is up (default 60 s), showing progress\n"
          "  --json               print the binding as JSON\n" },
        { "remove", "rm", ctl_cmd_remove,
          "NAME [--purge]",
          "Stop a binding added with 'add' and forget it.",
          "  --purge              also delete its socket at the API, if the daemon created it\n"
          "  --json               print the result as JSON\n" },
        { "list", "ls", ctl_cmd_list,
          "",
          "One row per binding: state, local and public address, connections, last error.",
          "  --json               print an array of binding objects\n" },
        { "show", NULL, ctl_cmd_show,
          "NAME",
          "Every detail of one binding.",
          "  --json               print the binding object\n" },
        { "status", NULL, ctl_cmd_status,
          "",
          "Daemon version, uptime, mode, token expiry and binding counts.",
          "  --json               print the status object\n" },
        { "reload", NULL, ctl_cmd_reload,
          "",
          "Re-read the configuration files; unchanged bindings keep their connections.",
          "  --json               print the result as JSON\n" },
        { "metrics", NULL, ctl_cmd_metrics,
          "",
          "The Prometheus text of /metrics, for node_exporter's textfile collector.",
          "  --json               print {\"metrics\": TEXT}\n" },
        { "logs", NULL, ctl_cmd_logs,
          "[NAME] [-f] [-n LINES]",
          "Recent events and edge logs, of all bindings or of one.",
          "  -f, --follow         keep printing new events until interrupted\n"
          "  -n, --lines LINES    how many recent events (default 100)\n"
          "  --json               print JSON (with -f: one event object per line)\n" },
        { "connect", NULL, ctl_cmd_connect,
          "--port PORT [--host H] [--type T] [--name DISPLAY] [--protected --username U --password P]",
          "Quick connect: a temporary binding whose logs stream here; Ctrl-C removes it.",
          BINDING_HELP
          "  --remote-port N      direct mode: the port bound on the relay\n"
          "  --remote-host H      direct mode: the address bound on the relay (default localhost)\n"
          "  --edge-log auto|yes|no  read the relay's log lines on a shell (auto: API mode only)\n"
          "  --json               print the binding, then one event object per line\n"
          "\nThe binding lives as long as this command: Ctrl-C (or the command being killed)\n"
          "removes it and deletes its socket at the API.\n" },
        { "login", NULL, ctl_cmd_login,
          "--email E [--password-file F]",
          "Log the daemon in to the mysocket API.",
          "  --email E            the account's email address (required)\n"
          "  --password-file F    read the password from F (not readable by group or others);\n"
          "                       without it the password is asked on the terminal, or read\n"
          "                       from standard input when that is not a terminal\n"
          "  --json               print the result as JSON\n" },
        { "account", NULL, ctl_cmd_account,
          "show",
          "The API account the daemon uses.",
          "  --json               print the account object\n" },
        { "socket", NULL, ctl_cmd_socket,
          "ls | create --name N --type T [...] | delete SOCKET_ID",
          "Sockets at the API.",
          "  ls                   one row per socket of the account\n"
          "  create --name N [--type http|https|tcp|tls] [--protected --username U --password P]\n"
          "                       create a socket (default type http)\n"
          "  delete SOCKET_ID     delete a socket and its tunnels\n"
          "  --json               print the API's objects as JSON\n" },
        { "forward", NULL, ctl_cmd_forward,
          "add NAME --listen H:P --target H:P | ls | rm NAME",
          "Local forwards (like ssh -L): listen here, reach TARGET through the relay.",
          "  add NAME --listen HOST:PORT --target HOST:PORT\n"
          "                       listen on HOST:PORT (a numeric address; IPv6 as [ADDR]:PORT)\n"
          "                       and open each connection to TARGET as seen from the relay;\n"
          "                       kept across restarts (STATE_DIR/forwards.d/NAME.ini)\n"
          "  ls                   one row per forward: state, connections, bytes, last error\n"
          "  rm NAME              stop a forward added with 'add' and forget it\n"
          "  --json               print the forward objects as JSON\n" },
        { "tunnel", NULL, ctl_cmd_tunnel,
          "ls SOCKET_ID | create SOCKET_ID | delete SOCKET_ID TUNNEL_ID",
          "Tunnels of a socket at the API.",
          "  ls SOCKET_ID         one row per tunnel of the socket\n"
          "  create SOCKET_ID     create a tunnel (its relay port is assigned by the API)\n"
          "  delete SOCKET_ID TUNNEL_ID\n"
          "                       delete a tunnel\n"
          "  --json               print the API's objects as JSON\n" },
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
