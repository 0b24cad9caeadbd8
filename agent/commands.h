/* The daemon's side of each control command: one function per command, in one table. */
#pragma once

#include <cjson/cJSON.h>

#include "control.h"
#include "eventlog.h"
#include "manager.h"

struct commands {
        struct manager *manager;
        struct eventlog *eventlog;
        const char *control_socket;      /* what we listen on, for `status` */
        unsigned connect_seq;            /* names connect-N are never reused */
};

/* The control_handler_t for control_new(); userdata is a struct commands. */
cJSON *commands_dispatch(struct control_client *c, const cJSON *request, const char *cmd, void *userdata);
