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
        struct iovec iov[8];
        char *fields[8];
        size_t n = 0;
        fields[n++] = xasprintf("MESSAGE=%s", message);
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
        if (f && f->message_id)
                json_put_string(out, "message_id", f->message_id);
        fputs("}\n", out);
        if (fclose(out) == 0)
                (void) !write(STDERR_FILENO, buf, len);
        free(buf);
}

void log_fullv(int priority, const struct log_fields *f, const char *fmt, va_list ap) {
        if (priority > max_level && !sink)
                return;
        _cleanup_(freep) char *raw = xvasprintf(fmt, ap);
        /* Relay lines and peer-supplied text end up here: never let them forge lines. */
        /* Scrubbed before it is cut, so no secret survives in part. */
        _cleanup_(freep) char *message = sanitize_text(scrub_secrets(raw), 8192);
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

void log_full(int priority, const struct log_fields *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_fullv(priority, f, fmt, ap);
        va_end(ap);
}
