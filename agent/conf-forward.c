/* One local forward's settings as values ([forward "NAME"], SPEC §10): the target's
 * host:port, validation (shared by the config parser and `mysocketctl forward add`), the INI
 * text of a runtime forward, copy and compare. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf-internal.h"
#include "conf.h"
#include "util.h"

int conf_forward_parse_target(const char *v, char **host, uint16_t *port, char **why) {
        _cleanup_(freep) char *h = NULL;
        const char *p;
        struct in6_addr a6;
        if (v[0] == '[') {
                const char *close = strchr(v, ']');
                if (!close || close[1] != ':')
                        goto bad;
                h = strndup(v + 1, (size_t) (close - v - 1));
                if (!h)
                        abort();
                if (inet_pton(AF_INET6, h, &a6) != 1)
                        goto bad;
                p = close + 2;
        } else {
                const char *colon = strrchr(v, ':');
                if (!colon || colon == v || memchr(v, ':', (size_t) (colon - v)))
                        goto bad;
                h = strndup(v, (size_t) (colon - v));
                if (!h)
                        abort();
                _cleanup_(freep) char *hw = conf_host_problem(h);
                if (hw)
                        goto bad;
                p = colon + 1;
        }
        unsigned long n;
        char *end;
        errno = 0;
        n = strtoul(p, &end, 10);
        if (!*p || *end || errno || n < 1 || n > 65535 || *p == '+' || *p == '-')
                goto bad;
        *host = h;
        h = NULL;
        *port = (uint16_t) n;
        return 0;
bad:
        *why = xasprintf("\"%s\" is not HOST:PORT (a name or address, IPv6 in brackets, and a port 1-65535)", v);
        return -EINVAL;
}

char *conf_forward_target(const struct forward_conf *f) {
        if (!f->target_host)
                return NULL;
        bool v6 = strchr(f->target_host, ':') != NULL;
        return xasprintf("%s%s%s:%u", v6 ? "[" : "", f->target_host, v6 ? "]" : "", f->target_port);
}

int conf_forward_validate(const struct forward_conf *f, struct strv *errors) {
        size_t n0 = errors->n;
        _cleanup_(freep) char *label = xasprintf("[forward \"%s\"]", f->name ? f->name : "");
        struct sockaddr_storage ss;
        unsigned len;
        if (!binding_name_valid(f->name))
                strv_push(errors, xasprintf("%s: not a valid forward name (" BINDING_NAME_RULE ")", label));
        if (!f->listen && !f->bad_value)
                strv_push(errors, xasprintf("%s listen: missing (required)", label));
        else if (f->listen && (parse_listen_address(f->listen, &ss, &len) < 0 || strlen(f->listen) > VALUE_MAX))
                strv_push(errors, xasprintf("%s listen: \"%s\" is not an address to listen on (IPV4:PORT or "
                                            "[IPV6]:PORT, e.g. 127.0.0.1:5433)", label, f->listen));
        if (!f->target_host && !f->bad_value)
                strv_push(errors, xasprintf("%s target: missing (required)", label));
        else if (f->target_host && strlen(f->target_host) > VALUE_MAX)
                strv_push(errors, xasprintf("%s target: is too long", label));
        return errors->n > n0 ? -EINVAL : 0;
}

const struct forward_conf *conf_forward_listen_clash(struct forward_conf *const *list, size_t n,
                                                     const struct forward_conf *f) {
        struct sockaddr_storage a, b;
        unsigned la, lb;
        if (!f->listen || parse_listen_address(f->listen, &a, &la) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!streq(list[i]->name, f->name) && list[i]->listen &&
                    parse_listen_address(list[i]->listen, &b, &lb) == 0 && la == lb && memcmp(&a, &b, la) == 0)
                        return list[i];
        return NULL;
}

char *conf_forward_to_ini(const struct forward_conf *f) {
        _cleanup_(freep) char *target = conf_forward_target(f);
        return xasprintf("; written by mysocketctl forward add; remove with mysocketctl forward rm %s\n"
                         "[forward \"%s\"]\nlisten = %s\ntarget = %s\n", f->name, f->name, f->listen, target);
}

struct forward_conf *conf_forward_dup(const struct forward_conf *f) {
        struct forward_conf *d = xcalloc(1, sizeof(*d));
        *d = *f;
        d->name = xstrdup(f->name);
        d->listen = xstrdup(f->listen);
        d->target_host = xstrdup(f->target_host);
        d->file = xstrdup(f->file);
        return d;
}

bool conf_forward_equal(const struct forward_conf *a, const struct forward_conf *b) {
        return streq_ptr(a->name, b->name) && streq_ptr(a->listen, b->listen) &&
               streq_ptr(a->target_host, b->target_host) && a->target_port == b->target_port;
}

void conf_forward_free(struct forward_conf *f) {
        if (!f)
                return;
        free(f->name);
        free(f->listen);
        free(f->target_host);
        free(f->file);
        free(f);
}

size_t conf_forward_check(const struct forward_conf *f, struct forward_conf *const *list, size_t n,
                          struct strv *errors) {
        struct strv is = {};
        const struct forward_conf *other = conf_forward_listen_clash(list, n, f);
        if (other)
                strv_push(&is, xasprintf("[forward \"%s\"] listen: %s is already used by forward \"%s\" (%s:%u)",
                                         f->name, f->listen, other->name, other->file, other->line));
        conf_forward_validate(f, &is);
        for (size_t i = 0; i < is.n; i++)
                conf_report(errors, f->file, f->line, NULL, NULL, "%s", is.items[i]);
        size_t k = is.n;
        strv_clear(&is);
        return k;
}

void conf_add_forward(struct config *c, struct forward_conf *f) {
        c->forwards = xrealloc(c->forwards, (c->n_forwards + 1) * sizeof(*c->forwards));
        c->forwards[c->n_forwards++] = f;
}

bool conf_forward_take_runtime(struct config *c, struct forward_conf **fp, const char *path, struct strv *problems) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t stem = strlen(base) - 4;
        struct forward_conf *f = fp ? *fp : NULL;
        const struct forward_conf *clash = NULL;
        for (size_t i = 0; f && i < c->n_forwards && !clash; i++)
                if (streq(c->forwards[i]->name, f->name))
                        clash = c->forwards[i];
        if (!f)
                conf_report(problems, path, 0, NULL, NULL, "must hold exactly one [forward \"NAME\"] section");
        else if (strlen(f->name) != stem || strncmp(f->name, base, stem) != 0)
                conf_report(problems, path, f->line, NULL, NULL, "forward \"%s\" must be in a file named %s.ini",
                            f->name, f->name);
        else if (clash)
                conf_report(problems, path, f->line, NULL, NULL, "forward \"%s\" is already defined at %s:%u, "
                            "which wins", f->name, clash->file, clash->line);
        else if (conf_forward_check(f, c->forwards, c->n_forwards, problems) == 0) {
                conf_add_forward(c, f);
                *fp = NULL;
                return true;
        }
        return false;
}
