/* The relay's log shell output as lines: CR dropped, split at LF, a line longer than
 * LOGLINE_MAX cut there, each made printable (sanitize_text) before it is handed on. Knows
 * nothing of SSH; bridge.c feeds it what the log channel reads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define LOGLINE_MAX 4096

struct logline;

struct logline *logline_new(void);
void logline_free(struct logline *l);     /* NULL is fine; a partial line is dropped */
/* Feeds n bytes; emit(line, userdata) for each line completed (not empty). Stops at once
 * when emit returns false (its owner went away). */
void logline_feed(struct logline *l, const char *p, size_t n, bool (*emit)(const char *line, void *userdata),
                  void *userdata);
