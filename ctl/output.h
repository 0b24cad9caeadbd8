/* What mysocketctl prints: aligned tables and key: value lines for people, JSON for
 * scripts. Nothing here talks to the daemon. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Colour only when stdout is a terminal and $NO_COLOR is unset. */
bool output_color(void);
/* Terminal width for truncation: the tty's, else $COLUMNS, else 120. */
unsigned output_width(void);

/* A table: a header row, then rows of owned cells; printed with aligned columns. */
struct table;
struct table *table_new(unsigned ncols, const char *const *headers);
/* Adds one row; cells are copied and sanitized. A NULL cell prints as "-". */
void table_add_row(struct table *t, const char *const *cells);
/* When `fit_last` is set and f is a terminal, the last column is cut to fit its width. */
void table_print(struct table *t, FILE *f, bool fit_last);
void table_free(struct table *t);

/* "3h12m", "45s", "2d4h": a duration in seconds for people. Returns buf. */
char *format_duration(uint64_t sec, char buf[static 32]);
/* Colour escape for a binding state ("up" green, "failed" red, ...), or "" without colour. */
const char *state_color(const char *state);
const char *color_reset(void);

/* Prints every member of a JSON object as aligned "key: value" lines (null as "-"). */
void output_object(const cJSON *o, FILE *f);
/* Prints o as one pretty JSON document on stdout. */
void output_json(const cJSON *o);
/* Prints o as one compact JSON line on stdout (streams), flushed. */
void output_json_line(const cJSON *o);
