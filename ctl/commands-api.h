/* mysocketctl's side of the original client's commands (SPEC §6): login, account, socket,
 * tunnel and connect. The daemon holds the token and talks to the API; these only build
 * requests and print replies. Each returns the process exit status. */
#pragma once

#include "commands.h"

int ctl_cmd_login(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_account(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_socket(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_tunnel(struct ctl_context *ctx, int argc, char **argv);
int ctl_cmd_connect(struct ctl_context *ctx, int argc, char **argv);

/* The option lists of `mysocketctl CMD --help`. */
#define CTL_LOGIN_HELP \
        "  --email E            the account's email address (required)\n" \
        "  --password-file F    read the password from F (not readable by group or others);\n" \
        "                       without it the password is asked on the terminal, or read\n" \
        "                       from standard input when that is not a terminal\n" \
        "  --json               print the result as JSON\n"
#define CTL_ACCOUNT_HELP \
        "  --json               print the account object\n"
#define CTL_SOCKET_HELP \
        "  ls                   one row per socket of the account\n" \
        "  create --name N [--type http|https|tcp|tls] [--protected --username U --password P]\n" \
        "                       create a socket (default type http)\n" \
        "  delete SOCKET_ID     delete a socket and its tunnels\n" \
        "  --json               print the API's objects as JSON\n"
#define CTL_TUNNEL_HELP \
        "  ls SOCKET_ID         one row per tunnel of the socket\n" \
        "  create SOCKET_ID     create a tunnel (its relay port is assigned by the API)\n" \
        "  delete SOCKET_ID TUNNEL_ID\n" \
        "                       delete a tunnel\n" \
        "  --json               print the API's objects as JSON\n"
#define CTL_CONNECT_HELP \
        "  --port PORT          the local service's port (required)\n" \
        "  --host HOST          the local service's host (default 127.0.0.1)\n" \
        "  --type TYPE          http, https, tcp or tls (default http)\n" \
        "  --name DISPLAY       the socket's display name at the API\n" \
        "  --protected          basic auth at the edge (http/https), with:\n" \
        "  --username U --password P\n" \
        "  --remote-port N      direct mode: the port bound on the relay\n" \
        "  --json               print the binding, then one event object per line\n" \
        "\nThe binding lives as long as this command: Ctrl-C (or the command being killed)\n" \
        "removes it and deletes its socket at the API.\n"
