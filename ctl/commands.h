/* mysocketctl's subcommands: one table, one function per command. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

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

/* ---- shared by the command files (commands.c, commands-api.c) ------------------------- */

/* Options every command takes; getopt_long returns these values for them. */
#define CTL_OPT_HELP 'h'
#define CTL_OPT_JSON 0x100
#define COMMON_OPTIONS \
        { "help", no_argument, NULL, CTL_OPT_HELP }, \
        { "json", no_argument, NULL, CTL_OPT_JSON }

/* Prints `mysocketctl CMD --help`; returns 0. */
int ctl_print_help(const struct ctl_context *ctx);
/* Says what was wrong (fmt may be NULL) and how to get help; returns 2. */
int ctl_usage_error(const struct ctl_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Handles --help, --json and getopt's errors: returns -1 to go on, else the exit status. */
int ctl_common_option(struct ctl_context *ctx, int c);
/* The positional arguments left after the options must number between min and max:
 * returns -1 to go on, else the exit status (2). */
int ctl_check_args(const struct ctl_context *ctx, int argc, char **argv, int min, int max, const char *what);
/* Prints the reply without its envelope ("v", "ok") as one JSON document. */
void ctl_print_result_json(const cJSON *reply);
/* Says the daemon's reply was malformed; returns 1. */
int ctl_malformed(const char *what);
/* Prints one event: a line for people, or with --json one compact JSON line. Returns 0 or 1. */
int ctl_print_event(const struct ctl_context *ctx, const cJSON *o);
