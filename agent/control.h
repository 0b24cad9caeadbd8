/* The control socket server (SPEC §7): accepts mysocketctl connections, frames JSON lines,
 * enforces the limits, and hands each request to a handler. It knows nothing of bindings. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "protocol.h"

#define CONTROL_MAX_CLIENTS 512
#define CONTROL_REQUEST_TIMEOUT_USEC (10 * 1000000ull)   /* to finish a request line */
#define CONTROL_OUTPUT_MAX (PROTO_REPLY_MAX + (1u << 20)) /* unsent bytes before we drop a reader */

struct control;
struct control_client;

/* Returns the reply (the caller frees it), or NULL when the command keeps the connection
 * for a stream (it then sends with control_client_send). */
typedef cJSON *(*control_handler_t)(struct control_client *c, const cJSON *request, const char *cmd,
                                    void *userdata);

/* Serves on listen_fd when systemd passed one (>= 0), else binds `path` itself: creates
 * its directory, removes a stale socket (one nobody answers on), refuses to steal a live
 * one, sets mode 0660 and group `gid` (if not (gid_t) -1). Returns 0 or -errno with *error. */
int control_new(sd_event *event, int listen_fd, const char *path, gid_t gid,
                control_handler_t handler, void *userdata, struct control **ret, char **error);
/* Closes every client; removes the socket file if we bound it. NULL is fine. */
void control_free(struct control *c);

/* SO_PEERCRED of the client. */
uid_t control_client_uid(const struct control_client *c);
/* True if the peer's primary or supplementary groups include gid. */
bool control_client_in_group(const struct control_client *c, gid_t gid);
/* Queues one line. Returns 0, or -ENOBUFS if the client does not read and was dropped. */
int control_client_send(struct control_client *c, const cJSON *o);
/* Marks the connection as a stream: no request timeout; on_close runs when it goes away. */
void control_client_stream(struct control_client *c, void (*on_close)(struct control_client *c, void *userdata),
                           void *userdata);
