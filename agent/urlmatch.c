/* public_url_pattern against the relay's lines; see urlmatch.h. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "urlmatch.h"
#include "util.h"

struct urlmatch {
        char *pattern;          /* the text it was compiled from */
        regex_t re;
};

void urlmatch_free(struct urlmatch *m) {
        if (!m)
                return;
        regfree(&m->re);
        free(m->pattern);
        free(m);
}

int urlmatch_line(struct urlmatch **m, const char *pattern, const char *line, char **url) {
        bool changed = false;
        *url = NULL;
        if (!pattern || !*pattern) {
                urlmatch_free(*m);
                *m = NULL;
                return 0;
        }
        if (!*m || !streq((*m)->pattern, pattern)) {
                urlmatch_free(*m);
                *m = xcalloc(1, sizeof(**m));
                /* conf_binding_check refuses a pattern that does not compile or has no group. */
                if (regcomp(&(*m)->re, pattern, REG_EXTENDED) != 0) {
                        free(*m);
                        *m = NULL;
                        return 0;
                }
                (*m)->pattern = xstrdup(pattern);
                changed = true;
        }
        regmatch_t g[2];
        if (regexec(&(*m)->re, line, 2, g, 0) != 0 || g[1].rm_so < 0 || g[1].rm_eo <= g[1].rm_so)
                return changed;
        *url = strndup(line + g[1].rm_so, (size_t) (g[1].rm_eo - g[1].rm_so));
        if (!*url)
                abort();
        return 1;
}
