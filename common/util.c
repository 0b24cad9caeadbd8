#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void oom(void) {
        static const char msg[] = "out of memory\n";
        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n) {
        p = realloc(p, n ? n : 1);
        if (!p)
                oom();
        return p;
}

char *xstrdup(const char *s) {
        if (!s)
                return NULL;
        char *r = strdup(s);
        if (!r)
                oom();
        return r;
}

char *xvasprintf(const char *fmt, va_list ap) {
        char *r;
        if (vasprintf(&r, fmt, ap) < 0)
                oom();
        return r;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *r = xvasprintf(fmt, ap);
        va_end(ap);
        return r;
}

void freep(void *p) {
        free(*(void **) p);
}

void strv_push(struct strv *v, char *owned) {
        v->items = xrealloc(v->items, (v->n + 2) * sizeof(char *));
        v->items[v->n++] = owned;
        v->items[v->n] = NULL;
}

void strv_pushf(struct strv *v, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        strv_push(v, xvasprintf(fmt, ap));
        va_end(ap);
}

bool strv_contains(const struct strv *v, const char *s) {
        for (size_t i = 0; i < v->n; i++)
                if (streq(v->items[i], s))
                        return true;
        return false;
}

void strv_clear(struct strv *v) {
        for (size_t i = 0; i < v->n; i++)
                free(v->items[i]);
        free(v->items);
        v->items = NULL;
        v->n = 0;
}

static bool is_name_char(char c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return !first && (c == '_' || c == '.' || c == '-');
}

bool binding_name_valid(const char *name) {
        if (!name || !name[0])
                return false;
        size_t i;
        for (i = 0; name[i]; i++)
                if (i >= BINDING_NAME_MAX || !is_name_char(name[i], i == 0))
                        return false;
        return true;
}

bool remote_id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        return n > 0 && n <= REMOTE_ID_MAX &&
               strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        if (!s || !*s)
                return -EINVAL;
        unsigned long long v = 0;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (*p - '0');
                if (v > UINT_MAX)
                        return -ERANGE;
        }
        if (v < min || v > max)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

char *display_name_default(const char *name, const char *hostname) {
        char host[256] = "localhost";
        if (!hostname) {
                if (gethostname(host, sizeof(host) - 1) < 0)
                        strcpy(host, "localhost");
                host[sizeof(host) - 1] = '\0';
                hostname = host;
        }
        return xasprintf("%s on %s", name, hostname);
}

static const char *const socket_type_table[_SOCKET_TYPE_MAX] = {
        [SOCKET_TYPE_HTTP] = "http",
        [SOCKET_TYPE_HTTPS] = "https",
        [SOCKET_TYPE_TCP] = "tcp",
        [SOCKET_TYPE_TLS] = "tls",
};

const char *socket_type_to_string(enum socket_type t) {
        return (unsigned) t < _SOCKET_TYPE_MAX ? socket_type_table[t] : NULL;
}

int socket_type_from_string(const char *s) {
        for (int i = 0; i < _SOCKET_TYPE_MAX; i++)
                if (streq(s, socket_type_table[i]))
                        return i;
        return -EINVAL;
}

char *format_host_port(const char *host, uint16_t port) {
        bool v6 = strchr(host, ':');
        return xasprintf("%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

int parse_listen_address(const char *s, struct sockaddr_storage *ret, unsigned *len) {
        const char *colon = strrchr(s, ':');
        char host[INET6_ADDRSTRLEN + 2];
        uint16_t port;
        if (!colon || (size_t) (colon - s) >= sizeof(host) || parse_port(colon + 1, &port) < 0)
                return -EINVAL;
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = '\0';
        memset(ret, 0, sizeof(*ret));
        size_t n = strlen(host);
        if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) ret;
                host[n - 1] = '\0';
                if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
                        return -EINVAL;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons(port);
                *len = sizeof(*a);
                return 0;
        }
        struct sockaddr_in *a = (struct sockaddr_in *) ret;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                return -EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        *len = sizeof(*a);
        return 0;
}

int parse_port(const char *s, uint16_t *ret) {
        unsigned v;
        if (parse_uint(s, 1, 65535, &v) < 0)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };
        for (size_t i = 0; s && i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int fsync_dir_of(const char *path) {
        _cleanup_(freep) char *copy = xstrdup(path);
        int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return r;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        _cleanup_(freep) char *tmp = xasprintf("%s.tmp.XXXXXX", path);
        int r = 0;
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0) {
                r = -errno;
                goto out;
        }
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, (const char *) data + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                done += (size_t) n;
        }
        if (fsync(fd) < 0) {
                r = -errno;
                goto out;
        }
        if (close(fd) < 0) {
                fd = -1;
                r = -errno;
                goto out;
        }
        fd = -1;
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto out;
        }
        return fsync_dir_of(path);
out:
        if (fd >= 0)
                close(fd);
        unlink(tmp);
        return r;
}

static const char *file_kind(mode_t m) {
        return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" :
                S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symlink" : "special";
}

/* Reads fd into buf until EOF or until cap bytes are there (*len counts them, from what
 * it holds on entry). Returns 0 or -errno. */
static int read_up_to(int fd, char *buf, size_t cap, size_t *len) {
        while (*len < cap) {
                ssize_t n = read(fd, buf + *len, cap - *len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                *len += (size_t) n;
        }
        return 0;
}

int read_file_checked(const char *path, size_t max, bool nofollow, char **ret, size_t *ret_len,
                      struct stat *ret_st, char **problem) {
        struct stat st;
        char *buf = NULL;
        size_t len = 0;
        int r = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
        if (fd < 0) {
                r = -errno;
                *problem = r == -ELOOP && nofollow ? xstrdup("is a symlink (refused here)")
                                                   : xasprintf("cannot open: %s", strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                *problem = xasprintf("cannot stat: %s", strerror(-r));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                r = -EINVAL;
                *problem = xasprintf("is %s, not a regular file", file_kind(st.st_mode));
                goto out;
        }
        if ((uint64_t) st.st_size > max) {
                r = -EFBIG;
                *problem = xasprintf("is larger than %zu KiB (%jd bytes)", max / 1024, (intmax_t) st.st_size);
                goto out;
        }
        buf = xmalloc(max + 1);
        /* Read to the end, not to st_size: the file may grow while we read; past max it is refused. */
        if ((r = read_up_to(fd, buf, max + 1, &len)) < 0) {
                *problem = xasprintf("cannot read: %s", strerror(-r));
                goto out;
        }
        if (len > max) {
                r = -EFBIG;
                *problem = xasprintf("is larger than %zu KiB", max / 1024);
                goto out;
        }
        buf[len] = '\0';
        *ret = xrealloc(buf, len + 1);
        buf = NULL;
        *ret_len = len;
        if (ret_st)
                *ret_st = st;
out:
        free(buf);
        close(fd);
        return r;
}

int unlink_durable(const char *path) {
        if (unlink(path) < 0)
                return errno == ENOENT ? 0 : -errno;
        return fsync_dir_of(path);
}

size_t strip_line_end(const char *s, size_t len) {
        if (len > 0 && s[len - 1] == '\n') {
                len--;
                if (len > 0 && s[len - 1] == '\r')
                        len--;
        }
        return len;
}

int secret_file_read(const char *path, const char *what, size_t max, char **ret, char **error) {
        char *buf = xmalloc(max + 2);
        struct stat st;
        size_t len = 0;
        int r = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);   /* a FIFO must not block */
        if (fd < 0) {
                r = -errno;
                *error = xasprintf("cannot open %s file %s: %s", what, path, strerror(-r));
                goto out;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = -EINVAL;
                *error = xasprintf("%s file %s is not a regular file", what, path);
                goto out;
        }
        /* Like OpenSSH with a private key: a secret others may read is not one. */
        if (st.st_mode & 077) {
                r = -EPERM;
                *error = xasprintf("%s file %s is readable by others (mode %04o); chmod 600 %s",
                                   what, path, (unsigned) (st.st_mode & 07777), path);
                goto out;
        }
        /* Up to max + 1 bytes (a final line end beyond max is still the file's) plus one
         * more to see that the file is longer. */
        if ((r = read_up_to(fd, buf, max + 2, &len)) < 0) {
                *error = xasprintf("cannot read %s file %s: %s", what, path, strerror(-r));
                goto out;
        }
        len = strip_line_end(buf, len);
        if (len > max) {
                r = -EFBIG;
                *error = xasprintf("%s file %s is longer than %zu bytes", what, path, max);
                goto out;
        }
        buf[len] = '\0';
        if (len == 0 || strlen(buf) != len) {
                r = -EINVAL;
                *error = xasprintf("%s file %s is empty or not text", what, path);
                goto out;
        }
        if (strpbrk(buf, "\r\n")) {
                r = -EINVAL;
                *error = xasprintf("%s file %s holds more than one line: only one line end, at the end, "
                                   "is allowed", what, path);
                goto out;
        }
        *ret = buf;
        buf = NULL;
out:
        if (buf) {
                explicit_bzero(buf, max + 2);
                free(buf);
        }
        if (fd >= 0)
                close(fd);
        return r;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_(freep) char *p = xstrdup(path);
        for (char *s = p + 1; ; s++) {
                if (*s != '/' && *s != '\0')
                        continue;
                char saved = *s;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = saved;
                if (!saved)
                        break;
        }
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static uint64_t now_usec(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t now_realtime_usec(void) {
        return now_usec(CLOCK_REALTIME);
}

uint64_t now_monotonic_usec(void) {
        return now_usec(CLOCK_MONOTONIC);
}

char *format_rfc3339(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

int parse_rfc3339(const char *s, uint64_t *ret) {
        struct tm tm = { 0 };
        const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
        if (!end || *end)
                return -EINVAL;
        time_t t = timegm(&tm);
        /* strptime takes seconds 60 and 61 (leap seconds) and timegm carries them over:
         * 9999-12-31T23:59:60Z is year 10000, which format_rfc3339 would write and this
         * function refuse (found by tests/fuzz/fuzz-protocol). */
        if (t < 0 || t > 253402300799)      /* 9999-12-31T23:59:59Z */
                return -EINVAL;
        *ret = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail) {
        size_t len;
        uint32_t cp;
        if (s[0] < 0x80)
                return 1;
        else if ((s[0] & 0xe0) == 0xc0)
                len = 2, cp = s[0] & 0x1f;
        else if ((s[0] & 0xf0) == 0xe0)
                len = 3, cp = s[0] & 0x0f;
        else if ((s[0] & 0xf8) == 0xf0)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (len > avail)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
        static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

char *sanitize_text(const char *s, size_t max) {
        size_t n = strnlen(s, max);
        char *r = xmalloc(n + 1), *o = r;
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n;) {
                size_t len = utf8_seq_len(p + i, n - i);
                if (len == 0 || (len == 1 && (p[i] < 0x20 || p[i] == 0x7f) && p[i] != '\t')) {
                        *o++ = '?';
                        i++;
                        continue;
                }
                memcpy(o, p + i, len);
                o += len;
                i += len;
        }
        *o = '\0';
        return r;
}

bool utf8_valid(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < len;) {
                size_t n = utf8_seq_len(p + i, len - i);
                if (n == 0 || p[i] == 0)
                        return false;
                i += n;
        }
        return true;
}

uint64_t backoff_cap_usec(uint64_t initial, uint64_t max, unsigned failures) {
        uint64_t cap = initial;
        for (unsigned i = 0; i < failures && cap < max; i++)
                cap *= 2;
        return cap > max ? max : cap;
}

uint64_t backoff_usec(uint64_t initial, uint64_t max, unsigned failures) {
        uint64_t cap = backoff_cap_usec(initial, max, failures), v;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_monotonic_usec() * 6364136223846793005ull + (uint64_t) getpid();
        /* Uniform in [minimum, cap]: clamping a draw from [0, cap] up to the minimum would
         * put every draw below it on the same instant (a tenth of them, for a 1 s cap). */
        if (cap <= BACKOFF_MIN_USEC)
                return BACKOFF_MIN_USEC;
        return BACKOFF_MIN_USEC + v % (cap - BACKOFF_MIN_USEC + 1);
}

char *format_timespan(uint64_t usec) {
        uint64_t s = usec / USEC_PER_SEC;
        if (s < 10)
                return xasprintf("%.1f s", (double) usec / USEC_PER_SEC);
        if (s >= 2 * 86400)
                return xasprintf("%llu days", (unsigned long long) (s / 86400));
        if (s >= 3600)
                return xasprintf("%llu h", (unsigned long long) ((s + 1800) / 3600));
        if (s >= 60)
                return xasprintf("%llu min", (unsigned long long) ((s + 30) / 60));
        return xasprintf("%llu s", (unsigned long long) s);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int list_files_sorted(const char *dir, const char *suffix, struct strv *ret) {
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        size_t n0 = ret->n, sl = strlen(suffix);
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (de->d_name[0] != '.' && len > sl && streq(de->d_name + len - sl, suffix))
                        strv_push(ret, xasprintf("%s/%s", dir, de->d_name));
        }
        closedir(d);
        if (ret->n > n0)
                qsort(ret->items + n0, ret->n - n0, sizeof(char *), cmp_str);
        return 0;
}
