/* The log shell's line splitter (see logline.h), cut from bridge.c. */
#include <stdlib.h>

#include "logline.h"
#include "util.h"

/* buf exists only while a line is half read: every idle API session has a log shell, and
 * 4 KiB each adds up over hundreds of them. */
struct logline {
        char *buf;
        size_t len;
};

struct logline *logline_new(void) {
        return xcalloc(1, sizeof(struct logline));
}

void logline_free(struct logline *l) {
        if (l)
                free(l->buf);
        free(l);
}

static bool emit_line(struct logline *l, bool (*emit)(const char *line, void *userdata), void *userdata) {
        bool go_on = true;
        if (l->len > 0) {
                l->buf[l->len] = 0;
                _cleanup_(freep) char *line = sanitize_text(l->buf, LOGLINE_MAX);
                go_on = emit(line, userdata);
        }
        l->len = 0;
        free(l->buf);
        l->buf = NULL;
        return go_on;
}

void logline_feed(struct logline *l, const char *p, size_t n, bool (*emit)(const char *line, void *userdata),
                  void *userdata) {
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\r')
                        continue;
                if (p[i] == '\n') {
                        if (!emit_line(l, emit, userdata))
                                return;
                        continue;
                }
                if (l->len == LOGLINE_MAX && !emit_line(l, emit, userdata))
                        return;
                if (!l->buf)
                        l->buf = xmalloc(LOGLINE_MAX + 1);
                l->buf[l->len++] = p[i];
        }
}
