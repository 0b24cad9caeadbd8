/* One relay channel <-> one local socket, with bounded buffers both ways and half-close;
 * or the session's log shell channel, whose lines go to session_log_line(). A bridge lives
 * in its session's list and is served by the session's pump. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "sshcall.h"

struct session;
struct tunnel;
struct bridge;

/* A bridge for channel ch, accepted for tunnel t (NULL: its forward is gone, close it) or
 * the log shell (is_log). Connects to t's local service at once. Called from the pump, whose
 * sweep visits the new bridge in the same turn. */
struct bridge *bridge_new(struct session *s, struct tunnel *t, sshcall_channel *ch, bool is_log);
bool bridge_closing(const struct bridge *b);

/* A local forward's accepted connection fd (taken) for tunnel t, waiting for its channel:
 * direct.c queues it, then bridge_opened() with the relay's channel, or bridge_close(). */
struct bridge *bridge_new_local(struct session *s, struct tunnel *t, int fd);
void bridge_opened(struct bridge *b, sshcall_channel *ch);
/* Closes the local side now and frees the channel, if any, through the pump. */
void bridge_close(struct bridge *b, int error);

/* For the session: every bridge of tunnel t is cut from it and aborted. */
void bridge_abort_tunnel(struct session *s, struct tunnel *t);
/* The session ended: no more events for any bridge; they are freed with the session. */
void bridge_quiesce_all(struct session *s);
void bridge_free_all(struct session *s);
/* Visits the bridges with work (all of them if `all`), fairly. Returns false when the pump
 * must stop (a call is pending, the session went down). */
bool bridge_sweep(struct session *s, bool all);
/* The pending call was this bridge's: makes it again (buffers may have moved). */
void bridge_retry(struct bridge *b, const struct sshcall_op *op);
/* A pure read on the log channel, to resume a reply libssh2 queued by itself. Returns false
 * when there is no log channel to read with. */
bool bridge_resume_read(struct bridge *log);
/* The liveness probe on the log channel: sends one, or completes the one in flight. */
void bridge_probe(struct bridge *log);
bool bridge_probe_inflight(const struct bridge *log);
sshcall_channel *bridge_channel(const struct bridge *b);
