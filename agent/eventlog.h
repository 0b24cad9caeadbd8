/* The daemon's memory of recent events, for `mysocketctl logs [-f]`: a ring of the last
 * EVENTLOG_SIZE log entries (edge logs included) and a list of live subscribers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define EVENTLOG_SIZE 1000

struct eventlog_entry {
        uint64_t time;          /* realtime usec */
        int priority;
        char *binding;          /* NULL for daemon-wide events */
        char *event;
        char *message;
};

/* Called for each new entry; the entry is only valid during the call. */
typedef void (*eventlog_subscriber_t)(const struct eventlog_entry *e, void *userdata);

struct eventlog;

/* Creates the ring and installs it as the log sink. */
struct eventlog *eventlog_new(void);
void eventlog_free(struct eventlog *l);
/* Calls fn for the newest `max` entries (oldest first), only those of `binding` if set. */
void eventlog_foreach(struct eventlog *l, const char *binding, unsigned max,
                      eventlog_subscriber_t fn, void *userdata);
/* Subscribers are identified by userdata. */
void eventlog_subscribe(struct eventlog *l, eventlog_subscriber_t fn, void *userdata);
void eventlog_unsubscribe(struct eventlog *l, void *userdata);
