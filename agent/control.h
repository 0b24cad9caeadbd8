/* The control socket server (SPEC §7): accepts mysocketctl connections, frames JSON lines,
 * enforces the limits, and hands each request to a handler. It knows nothing of bindings. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "protocol.h"

#define CONTROL_MAX_CLIENTS 512
#define CONTROL_REQUEST_TIMEOUT_USEC (10 * 1000000ull)   /* to finish a request line */
#define CONTROL_OUTPUT_MAX (PROTO_REPLY_MAX + (1u << 20)) /* unsent bytes before we drop a reader */
/* Anyone who can reach the socket may open `logs -f` streams: they are bounded in number
 * and each in what it may hold unread (past its first reply), dropping its oldest lines. */
#define CONTROL_MAX_STREAMS 64
#define CONTROL_MAX_STREAMS_PER_UID 16
#define CONTROL_STREAM_QUEUE_MAX (64u << 10)

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
/* Whether control_client_stream would take c now: 0, -EUSERS or -EDQUOT (see there), so
 * that a refusal costs nothing. */
int control_client_may_stream(const struct control_client *c);
/* Builds the line telling a stream's reader that n lines before it were dropped (NULL: none). */
typedef cJSON *(*control_dropped_fn)(uint64_t n);
/* Queues `first`, then marks the connection as a stream: no request timeout; lines queued with
 * control_client_send beyond CONTROL_STREAM_QUEUE_MAX unread bytes push out the oldest
 * ones, replaced by dropped_line(n); on_close runs when it goes away. Returns 0, or
 * -EUSERS (CONTROL_MAX_STREAMS open) or -EDQUOT (CONTROL_MAX_STREAMS_PER_UID of this
 * peer's uid open), and then nothing changed. */
int control_client_stream(struct control_client *c, const cJSON *first,
                          void (*on_close)(struct control_client *c, void *userdata),
                          control_dropped_fn dropped_line, void *userdata);
/* Keeps the connection, with no request timeout, until the caller answers (an API call);
 * on_close runs if it goes away first. Not a stream: no limits apply. */
void control_client_park(struct control_client *c, void (*on_close)(struct control_client *c, void *userdata),
                         void *userdata);
