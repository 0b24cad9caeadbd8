/* The last line of defence against a secret in text that leaves the process (log lines,
 * control replies): the secrets in use are remembered here, and scrub_secrets() masks
 * any of them found in a text. Code that holds a secret (the API password and token, a
 * socket's protected password, proxy credentials) adds it while it is in use. */
#pragma once

#define SCRUB_MIN 3            /* shorter strings are too common to mask (and no secret) */
#define SCRUB_MASK "***"

/* Remembers a copy of secret (counted: add twice, remove twice). NULL or shorter than
 * SCRUB_MIN is ignored. */
void scrub_add(const char *secret);
/* Forgets one count of secret; the copy is wiped when the count drops to 0. */
void scrub_remove(const char *secret);
/* Replaces every remembered secret in s, in place, by SCRUB_MASK (never longer than a
 * secret, so s never grows). Returns s. NULL is fine. */
char *scrub_secrets(char *s);
/* Forgets everything (tests, exit). */
void scrub_clear(void);
/* Overwrites the NUL-terminated secret s with zeros and frees it. NULL is fine. */
void scrub_free(char *s);
