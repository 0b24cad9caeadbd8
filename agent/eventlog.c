#include <stdlib.h>

#include "eventlog.h"
#include "log.h"
#include "util.h"

struct subscriber {
        eventlog_subscriber_t fn;
        void *userdata;
};

struct eventlog {
        struct eventlog_entry ring[EVENTLOG_SIZE];
        size_t next;            /* slot the next entry goes to */
        size_t count;
        struct subscriber *subs;
        size_t n_subs;
};

static void entry_clear(struct eventlog_entry *e) {
        free(e->binding);
        free(e->event);
        free(e->message);
        *e = (struct eventlog_entry) { 0 };
}

static void sink(int priority, const struct log_fields *f, const char *message, void *userdata) {
        struct eventlog *l = userdata;
        /* Debug chatter stays out of the ring unless the admin asked for it. */
        if (priority > LOG_INFO && priority > log_get_max_level())
                return;
        struct eventlog_entry *e = &l->ring[l->next];
        entry_clear(e);
        *e = (struct eventlog_entry) {
                .time = now_realtime_usec(),
                .priority = priority,
                .binding = xstrdup(f ? f->binding : NULL),
                .event = xstrdup(f ? f->event : NULL),
                .message = xstrdup(message),
        };
        l->next = (l->next + 1) % EVENTLOG_SIZE;
        if (l->count < EVENTLOG_SIZE)
                l->count++;
        /* A subscriber may unsubscribe itself (its client went away) while we iterate. */
        for (size_t i = l->n_subs; i > 0; i--)
                if (i <= l->n_subs)
                        l->subs[i - 1].fn(e, l->subs[i - 1].userdata);
}

struct eventlog *eventlog_new(void) {
        struct eventlog *l = xcalloc(1, sizeof(*l));
        log_set_sink(sink, l);
        return l;
}

void eventlog_free(struct eventlog *l) {
        if (!l)
                return;
        log_set_sink(NULL, NULL);
        for (size_t i = 0; i < EVENTLOG_SIZE; i++)
                entry_clear(&l->ring[i]);
        free(l->subs);
        free(l);
}

void eventlog_foreach(struct eventlog *l, const char *binding, unsigned max,
                      eventlog_subscriber_t fn, void *userdata) {
        size_t start = (l->next + EVENTLOG_SIZE - l->count) % EVENTLOG_SIZE;
        size_t matching = 0;
        for (size_t i = 0; i < l->count; i++) {
                const struct eventlog_entry *e = &l->ring[(start + i) % EVENTLOG_SIZE];
                if (!binding || streq(binding, e->binding))
                        matching++;
        }
        size_t skip = matching > max ? matching - max : 0;
        for (size_t i = 0; i < l->count; i++) {
                const struct eventlog_entry *e = &l->ring[(start + i) % EVENTLOG_SIZE];
                if (binding && !streq(binding, e->binding))
                        continue;
                if (skip > 0) {
                        skip--;
                        continue;
                }
                fn(e, userdata);
        }
}

void eventlog_subscribe(struct eventlog *l, eventlog_subscriber_t fn, void *userdata) {
        l->subs = xrealloc(l->subs, (l->n_subs + 1) * sizeof(*l->subs));
        l->subs[l->n_subs++] = (struct subscriber) { fn, userdata };
}

void eventlog_unsubscribe(struct eventlog *l, void *userdata) {
        for (size_t i = 0; i < l->n_subs; i++)
                if (l->subs[i].userdata == userdata) {
                        l->subs[i] = l->subs[--l->n_subs];
                        return;
                }
}
