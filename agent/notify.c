#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "notify.h"
#include "util.h"

static char *last_status;

void notify_ready(void) {
        sd_notify(0, "READY=1");
}

void notify_status(const char *text) {
        if (streq(text, last_status))
                return;
        free(last_status);
        last_status = xstrdup(text);
        sd_notifyf(0, "STATUS=%s", text);
}

void notify_bindings(unsigned up, unsigned total, unsigned failed) {
        _cleanup_(freep) char *text = failed
                ? xasprintf("%u/%u bindings up, %u failed", up, total, failed)
                : xasprintf("%u/%u bindings up", up, total);
        notify_status(text);
}

void notify_reloading(void) {
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) now_monotonic_usec());
}

void notify_stopping(void) {
        sd_notify(0, "STOPPING=1");
        free(last_status);
        last_status = NULL;
}
