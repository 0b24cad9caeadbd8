/* One logging layer for the daemon (and the few lines mysocketctl prints on stderr).
 *
 * When stderr is the journal ($JOURNAL_STREAM names stderr's device:inode) entries go to
 * journald with structured fields; otherwise one readable line per event goes to stderr:
 *   "<level> web: up (relay port 6054)"   (binding-scoped)
 * In the journal a binding-scoped MESSAGE starts with "NAME: " too.
 * Secrets never go through here: callers pass only names, states and error texts. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

/* Well-known MESSAGE_IDs (see etc/mysocketd.catalog). */
#define LOG_MESSAGE_ID_UP   "6c1e8a7b0f2d4b5e9a3c1d2e3f405162"
#define LOG_MESSAGE_ID_DOWN "a4b3c2d1e0f94a8b8c7d6e5f40312233"

/* A line that repeats (same priority, binding and text) is let through once per this
 * interval; the next one after it is preceded by "suppressed N similar messages in T s". */
#define LOG_RATELIMIT_USEC (5 * 1000000ull)

struct log_fields {
        const char *binding;      /* MYSOCKETD_BINDING */
        const char *event;        /* MYSOCKETD_EVENT: up, down, backoff, resolve, token-refresh, edge-log, ... */
        const char *socket_id;    /* MYSOCKETD_SOCKET_ID */
        const char *tunnel_id;    /* MYSOCKETD_TUNNEL_ID */
        const char *relay;        /* MYSOCKETD_RELAY: "relay HOST port N[, socket S, tunnel T]" */
        const char *message_id;   /* MESSAGE_ID */
};

/* Sink that sees every event logged (the daemon keeps a ring of recent events for
 * `mysocketctl logs`). Called after the message is formatted; must not log itself. */
typedef void (*log_sink_t)(int priority, const struct log_fields *f, const char *message, void *userdata);

/* The stderr format when stderr is not the journal (SPEC §10 log_format). */
enum log_format {
        LOG_FORMAT_TEXT,         /* "<level> NAME: message" */
        LOG_FORMAT_JSON,         /* one object a line: time, priority, message, binding, event, ... */
        _LOG_FORMAT_MAX,
};

void log_open(const char *ident);          /* decides journal vs stderr */
void log_set_format(enum log_format format);
int log_format_from_string(const char *s); /* "text|json" -> LOG_FORMAT_*, or -EINVAL */
void log_set_max_level(int priority);       /* LOG_DEBUG..LOG_ERR */
int log_get_max_level(void);
int log_level_from_string(const char *s);  /* "debug|info|notice|warning|error" -> LOG_*, or -EINVAL */
const char *log_level_to_string(int priority);
void log_set_sink(log_sink_t sink, void *userdata);
/* Reports the lines held back by the rate limit whose interval is over (call it from a
 * timer: without it a count waits for the next line of its kind). */
void log_flush_suppressed(void);

void log_fullv(int priority, const struct log_fields *f, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
void log_full(int priority, const struct log_fields *f, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_debug(...)   log_full(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, NULL, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, NULL, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, NULL, __VA_ARGS__)

/* Binding-scoped: the message is prefixed with "NAME: " on stderr; fields carry the rest. */
#define log_binding(prio, name, ev, ...) \
        log_full((prio), &(struct log_fields){ .binding = (name), .event = (ev) }, __VA_ARGS__)
