/* What conf.c and conf-binding.c share; not for other modules. */
#pragma once

#include <stddef.h>

#include "conf.h"

/* inih reads lines into a 200-byte buffer; a value this long still fits behind its key. */
#define VALUE_MAX 150

/* One problem of a binding: the key it is about (NULL: the name) and what is wrong. */
struct issue {
        const char *key;
        char *msg;
};
#define ISSUES_MAX 24

/* Checks b (with the mode rules of c, if c is not NULL); fills out[] (at most ISSUES_MAX,
 * msg owned by the caller) and returns how many problems there are. */
size_t conf_binding_check(const struct config *c, const struct binding_conf *b, struct issue *out);

/* NULL if host is an IPv4 or IPv6 address or a host name, else what is wrong (caller frees). */
char *conf_host_problem(const char *host);
