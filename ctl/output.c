/* Human and JSON output for mysocketctl. */
#include "output.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "protocol.h"
#include "util.h"

#define CELL_MAX 4096

bool output_color(void) {
        static int cached = -1;

        if (cached < 0) {
                const char *term = getenv("TERM");

                cached = isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !streq(term, "dumb");
        }
        return cached;
}

unsigned output_width(void) {
        struct winsize ws;
        const char *c;
        unsigned n;

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        c = getenv("COLUMNS");
        if (c && parse_uint(c, 20, 10000, &n) >= 0)
                return n;
        return 120;
}

/* Display width: code points, which is right for everything the daemon sends but CJK. */
static size_t text_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

/* Cuts s in place to at most `width` code points, ending in "..." when cut. */
static void truncate_text(char *s, size_t width) {
        size_t n = 0;

        if (text_width(s) <= width)
                return;
        if (width < 3)
                width = 3;
        for (char *p = s; *p; p++) {
                if (((unsigned char) *p & 0xc0) != 0x80 && n++ == width - 3) {
                        strcpy(p, "...");
                        return;
                }
        }
}

struct table {
        unsigned ncols;
        size_t nrows;           /* including the header */
        char **cells;           /* nrows * ncols */
};

struct table *table_new(unsigned ncols, const char *const *headers) {
        struct table *t = xcalloc(1, sizeof(*t));

        t->ncols = ncols;
        table_add_row(t, headers);
        return t;
}

void table_add_row(struct table *t, const char *const *cells) {
        t->cells = xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
        for (unsigned c = 0; c < t->ncols; c++)
                t->cells[t->nrows * t->ncols + c] = sanitize_text(cells[c] ?: "-", CELL_MAX);
        t->nrows++;
}

void table_print(struct table *t, FILE *f, bool fit_last) {
        size_t *w = xcalloc(t->ncols, sizeof(size_t)), used = 0;
        const unsigned last = t->ncols - 1;

        for (size_t r = 0; r < t->nrows; r++)
                for (unsigned c = 0; c < t->ncols; c++) {
                        size_t n = text_width(t->cells[r * t->ncols + c]);
                        if (n > w[c])
                                w[c] = n;
                }
        for (unsigned c = 0; c < last; c++)
                used += w[c] + 2;
        /* Cut only for a terminal: a script reading the table wants the whole text. */
        if (fit_last && isatty(fileno(f))) {
                size_t width = output_width(), room = width > used + 10 ? width - used : 10;
                for (size_t r = 1; r < t->nrows; r++)
                        truncate_text(t->cells[r * t->ncols + last], room);
        }

        for (size_t r = 0; r < t->nrows; r++) {
                for (unsigned c = 0; c < t->ncols; c++) {
                        const char *cell = t->cells[r * t->ncols + c];
                        /* Column 1 is the state: the only one worth a colour. */
                        bool colour = r > 0 && c == 1 && *state_color(cell);

                        fprintf(f, "%s%s%s", colour ? state_color(cell) : "", cell, colour ? color_reset() : "");
                        if (c < last)
                                fprintf(f, "%*s", (int) (w[c] - text_width(cell) + 2), "");
                }
                fputc('\n', f);
        }
        free(w);
}

void table_free(struct table *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->nrows * t->ncols; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
}

char *format_duration(uint64_t sec, char buf[static 32]) {
        if (sec < 60)
                snprintf(buf, 32, "%" PRIu64 "s", sec);
        else if (sec < 3600)
                snprintf(buf, 32, "%" PRIu64 "m%" PRIu64 "s", sec / 60, sec % 60);
        else if (sec < 86400)
                snprintf(buf, 32, "%" PRIu64 "h%" PRIu64 "m", sec / 3600, sec % 3600 / 60);
        else
                snprintf(buf, 32, "%" PRIu64 "d%" PRIu64 "h", sec / 86400, sec % 86400 / 3600);
        return buf;
}

const char *state_color(const char *state) {
        if (!output_color() || !state)
                return "";
        if (streq(state, PROTO_STATE_UP))
                return "\033[32m";
        if (streq(state, PROTO_STATE_FAILED))
                return "\033[31m";
        if (streq(state, PROTO_STATE_BACKOFF))
                return "\033[33m";
        return "";
}

const char *color_reset(void) {
        return output_color() ? "\033[0m" : "";
}

/* A scalar (or a short array of scalars) as one line of text; caller frees. */
static char *value_text(const cJSON *v) {
        if (cJSON_IsNull(v))
                return xstrdup("-");
        if (cJSON_IsBool(v))
                return xstrdup(cJSON_IsTrue(v) ? "yes" : "no");
        if (cJSON_IsString(v))
                return sanitize_text(v->valuestring, CELL_MAX);
        if (cJSON_IsNumber(v)) {
                double d = v->valuedouble;
                if (d >= 0 && d < 18446744073709551616.0 && d == (double) (uint64_t) d)
                        return xasprintf("%" PRIu64, (uint64_t) d);
                return xasprintf("%g", d);
        }
        if (cJSON_IsArray(v)) {
                const cJSON *i;
                char *s = xstrdup("");

                cJSON_ArrayForEach(i, v) {
                        char *t = value_text(i), *n = xasprintf("%s%s%s", s, *s ? ", " : "", t);
                        free(t);
                        free(s);
                        s = n;
                }
                if (!*s) {
                        free(s);
                        s = xstrdup("-");
                }
                return s;
        }
        char *raw = cJSON_PrintUnformatted(v), *s = sanitize_text(raw ?: "?", CELL_MAX);
        cJSON_free(raw);
        return s;
}

void output_object(const cJSON *o, FILE *f) {
        const cJSON *i;
        size_t w = 0;

        cJSON_ArrayForEach(i, o)
                if (i->string && strlen(i->string) > w)
                        w = strlen(i->string);
        cJSON_ArrayForEach(i, o) {
                char *v = value_text(i), *k = sanitize_text(i->string ?: "", CELL_MAX);

                fprintf(f, "%s:%*s %s\n", k, (int) (w - strlen(k)), "", v);
                free(v);
                free(k);
        }
}

/* cJSON's own pretty printer indents with tabs and puts a tab after each colon; this
 * re-indents its compact form with two spaces, the way jq and Python print JSON. */
static void print_pretty(const char *s, FILE *f) {
        bool in_string = false;
        int depth = 0;

        for (; *s; s++) {
                char c = *s;

                if (in_string) {
                        fputc(c, f);
                        if (c == '\\' && s[1])
                                fputc(*++s, f);
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                switch (c) {
                case '"':
                        in_string = true;
                        fputc(c, f);
                        break;
                case '{':
                case '[':
                        fputc(c, f);
                        if (s[1] == '}' || s[1] == ']')
                                fputc(*++s, f);
                        else
                                fprintf(f, "\n%*s", 2 * ++depth, "");
                        break;
                case '}':
                case ']':
                        fprintf(f, "\n%*s%c", 2 * --depth, "", c);
                        break;
                case ',':
                        fprintf(f, ",\n%*s", 2 * depth, "");
                        break;
                case ':':
                        fputs(": ", f);
                        break;
                default:
                        fputc(c, f);
                }
        }
        fputc('\n', f);
}

void output_json(const cJSON *o) {
        char *s = cJSON_PrintUnformatted(o);

        if (!s)
                abort();
        print_pretty(s, stdout);
        cJSON_free(s);
}

void output_json_line(const cJSON *o) {
        char *s = cJSON_PrintUnformatted(o);

        if (!s)
                abort();
        puts(s);
        fflush(stdout);
        cJSON_free(s);
}
