/* Local forwards ([forward "NAME"], `mysocketctl forward ...`; like `ssh -L`): the daemon
 * listens on `listen` and hands each accepted connection to the tunnel engine, which opens
 * it as a direct-tcpip channel to `target` through the relay session (tunnel_open_local).
 *
 *   connecting --(session up)--> up --(session lost)--> backoff --(timer)--> connecting
 *   failed: the listener could not be opened, or an error retrying cannot fix (auth, host
 *   key, key file); a reload or a re-add starts it again.
 *
 * The listener stays open in every state: while the relay is not up a new connection is
 * accepted and closed at once (counted as connections_unserved), so clients fail fast
 * instead of hanging. The session is the one the bindings to the same relay share (the
 * engine's registry): one SSH connection carries `ssh -R` and `ssh -L` traffic alike. */
#pragma once

#include <stdbool.h>

#include "conf.h"
#include "protocol.h"

struct manager;
struct localfwds;

/* The set of m's forwards (from m->config->forwards); starts nothing. */
struct localfwds *localfwd_new(struct manager *m);
/* Listens and connects every forward; a listener that cannot be opened leaves its forward
 * failed with the reason (logged). */
void localfwd_start(struct localfwds *s);
/* Stops every forward and frees the set. NULL is fine. */
void localfwd_free(struct localfwds *s);

/* Adds a runtime forward: validates it, listens (a busy port is an error and nothing is
 * kept), writes STATE_DIR/forwards.d/NAME.ini, starts it. Takes fc on success. On failure
 * returns -errno with *code and *error (caller frees); nothing changed. */
int localfwd_add(struct localfwds *s, struct forward_conf *fc, enum proto_code *code, char **error);
/* Stops and forgets a runtime forward (its file removed). Same error convention. */
int localfwd_remove(struct localfwds *s, const char *name, enum proto_code *code, char **error);
/* After a reload put nc in force (m->config): forwards whose settings did not change keep
 * their listener and session (unless the transport changed: then they reconnect); changed
 * ones restart, removed ones stop, new ones start. Names are appended to the result lists. */
void localfwd_reload(struct localfwds *s, bool transport_same, struct strv *added, struct strv *removed,
                      struct strv *changed);

size_t localfwd_count(const struct localfwds *s);
/* Fills the wire view of forward i, or of the forward named `name` (-ENOENT if none). */
void localfwd_to_proto(const struct localfwds *s, size_t i, struct proto_forward *ret);
int localfwd_find(const struct localfwds *s, const char *name, size_t *ret);
