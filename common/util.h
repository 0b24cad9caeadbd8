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
/* Whether s is one of v's items. */
bool strv_contains(const struct strv *v, const char *s);

/* Binding names: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. */
bool binding_name_valid(const char *name);
#define BINDING_NAME_MAX 63
#define BINDING_DEFAULT_HOST "127.0.0.1"   /* a binding without host (SPEC §3) */
#define BINDING_NAME_RULE "up to 63 letters, digits, '_', '.' and '-', starting with a letter or digit"
/* A binding's display name when none is set (SPEC §3): "NAME on HOSTNAME"; hostname NULL
 * means this machine's (gethostname(), "localhost" if that fails). Caller frees. */
char *display_name_default(const char *name, const char *hostname);

/* The binding types (SPEC §3): the INI's `type`, the protocol's "type", the API's
 * socket_type all use these words. */
enum socket_type {
        SOCKET_TYPE_HTTP,
        SOCKET_TYPE_HTTPS,
        SOCKET_TYPE_TCP,
        SOCKET_TYPE_TLS,
        _SOCKET_TYPE_MAX,
};
#define SOCKET_TYPE_NAMES "http, https, tcp, tls"     /* for messages */
const char *socket_type_to_string(enum socket_type t);  /* NULL if out of range */
int socket_type_from_string(const char *s);          /* or -EINVAL */

/* "host:port", or "[host]:port" when host is an IPv6 address (has a ':'). Caller frees. */
char *format_host_port(const char *host, uint16_t port);
/* Ids of the mysocket API (socket_id, tunnel_id, user_id): [A-Za-z0-9_-]{1,128}. They end
 * up in URL paths and file names, so no '/', '.', '%' or spaces. */
bool remote_id_valid(const char *id);
#define REMOTE_ID_MAX 128

#define USEC_PER_SEC 1000000ULL

/* Parses a listening address "IPV4:PORT" or "[IPV6]:PORT" (numeric literals only, port
 * 1-65535) into *ret and *len. Returns 0 or -EINVAL. */
struct sockaddr_storage;
int parse_listen_address(const char *s, struct sockaddr_storage *ret, unsigned *len);

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
/* The length of s[0..len) without one final line end, "\n" or "\r\n". */
size_t strip_line_end(const char *s, size_t len);
/* Reads a secret (a password, a token) from a file only its owner may read: a regular file
 * with no group or other permission bits. One line end at the end ("\n" or "\r\n") is the
 * file's and is dropped; everything else is the secret, blanks included. Refused: a file
 * longer than max bytes (-EFBIG), empty or holding a NUL byte, or holding a line end before
 * the last (-EINVAL), readable by others (-EPERM). `what` names it in messages ("password"
 * -> "password file PATH is ..."). Returns 0 with *ret (the caller wipes and frees it), or
 * -errno with *error a sentence (caller frees). */
int secret_file_read(const char *path, const char *what, size_t max, char **ret, char **error);
#define SECRET_FILE_MAX 8192   /* the API password and token files */
/* mkdir -p with `mode` for the directories it creates. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

/* Clock helpers, microseconds. */
uint64_t now_realtime_usec(void);
uint64_t now_monotonic_usec(void);
/* A retry delay: exponential from initial to max (usec) after `failures` failures, with
 * full jitter (uniform in [100 ms, cap]), so that many clients do not come back at once. */
uint64_t backoff_usec(uint64_t initial, uint64_t max, unsigned failures);
/* The cap backoff_usec draws from after `failures` failures: initial doubled, at most max. */
uint64_t backoff_cap_usec(uint64_t initial, uint64_t max, unsigned failures);
#define BACKOFF_MIN_USEC (100 * 1000ull)   /* never spin: even full jitter waits this long */
/* The accuracy to arm a retry timer with. sd-event's default (accuracy 0) is 250 ms and
 * moves every timer onto one grid of the machine to coalesce wake-ups: retries jittered
 * over [0, cap] then fire in bursts, up to a quarter of a second's worth at once. */
#define BACKOFF_ACCURACY_USEC (1000ull)
/* A duration for people: "0.4 s", "42 s", "7 min", "3 h", "12 days". Caller frees. */
char *format_timespan(uint64_t usec);
/* Formats a CLOCK_REALTIME usec timestamp as RFC 3339 UTC ("2026-11-22T10:00:00Z") into buf. */
char *format_rfc3339(uint64_t usec, char buf[static 32]);
/* Parses what format_rfc3339 writes. Returns 0 or -EINVAL. */
int parse_rfc3339(const char *s, uint64_t *ret);

/* A log/print-safe copy of s: control characters and invalid UTF-8 become '?'. Caller frees. */
char *sanitize_text(const char *s, size_t max);
/* True if s[0..len) is valid UTF-8 with no NUL byte. */
bool utf8_valid(const char *s, size_t len);

/* Appends the paths of dir's files named *SUFFIX (not starting with '.'), sorted by name; a
 * missing directory has none. Returns 0 or -errno. */
int list_files_sorted(const char *dir, const char *suffix, struct strv *ret);
