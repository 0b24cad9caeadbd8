/* Shared by protocol.c (framing, requests, replies, getters) and protocol-objects.c
 * (binding, add and event objects); nothing outside common/protocol*.c includes this. */
#pragma once

#include <stdint.h>

#include <cjson/cJSON.h>

/* An exact integer in [min, max] at key, def when absent or null; else *error (owned by
 * the caller) and -EINVAL. */
int proto_get_uint_range(const cJSON *o, const char *key, uint64_t min, uint64_t max, uint64_t def,
                         uint64_t *ret, char **error);
/* An empty object; aborts when out of memory, the same policy as xmalloc. */
cJSON *proto_new_object(void);
