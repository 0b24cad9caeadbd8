/* The local side of a forwarded connection: the connect to its tunnel's local service, over
 * every address of local_host in turn, each with a timeout; and the accounting of what the
 * service refused or dropped (counted, remembered, logged at most every few seconds). Knows
 * nothing of SSH: bridge.c takes the connected socket. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

struct tunnel;
struct localconn;

/* Called once, from the loop: fd >= 0 is the connected socket (the callee owns it), else
 * -errno (already counted and logged). */
typedef void (*localconn_done_fn)(void *userdata, int fd);

/* Starts connecting to t's local service. Returns 0 and *ret (the callback comes later); 1
 * and the connected socket in *fd when it connected at once (loopback: no callback, nothing
 * in *ret); or -errno when no address could even be tried (counted and logged; no callback). */
int localconn_start(sd_event *event, struct tunnel *t, localconn_done_fn done, void *userdata,
                    struct localconn **ret, int *fd);
/* Cancels the attempt (its socket is closed, no callback). NULL is fine. */
void localconn_free(struct localconn *lc);
/* The local service refused (dropped = false) or dropped a connection: t's counters and
 * last_local_error. */
void localconn_failed(struct tunnel *t, bool dropped, int error);
