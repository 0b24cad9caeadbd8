/* mysocketctl: talks to a running mysocketd over its control socket (SPEC §6). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "client.h"
#include "commands.h"
#include "util.h"

#define DEFAULT_SOCKET "/run/mysocketd/control.sock"

static void help(void) {
        printf("Usage: mysocketctl [-s SOCKET] [--json] COMMAND [ARGS]\n\n"
               "Control a running mysocketd.\n\n"
               "Options:\n"
               "  -s, --socket SOCKET  the daemon's control socket (default $MYSOCKETD_SOCKET,\n"
               "                       else " DEFAULT_SOCKET ")\n"
               "      --json           print one JSON document on stdout\n"
               "  -h, --help           show this help\n"
               "  -V, --version        show the version\n\n"
               "Commands:\n");
        ctl_commands_list(stdout);
        printf("\nSee 'mysocketctl COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
        enum { OPT_JSON = 0x100 };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        struct ctl_context ctx = {};
        int c;

        /* "+": stop at the command name; what follows belongs to the command. */
        while ((c = getopt_long(argc, argv, "+s:hV", opts, NULL)) >= 0) {
                switch (c) {
                case 's':
                        ctx.socket_path = optarg;
                        break;
                case OPT_JSON:
                        ctx.json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("mysocketctl " PACKAGE_VERSION "\n");
                        return 0;
                default:
                        fprintf(stderr, "Try 'mysocketctl --help'.\n");
                        return CTL_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "mysocketctl: missing command\nTry 'mysocketctl --help'.\n");
                return CTL_EXIT_USAGE;
        }
        ctx.cmd = ctl_command_find(argv[optind]);
        if (!ctx.cmd) {
                fprintf(stderr, "mysocketctl: unknown command \"%s\"\nTry 'mysocketctl --help'.\n", argv[optind]);
                return CTL_EXIT_USAGE;
        }
        if (!ctx.socket_path || !*ctx.socket_path)
                ctx.socket_path = getenv("MYSOCKETD_SOCKET");
        if (!ctx.socket_path || !*ctx.socket_path)
                ctx.socket_path = DEFAULT_SOCKET;

        /* getopt_long's messages start with argv[0]: make them name the command. */
        argv[optind] = xasprintf("mysocketctl %s", ctx.cmd->name);
        return ctx.cmd->fn(&ctx, argc - optind, argv + optind);
}
