/* sd_notify glue: what systemd (Type=notify) hears from us. Without $NOTIFY_SOCKET these
 * do nothing. */
#pragma once

void notify_ready(void);
/* STATUS=UP/TOTAL bindings up[, N failed]; sent only when the text changes. */
void notify_bindings(unsigned up, unsigned total, unsigned failed);
/* STATUS=free text (e.g. a reload error). */
void notify_status(const char *text);
/* RELOADING=1 with MONOTONIC_USEC, as systemd's reload protocol wants. */
void notify_reloading(void);
void notify_stopping(void);
