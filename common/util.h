/* Small helpers shared by mysocketd and mysocketctl. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Out of memory is not recoverable for a daemon this small: these abort. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);            /* NULL stays NULL */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))
void freep(void *p);                     /* for _cleanup_(freep) */

static inline bool streq(const char *a, const char *b) {
        return a && b && __builtin_strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        return (!a && !b) || streq(a, b);
}

/* A growable NULL-terminated array of owned strings (error lists and such). */
struct strv {
        char **items;
        size_t n;
};
void strv_push(struct strv *v, char *owned);
void strv_pushf(struct strv *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strv_clear(struct strv *v);

/* Binding names: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. */
bool binding_name_valid(const char *name);
#define BINDING_NAME_MAX 63

/* Parses a decimal port 1-65535 (the whole string). Returns 0 or -EINVAL. */
int parse_port(const char *s, uint16_t *ret);
/* Parses a decimal unsigned in [min, max] (the whole string). Returns 0, -EINVAL or -ERANGE. */
int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);
/* Parses yes/no/true/false/on/off/1/0. Returns 0 or -EINVAL. */
int parse_bool(const char *s, bool *ret);

/* Writes data to path atomically: temp file in the same directory, fsync, rename, fsync
 * of the directory. The file gets `mode`. Returns 0 or -errno; on failure the old content
 * (if any) is untouched and no temp file is left behind. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole regular file of at most `max` bytes into *ret (NUL-terminated; the length
 * in *ret_len, which may count NUL bytes of the file). Opens without blocking, so a FIFO or
 * a device never stalls the caller, and with `nofollow` refuses a symlink as the last part
 * of the path. *ret_st (if not NULL) gets fstat of what was read, for owner checks.
 * Returns 0, or -errno with *problem (caller frees) saying what is wrong with the file in
 * a few words ("is a FIFO, not a regular file", "is larger than 1024 KiB"). */
int read_file_checked(const char *path, size_t max, bool nofollow, char **ret, size_t *ret_len,
                      struct stat *ret_st, char **problem);
/* Removes path and fsyncs its directory. A missing file is success. Returns 0 or -errno. */
int unlink_durable(const char *path);
/* mkdir -p with `mode` for the directories it creates. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

/* Clock helpers, microseconds. */
uint64_t now_realtime_usec(void);
uint64_t now_monotonic_usec(void);
/* Formats a CLOCK_REALTIME usec timestamp as RFC 3339 UTC ("2026-11-22T10:00:00Z") into buf. */
char *format_rfc3339(uint64_t usec, char buf[static 32]);
/* Parses what format_rfc3339 writes. Returns 0 or -EINVAL. */
int parse_rfc3339(const char *s, uint64_t *ret);

/* A log/print-safe copy of s: control characters and invalid UTF-8 become '?'. Caller frees. */
char *sanitize_text(const char *s, size_t max);
/* True if s[0..len) is valid UTF-8 with no NUL byte. */
bool utf8_valid(const char *s, size_t len);
