/* What conf.c and conf-binding.c share; not for other modules. */
#pragma once

#include <stdbool.h>
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

/* Appends "FILE[:LINE]: [SECTION] KEY: message", leaving out the parts that are NULL
 * (line 0, sect or key NULL). */
void conf_report(struct strv *v, const char *file, unsigned line, const char *sect, const char *key,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* conf-forward.c: f's problems and a listen address that list[0..n) already has, each with
 * file:line; returns how many. */
size_t conf_forward_check(const struct forward_conf *f, struct forward_conf *const *list, size_t n,
                          struct strv *errors);
void conf_add_forward(struct config *c, struct forward_conf *f);   /* takes f */
/* The forward of a runtime file (*fp; fp NULL when the file did not hold exactly one
 * [forward] and nothing else): taken into c (*fp = NULL) unless its file name, a namesake or
 * its listen address clash, or it is invalid (problems say why). */
bool conf_forward_take_runtime(struct config *c, struct forward_conf **fp, const char *path, struct strv *problems);

/* The sections a key may be in, and the states of the reader between them. */
enum section {
        SECTION_NONE,            /* before the first header */
        SECTION_IGNORED,         /* a header that was already reported as wrong */
        SECTION_DAEMON,
        SECTION_API,
        SECTION_SSH,
        SECTION_BACKOFF,
        SECTION_BINDING,
        SECTION_FORWARD,
        _SECTION_MAX,
};

struct key;
/* Stores value into base (a struct config or struct binding_conf); returns NULL or
 * the sentence saying what is wrong with it. */
typedef char *(*parse_fn)(const struct key *k, const char *value, void *base);

struct key {
        enum section section;
        const char *name;
        parse_fn parse;
        size_t offset;
        unsigned min, max;
};

#define CONF_N_KEYS 38
/* Every key of every section (conf-keys.c). */
extern const struct key conf_keys[CONF_N_KEYS];
/* The index of s's key `name` in conf_keys, or -1. */
int conf_key_find(enum section s, const char *name);
