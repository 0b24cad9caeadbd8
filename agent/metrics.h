/* Metrics and health (SPEC §10). Two halves:
 *
 *   metrics-text.c  the texts: the Prometheus exposition of every binding's counters,
 *                   the /health JSON, the /ready verdict. Also behind `mysocketctl metrics`
 *                   (the control command), so both show the same numbers.
 *   metrics.c       the HTTP listener on [daemon] metrics_listen: libmicrohttpd driven from
 *                   the daemon's sd-event loop. The only file that includes microhttpd.h.
 *
 * Read-only: nothing here changes a binding, and no secret is in any text. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "manager.h"

struct metrics;

/* Listens on `listen` ("IPV4:PORT" or "[IPV6]:PORT") and serves GET/HEAD /metrics, /health
 * and /ready from event loop e, reading m (which must outlive it). Returns 0 and *ret, or
 * -errno and *error (caller frees) saying why it cannot listen. */
int metrics_new(sd_event *e, const char *listen, struct manager *m, struct metrics **ret, char **error);
/* Closes the listener and every HTTP connection. NULL is fine. */
void metrics_free(struct metrics *mx);

/* The Prometheus text format (version 0.0.4) of m: HELP and TYPE lines, one sample per
 * binding per family. Caller frees. */
char *metrics_render(const struct manager *m);
/* The /health object {"status", "bindings", "up", "connections", "max_connections",
 * "connections_capacity_percent"}, one line; *down is set when the status is "down" (no
 * binding up while there are bindings). Caller frees. */
char *metrics_health_json(const struct manager *m, bool *down);
/* /ready: every binding is up (true with no bindings). */
bool metrics_ready(const struct manager *m);
