/* mysocketctl's side of the control socket: connect, send one request, read reply lines.
 *
 * This is the top layer of a command-line tool, so these functions say what went wrong
 * on stderr themselves and return the process exit status to use (0 = go on). */
#pragma once

#include <stddef.h>

#include <cjson/cJSON.h>

#define CTL_EXIT_FAILURE 1      /* the daemon refused or failed the request */
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_UNAVAILABLE 69 /* EX_UNAVAILABLE: no daemon at the socket */
#define CTL_EXIT_NOPERM 77      /* EX_NOPERM */

#define CTL_REPLY_TIMEOUT_MS (30 * 1000)

struct client {
        int fd;
        const char *path;
        char *buf;              /* partial input, grown up to PROTO_REPLY_MAX */
        size_t len, cap;
};

/* Connects to the daemon's socket at path; the message names the path on failure (69, 77). */
int client_open(struct client *c, const char *path);
void client_close(struct client *c);
/* Sends one request line. */
int client_send(struct client *c, const cJSON *request);
/* Reads one line within timeout_ms (-1: no limit) and parses it as a reply or an event
 * line. At a clean end of stream returns 0 with *ret = NULL. */
int client_read(struct client *c, int timeout_ms, cJSON **ret);

/* Prints a refusal (its "error" and each of its "errors") and returns 1, or 77 for code
 * "permission". */
int client_report_error(const cJSON *reply);

/* One request, one reply, on a connection of its own. On success *ret owns the ok reply;
 * a refusal is printed (client_report_error) and its exit status returned. */
int client_call(const char *path, const cJSON *request, cJSON **ret);
