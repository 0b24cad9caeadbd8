#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"
#include "scrub.h"
#include "util.h"

static const char *log_ident = "mysocketd";
static int max_level = LOG_INFO;
static bool to_journal;
static enum log_format format = LOG_FORMAT_TEXT;
static log_sink_t sink;
static void *sink_userdata;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "error",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

/* systemd sets $JOURNAL_STREAM to "DEV:INODE" of the stream it connected to stderr; if it
 * still matches, stderr is the journal and structured entries are better than text. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_open(const char *ident) {
        log_ident = ident;
        to_journal = stderr_is_journal();
}

void log_set_format(enum log_format f) {
        format = f;
}

int log_format_from_string(const char *s) {
        if (streq(s, "text"))
                return LOG_FORMAT_TEXT;
        if (streq(s, "json"))
                return LOG_FORMAT_JSON;
        return -EINVAL;
}

void log_set_max_level(int priority) {
        max_level = priority;
}

int log_get_max_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        if (streq(s, "warn"))
                return LOG_WARNING;
        for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
                if (streq(s, level_names[i]))
                        return i;
        return -EINVAL;
}

const char *log_level_to_string(int priority) {
        return priority >= 0 && priority <= LOG_DEBUG ? level_names[priority] : "unknown";
}

void log_set_sink(log_sink_t s, void *userdata) {
        sink = s;
        sink_userdata = userdata;
}

static void send_journal(int priority, const struct log_fields *f, const char *message) {
        struct iovec iov[9];
        char *fields[9];
        size_t n = 0;
        fields[n++] = f && f->binding ? xasprintf("MESSAGE=%s: %s", f->binding, message)
                                      : xasprintf("MESSAGE=%s", message);
        fields[n++] = xasprintf("PRIORITY=%d", priority);
        fields[n++] = xasprintf("SYSLOG_IDENTIFIER=%s", log_ident);
        if (f && f->binding)
                fields[n++] = xasprintf("MYSOCKETD_BINDING=%s", f->binding);
        if (f && f->event)
                fields[n++] = xasprintf("MYSOCKETD_EVENT=%s", f->event);
        if (f && f->socket_id)
                fields[n++] = xasprintf("MYSOCKETD_SOCKET_ID=%s", f->socket_id);
        if (f && f->tunnel_id)
                fields[n++] = xasprintf("MYSOCKETD_TUNNEL_ID=%s", f->tunnel_id);
        if (f && f->relay)
                fields[n++] = xasprintf("MYSOCKETD_RELAY=%s", f->relay);
        if (f && f->message_id)
                fields[n++] = xasprintf("MESSAGE_ID=%s", f->message_id);
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec) { .iov_base = fields[i], .iov_len = strlen(fields[i]) };
        if (sd_journal_sendv(iov, (int) n) < 0)
                fprintf(stderr, "<%d>%s\n", priority, message);
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
}

/* A JSON string member. Ids may come from the API as any bytes: invalid UTF-8 becomes
 * '?' (as in the text format), and what JSON forbids raw is escaped. */
static void json_put_string(FILE *out, const char *key, const char *raw) {
        _cleanup_(freep) char *value = sanitize_text(raw, 8192);
        fprintf(out, ",\"%s\":\"", key);
        for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(out, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(out, "\\u%04x", *p);
                else
                        fputc(*p, out);
        }
        fputc('"', out);
}

/* One JSON object a line (log_format = json): for containers and hosts without journald.
 * The line is built in memory and written with one call, so lines never interleave. */
static void write_json(int priority, const struct log_fields *f, const char *message) {
        char *buf = NULL, stamp[40];
        size_t len = 0;
        uint64_t usec = now_realtime_usec();
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&sec, &tm);
        size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof(stamp) - n, ".%06uZ", (unsigned) (usec % USEC_PER_SEC));
        FILE *out = open_memstream(&buf, &len);
        if (!out) {
                fprintf(stderr, "%s: %s\n", level_names[priority], message);
                return;
        }
        fprintf(out, "{\"time\":\"%s\"", stamp);
        json_put_string(out, "priority", level_names[priority]);
        json_put_string(out, "ident", log_ident);
        json_put_string(out, "message", message);
        if (f && f->binding)
                json_put_string(out, "binding", f->binding);
        if (f && f->event)
                json_put_string(out, "event", f->event);
        if (f && f->socket_id)
                json_put_string(out, "socket_id", f->socket_id);
        if (f && f->tunnel_id)
                json_put_string(out, "tunnel_id", f->tunnel_id);
        if (f && f->relay)
                json_put_string(out, "relay", f->relay);
        if (f && f->message_id)
                json_put_string(out, "message_id", f->message_id);
        fputs("}\n", out);
        if (fclose(out) == 0)
                (void) !write(STDERR_FILENO, buf, len);
        free(buf);
}

/* Repeated lines are rate-limited: one per LOG_RATELIMIT_USEC for each kind (same
 * priority, binding and text), and the next one after that, or log_flush_suppressed(),
 * says how many were held back. */
#define RATELIMIT_SLOTS 64

struct ratelimit {
        uint64_t key;
        uint64_t since;         /* monotonic usec of the last line let through; 0: free */
        unsigned suppressed;
        int priority;
        char binding[BINDING_NAME_MAX + 1];
        char sample[81];        /* the start of the text, for a summary on its own */
};
static struct ratelimit ratelimits[RATELIMIT_SLOTS];

static uint64_t kind_of(int priority, const char *binding, const char *message) {
        uint64_t h = 14695981039346656037ull ^ (uint64_t) priority;
        for (const char *s = binding ? binding : ""; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        for (const char *s = message; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        return h;
}

static void emit(int priority, const struct log_fields *f, const char *message);

static void emit_summary(struct ratelimit *r, uint64_t now, bool alone) {
        _cleanup_(freep) char *note = xasprintf("suppressed %u similar message%s in %.0f s%s%s%s", r->suppressed,
                                                r->suppressed == 1 ? "" : "s", (double) (now - r->since) / 1e6,
                                                alone ? " (\"" : "", alone ? r->sample : "", alone ? "...\")" : "");
        const struct log_fields nf = { .binding = r->binding[0] ? r->binding : NULL, .event = "suppressed" };
        r->suppressed = 0;
        emit(r->priority, &nf, note);
}

/* Returns false to hold the line back; first reports what an earlier window held back. */
static bool ratelimit_pass(int priority, const char *binding, const char *message) {
        uint64_t now = now_monotonic_usec(), key = kind_of(priority, binding, message);
        struct ratelimit *slot = &ratelimits[0];
        for (size_t i = 0; i < RATELIMIT_SLOTS; i++) {
                struct ratelimit *r = &ratelimits[i];
                if (r->since && r->key == key) {
                        if (now - r->since < LOG_RATELIMIT_USEC) {
                                r->suppressed++;
                                return false;
                        }
                        if (r->suppressed)
                                emit_summary(r, now, false);
                        r->since = now;
                        return true;
                }
                if (r->since < slot->since)
                        slot = r;
        }
        if (slot->suppressed)
                emit_summary(slot, now, true);
        *slot = (struct ratelimit) { .key = key, .since = now, .priority = priority };
        snprintf(slot->binding, sizeof(slot->binding), "%s", binding ? binding : "");
        snprintf(slot->sample, sizeof(slot->sample), "%s", message);
        return true;
}

void log_flush_suppressed(void) {
        uint64_t now = now_monotonic_usec();
        for (size_t i = 0; i < RATELIMIT_SLOTS; i++) {
                struct ratelimit *r = &ratelimits[i];
                if (r->suppressed && now - r->since >= LOG_RATELIMIT_USEC) {
                        emit_summary(r, now, true);
                        r->since = now;
                }
        }
}

static void emit(int priority, const struct log_fields *f, const char *message) {
        if (sink)
                sink(priority, f, message, sink_userdata);
        if (priority > max_level)
                return;
        if (to_journal) {
                send_journal(priority, f, message);
                return;
        }
        if (format == LOG_FORMAT_JSON) {
                write_json(priority, f, message);
                return;
        }
        if (f && f->binding)
                fprintf(stderr, "%s: %s: %s\n", level_names[priority], f->binding, message);
        else
                fprintf(stderr, "%s: %s\n", level_names[priority], message);
}

void log_fullv(int priority, const struct log_fields *f, const char *fmt, va_list ap) {
        /* Debug chatter below the level goes nowhere (the sink keeps info and up): it must
         * not take the rate limit's slots either. */
        if (priority > max_level && (!sink || priority > LOG_INFO))
                return;
        _cleanup_(freep) char *raw = xvasprintf(fmt, ap);
        /* Relay lines and peer-supplied text end up here: never let them forge lines.
         * Scrubbed before it is cut, so no secret survives in part. */
        _cleanup_(freep) char *message = sanitize_text(scrub_secrets(raw), 8192);
        /* A binding's up and down are its story: never held back. */
        if (!(f && f->message_id) && !ratelimit_pass(priority, f ? f->binding : NULL, message))
                return;
        emit(priority, f, message);
}

void log_full(int priority, const struct log_fields *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_fullv(priority, f, fmt, ap);
        va_end(ap);
}
