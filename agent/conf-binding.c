/* One binding's settings as values: names of types, validation (shared by the config
 * parser and `mysocketctl add`), the INI text of a runtime binding, copy and compare. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf-internal.h"
#include "conf.h"
#include "util.h"

static const char *unsafe_for_ini(const char *v) {
        for (const char *p = v; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return "contains a control character or line break";
        size_t len = strlen(v);
        if (len > 0 && (isspace((unsigned char) v[0]) || isspace((unsigned char) v[len - 1])))
                return "has leading or trailing whitespace, which the INI file would drop";
        if (v[0] == ';')
                return "starts with ';', which the INI file would read as a comment";
        if (strstr(v, " ;"))
                return "contains a space followed by ';', which the INI file would read as a comment";
        if (len > VALUE_MAX)
                return "is too long (at most 150 characters)";
        return NULL;
}

char *conf_host_problem(const char *host) {
        struct in6_addr a6;
        size_t len = strlen(host), label = 0;
        if (inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
                return NULL;
        if (host[0] == '[')
                return xasprintf("\"%s\" is not an IPv6 address in brackets", host);
        const char *colon = strrchr(host, ':');
        if (colon && colon > host && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
                return xasprintf("\"%s\" looks like HOST:PORT; give the host alone and the port in its own key "
                                 "(port = %s)", host, colon + 1);
        bool ok = len > 0 && len <= 253 && host[0] != '.' && host[0] != '-';
        for (const char *p = host; ok && *p; p++) {
                if (*p == '.') {
                        ok = label > 0;
                        label = 0;
                } else {
                        ok = isalnum((unsigned char) *p) || *p == '-' || *p == '_';
                        ok = ok && ++label <= 63;
                }
        }
        return ok ? NULL : xasprintf("\"%s\" is not a host name or an IP address", host);
}

size_t conf_binding_check(const struct config *c, const struct binding_conf *b, struct issue *out) {
        size_t n = 0;
#define ISSUE(k, ...) (out[n].key = (k), out[n++].msg = xasprintf(__VA_ARGS__))
        if (!binding_name_valid(b->name))
                ISSUE(NULL, "not a valid binding name (" BINDING_NAME_RULE ")");
        if (b->port == 0)
                ISSUE("port", "missing (required)");
        if ((unsigned) b->type >= _SOCKET_TYPE_MAX)
                ISSUE("type", "not a socket type (" SOCKET_TYPE_NAMES ")");
        const struct { const char *key; const char *v; } strs[] = {
                { "host", b->host }, { "name", b->display_name }, { "username", b->username },
                { "password", b->password }, { "socket_id", b->socket_id }, { "remote_host", b->remote_host },
                { "public_url_pattern", b->public_url_pattern },
        };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++) {
                const char *why = strs[i].v ? unsafe_for_ini(strs[i].v) : NULL;
                if (why)
                        ISSUE(strs[i].key, "%s", why);
        }
        _cleanup_(freep) char *host_why = b->host && b->host[0] ? conf_host_problem(b->host) : NULL;
        if (b->host && !b->host[0])
                ISSUE("host", "must not be empty");
        else if (host_why)
                ISSUE("host", "%s", host_why);
        _cleanup_(freep) char *rhost_why = b->remote_host && b->remote_host[0] ? conf_host_problem(b->remote_host) : NULL;
        if (rhost_why)
                ISSUE("remote_host", "%s", rhost_why);
        if (b->public_url_pattern && *b->public_url_pattern) {
                regex_t re;
                int rc = regcomp(&re, b->public_url_pattern, REG_EXTENDED);
                char why[128];
                if (rc != 0) {
                        regerror(rc, &re, why, sizeof(why));
                        ISSUE("public_url_pattern", "\"%s\" is not a POSIX extended regular expression: %s",
                              b->public_url_pattern, why);
                } else {
                        if (re.re_nsub < 1)
                                ISSUE("public_url_pattern", "\"%s\" has no group: put the URL in ( )",
                                      b->public_url_pattern);
                        regfree(&re);
                }
        }
        if (b->username && strchr(b->username, ':'))
                ISSUE("username", "must not contain ':' (HTTP basic auth)");
        bool has_user = b->username && *b->username, has_pass = b->password && *b->password;
        if (b->protected_ && (!has_user || !has_pass))
                ISSUE("protected", "needs username and password");
        if (b->protected_ && b->type != SOCKET_TYPE_HTTP && b->type != SOCKET_TYPE_HTTPS)
                ISSUE("protected", "only for type http or https (not %s)", socket_type_to_string(b->type));
        if (!b->protected_ && has_user)
                ISSUE("username", "only used with protected = yes");
        if (!b->protected_ && has_pass)
                ISSUE("password", "only used with protected = yes");
        if (c && c->api && (b->remote_port || b->remote_port_any))
                ISSUE("remote_port", "only in direct mode (this config has an [api] section)");
        if (b->tunnels > CONF_TUNNELS_MAX)
                ISSUE("tunnels", "%u is not a number from 1 to %u", b->tunnels, CONF_TUNNELS_MAX);
        if (c && !c->api && b->tunnels > 1)
                ISSUE("tunnels", "only in API mode (in direct mode a binding has one tunnel per [ssh] server)");
        if (c && c->api && b->remote_host && *b->remote_host)
                ISSUE("remote_host", "only in direct mode (this config has an [api] section)");
        if (c && !c->api) {
                if (!b->remote_port && !b->remote_port_any)
                        ISSUE("remote_port", "missing (required in direct mode, without an [api] section)");
                if (b->protected_)
                        ISSUE("protected", "only in API mode (in direct mode no edge checks passwords)");
                if (b->socket_id && *b->socket_id)
                        ISSUE("socket_id", "only in API mode (with an [api] section)");
        }
#undef ISSUE
        return n;
}

int conf_binding_validate(const struct config *c, const struct binding_conf *b, struct strv *errors) {
        struct issue is[ISSUES_MAX];
        size_t n = conf_binding_check(c, b, is);
        for (size_t i = 0; i < n; i++) {
                _cleanup_(freep) char *s = xasprintf("[binding \"%s\"]%s%s: %s", b->name ? b->name : "",
                                                     is[i].key ? " " : "", is[i].key ? is[i].key : "", is[i].msg);
                strv_push(errors, sanitize_text(s, 4096));
                free(is[i].msg);
        }
        return n > 0 ? -EINVAL : 0;
}

const struct binding_conf *conf_remote_port_clash(struct binding_conf *const *list, size_t n,
                                                  const struct binding_conf *b) {
        for (size_t i = 0; b->remote_port && i < n; i++)
                if (list[i]->remote_port == b->remote_port && !streq(list[i]->name, b->name))
                        return list[i];
        return NULL;
}

void conf_binding_free(struct binding_conf *b) {
        if (!b)
                return;
        free(b->name);
        free(b->host);
        free(b->display_name);
        free(b->username);
        free(b->password);
        free(b->socket_id);
        free(b->remote_host);
        free(b->public_url_pattern);
        free(b->file);
        free(b);
}

static void append(char **s, const char *key, const char *v) {
        if (!v || !*v)
                return;
        char *n = xasprintf("%s%s = %s\n", *s, key, v);
        free(*s);
        *s = n;
}

char *conf_binding_to_ini(const struct binding_conf *b) {
        char *s = xasprintf("# Added with mysocketctl add; managed by mysocketd.\n[binding \"%s\"]\nport = %u\n",
                            b->name, b->port);
        char rp[8];
        snprintf(rp, sizeof(rp), "%u", b->remote_port);
        append(&s, "host", b->host);
        append(&s, "type", socket_type_to_string(b->type));
        append(&s, "name", b->display_name);
        append(&s, "protected", b->protected_ ? "yes" : NULL);
        append(&s, "username", b->username);
        append(&s, "password", b->password);
        append(&s, "socket_id", b->socket_id);
        append(&s, "remote_port", b->remote_port || b->remote_port_any ? rp : NULL);
        append(&s, "remote_host", b->remote_host);
        append(&s, "public_url_pattern", b->public_url_pattern);
        char mc[12];
        snprintf(mc, sizeof(mc), "%u", b->max_connections);
        append(&s, "max_connections", b->max_connections ? mc : NULL);
        char tn[12];
        snprintf(tn, sizeof(tn), "%u", b->tunnels);
        append(&s, "tunnels", b->tunnels > 1 ? tn : NULL);
        append(&s, "edge_log", b->edge_log != EDGE_LOG_AUTO ? conf_edge_log_to_string(b->edge_log) : NULL);
        return s;
}

struct binding_conf *conf_binding_dup(const struct binding_conf *b) {
        struct binding_conf *d = xmalloc(sizeof(*d));
        *d = *b;
        d->name = xstrdup(b->name);
        d->host = xstrdup(b->host);
        d->display_name = xstrdup(b->display_name);
        d->username = xstrdup(b->username);
        d->password = xstrdup(b->password);
        d->socket_id = xstrdup(b->socket_id);
        d->remote_host = xstrdup(b->remote_host);
        d->public_url_pattern = xstrdup(b->public_url_pattern);
        d->file = xstrdup(b->file);
        return d;
}

/* An empty string is what "key =" gives: the same as not set. */
static bool opt_eq(const char *a, const char *b) {
        return streq_ptr(a && *a ? a : NULL, b && *b ? b : NULL);
}

bool conf_binding_equal(const struct binding_conf *a, const struct binding_conf *b) {
        return streq(a->name, b->name) &&
                streq(a->host ? a->host : BINDING_DEFAULT_HOST, b->host ? b->host : BINDING_DEFAULT_HOST) &&
                a->port == b->port && a->type == b->type && a->protected_ == b->protected_ &&
                a->remote_port == b->remote_port && a->max_connections == b->max_connections && a->edge_log == b->edge_log &&
                conf_binding_tunnels(a) == conf_binding_tunnels(b) &&
                a->remote_port_any == b->remote_port_any && opt_eq(a->remote_host, b->remote_host) &&
                opt_eq(a->public_url_pattern, b->public_url_pattern) && opt_eq(a->display_name, b->display_name) &&
                opt_eq(a->username, b->username) && opt_eq(a->password, b->password) &&
                opt_eq(a->socket_id, b->socket_id);
}

unsigned conf_binding_tunnels(const struct binding_conf *b) {
        return b->tunnels ? b->tunnels : 1;
}
