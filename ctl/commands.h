/* mysocketctl's subcommands: one table (commands.c), one function per command. The
 * command functions live by concern: cmd-bindings.c (add, remove, list, show),
 * cmd-daemon.c (status, reload, metrics, logs), cmd-connect.c (connect), cmd-login.c (login) and
 * cmd-api.c (account, socket, tunnel), cmd-forward.c (forward add, ls, rm). */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

struct client;
struct proto_add;
struct ctl_command;

struct ctl_context {
        const char *socket_path;
        bool json;                       /* --json: one JSON document on stdout */
        const struct ctl_command *cmd;   /* the command being run */
};

struct ctl_command {
        const char *name;
        const char *alias;               /* NULL = none */
        /* argv[0] is the command name. Returns the process exit status. */
        int (*fn)(struct ctl_context *ctx, int argc, char **argv);
        const char *usage;               /* arguments, after the name */
        const char *summary;             /* one line for `mysocketctl --help` */
        const char *help;                /* the options, for `mysocketctl CMD --help` */
};

/* The command called name (or alias), or NULL. */
const struct ctl_command *ctl_command_find(const char *name);
/* Lists every command with its usage and summary. */
void ctl_commands_list(FILE *f);

/* ---- the commands: each returns the process exit status --------------------------------- */

int ctl_cmd_add(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_remove(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_list(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_show(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_status(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_reload(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_logs(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_metrics(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_connect(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_login(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_account(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_socket(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_tunnel(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_forward(struct ctl_context *ctx, int argc, char **argv);

/* ---- shared by the command files ------------------------------------------------------ */

/* Options every command takes; getopt_long returns these values for them. */
#define CTL_OPT_HELP 'h'
#define CTL_OPT_JSON 0x100
#define COMMON_OPTIONS \
        { "help", no_argument, NULL, CTL_OPT_HELP }, \
        { "json", no_argument, NULL, CTL_OPT_JSON }

/* The options of a binding's spec (add, connect), filled in by ctl_binding_option().
 * add also takes { "socket-id", required_argument, NULL, CTL_OPT_SOCKET_ID }. */
enum {
        CTL_OPT_PORT = 0x200, CTL_OPT_HOST, CTL_OPT_TYPE, CTL_OPT_NAME, CTL_OPT_PROTECTED,
        CTL_OPT_USERNAME, CTL_OPT_PASSWORD, CTL_OPT_REMOTE_PORT, CTL_OPT_SOCKET_ID,
        CTL_OPT_MAX_CONNECTIONS, CTL_OPT_REMOTE_HOST, CTL_OPT_EDGE_LOG, CTL_OPT_TUNNELS,
        _CTL_OPT_BINDING_MAX            /* commands number their own options from here */
};
#define BINDING_OPTIONS \
        { "port", required_argument, NULL, CTL_OPT_PORT }, \
        { "host", required_argument, NULL, CTL_OPT_HOST }, \
        { "type", required_argument, NULL, CTL_OPT_TYPE }, \
        { "name", required_argument, NULL, CTL_OPT_NAME }, \
        { "protected", no_argument, NULL, CTL_OPT_PROTECTED }, \
        { "username", required_argument, NULL, CTL_OPT_USERNAME }, \
        { "password", required_argument, NULL, CTL_OPT_PASSWORD }, \
        { "remote-port", required_argument, NULL, CTL_OPT_REMOTE_PORT }, \
        { "max-connections", required_argument, NULL, CTL_OPT_MAX_CONNECTIONS }, \
        { "remote-host", required_argument, NULL, CTL_OPT_REMOTE_HOST }, \
        { "edge-log", required_argument, NULL, CTL_OPT_EDGE_LOG }, \
        { "tunnels", required_argument, NULL, CTL_OPT_TUNNELS }

/* Prints `mysocketctl CMD --help`; returns 0. */
int ctl_print_help(const struct ctl_context *ctx);
/* Says what was wrong (fmt may be NULL) and how to get help; returns 2. */
int ctl_usage_error(const struct ctl_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Handles --help, --json and getopt's errors: returns -1 to go on, else the exit status. */
int ctl_common_option(struct ctl_context *ctx, int c);
/* Stores a binding-spec option's value (the one in optarg) in *a, checking it; any other
 * option goes to ctl_common_option(). Returns -1 to go on, else the exit status. */
int ctl_binding_option(struct ctl_context *ctx, int c, struct proto_add *a);
/* In direct mode (the daemon says) a binding needs --remote-port: returns -1 to go on, else
 * the exit status of the usage error. */
int ctl_check_remote_port(const struct ctl_context *ctx, const struct proto_add *a);
/* Parses the options of a command that takes only the common ones (--help, --json):
 * returns -1 to go on, else the exit status. */
int ctl_parse_common(struct ctl_context *ctx, int argc, char **argv);
/* The positional arguments left after the options must number between min and max:
 * returns -1 to go on, else the exit status (2). */
int ctl_check_args(const struct ctl_context *ctx, int argc, char **argv, int min, int max, const char *what);

/* One request on a connection of its own; on success *reply owns the reply and, unless key
 * is NULL, *ret points to its member key, which must pass is() (else "\"key\" is not
 * <shape>", or "... is missing or of the wrong type" when shape is NULL). Returns 0 or the
 * exit status. */
int ctl_call_for(const struct ctl_context *ctx, const cJSON *req, const char *key,
                 cJSON_bool (*is)(const cJSON *), const char *shape, cJSON **reply, const cJSON **ret);
/* Opens cl, sends a streaming request (logs, connect) and reads its first reply: 0 with
 * *ret owning the ok reply, else the exit status (said on stderr). The caller closes cl. */
int ctl_stream_open(const struct ctl_context *ctx, struct client *cl, const cJSON *req, cJSON **ret);

/* Prints the reply without its envelope ("v", "ok") as one JSON document. */
void ctl_print_result_json(const cJSON *reply);
/* Says the daemon's reply was malformed; returns 1. */
int ctl_malformed(const char *what);
/* Prints one event: a line for people, or with --json one compact JSON line. Returns 0 or 1. */
int ctl_print_event(const struct ctl_context *ctx, const cJSON *o);
/* Prints the event of one streamed line {"v":1,"event":{...}}, pointing *ev (may be NULL)
 * at it; a refusal or any other line ends the stream. Returns 0 to go on, else the exit status. */
int ctl_print_event_line(const struct ctl_context *ctx, const cJSON *line, const cJSON **ev);
