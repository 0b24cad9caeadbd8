/* mysocketctl's subcommands: one table, one function per command. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

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
