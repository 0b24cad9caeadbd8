#pragma once
/* A binding's public_url_pattern (a POSIX extended regex with one group) applied to the
 * relay's log lines: the text of the group is the public URL the relay gave. */

struct urlmatch;

/* Matches `line` against `pattern`, compiling it into *m when *m is NULL or was made from
 * another pattern (a reload may change it); a NULL or empty pattern frees *m. Returns 1
 * with *url (caller frees) set to the group's text when the line matches, 1 with *url NULL
 * when the pattern changed (so what an old one found is void), 0 otherwise. */
int urlmatch_line(struct urlmatch **m, const char *pattern, const char *line, char **url);
/* NULL is fine. */
void urlmatch_free(struct urlmatch *m);
