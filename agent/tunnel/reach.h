/* Reaching a relay: identity file checks, resolve, TCP connect over every address in turn
 * (or, with an [ssh] proxy, a socket connected through it by libcurl: http_tunnel_start),
 * SSH handshake, host key, public key authentication. One attempt, reported once through
 * the done callback; it never calls into the session that waits for it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "sshcall.h"
#include "tunnel.h"

struct reach;

/* error 0: *ssh is an authenticated session on fd, both now the callee's. Else negative
 * errno, `permanent` when retrying without a change is pointless, and a sentence. The owner
 * may reach_free() from inside; reach touches nothing after calling it. */
typedef void (*reach_done_t)(void *userdata, int error, bool permanent, const char *message, struct sshcall *ssh,
                             int fd);

/* Starts on the next loop iteration and fails with -ETIMEDOUT at `deadline` (CLOCK_MONOTONIC
 * usec). p is not copied: it must outlive the attempt. Returns 0 and *ret, or negative errno. */
int reach_start(sd_event *event, const struct tunnel_params *p, uint64_t deadline, reach_done_t done,
                void *userdata, struct reach **ret);
/* Stops an attempt still running; NULL is fine. */
void reach_free(struct reach *r);
