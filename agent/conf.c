/* The configuration: defaults, then parse (inih), then validate. The only user of inih.
 *
 * inih tells the handler neither the line number nor about sections without keys, so a
 * reader wrapped around each file counts lines, reads section headers itself and reports
 * the syntax errors inih would only count (it returns the first one). The handler then
 * sees only well-formed "key = value" lines of the section the reader last entered. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "conf-internal.h"
#include "conf.h"
#include "log.h"
#include "state.h"
#include "util.h"

/* A [binding] as parsed, with the line of each key for later messages. */
struct pbinding {
        struct binding_conf *b;
        unsigned key_line[CONF_N_KEYS];
        bool key_bad[CONF_N_KEYS];            /* reported already: no "missing" on top */
};

/* A [forward] as parsed. */
struct pforward {
        struct forward_conf *f;
        unsigned key_line[CONF_N_KEYS];
};

struct ctx {
        struct config *c;
        struct strv *errors;
        bool runtime;                    /* a bindings.d file: one [binding] and nothing else */

        /* the file being read */
        const char *file;
        const char *data;                /* its whole text, read up front */
        size_t pos, len;
        unsigned line;
        char *buf;
        size_t bufsz;
        enum section sec;
        char label[256];                 /* the current header, between the brackets */
        struct pbinding *cur;
        unsigned file_seen[CONF_N_KEYS];      /* line of each [daemon]..[backoff] key in this file */

        /* across files: where each global key was set, where each section starts */
        const char *set_file[CONF_N_KEYS];
        unsigned set_line[CONF_N_KEYS];
        bool key_bad[CONF_N_KEYS];
        const char *sec_file[_SECTION_MAX];
        unsigned sec_line[_SECTION_MAX];

        struct pbinding **pb;
        size_t n_pb;
        struct pforward **pf;
        size_t n_pf;
        struct pforward *curf;
};

void conf_report(struct strv *v, const char *file, unsigned line, const char *sect, const char *key,
                   const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_(freep) char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_(freep) char *l = line > 0 ? xasprintf(":%u", line) : xstrdup("");
        _cleanup_(freep) char *where = xasprintf("%s%s%s%s%s", sect ? "[" : "", sect ? sect : "", sect ? "]" : "",
                                                  sect && key ? " " : "", key ? key : "");
        _cleanup_(freep) char *all = xasprintf("%s%s: %s%s%s", file ? file : "", l, where, *where ? ": " : "", msg);
        strv_push(v, sanitize_text(all, 4096));
}

/* inih's rule for where a value or section name ends: one of chars, or a ';' that follows
 * whitespace (an inline comment). */
static const char *find_end(const char *s, const char *chars) {
        bool was_space = false;
        while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
                was_space = isspace((unsigned char) *s);
                s++;
        }
        return s;
}

static struct pbinding *pbinding_find(struct pbinding **pb, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(pb[i]->b->name, name))
                        return pb[i];
        return NULL;
}

static enum section section_header(struct ctx *x, const char *label) {
        static const char *const names[_SECTION_MAX] = {
                [SECTION_DAEMON] = "daemon", [SECTION_API] = "api",
                [SECTION_SSH] = "ssh", [SECTION_BACKOFF] = "backoff",
        };
        for (int s = SECTION_DAEMON; s < SECTION_BINDING; s++) {
                if (!streq(label, names[s]))
                        continue;
                if (x->runtime) {
                        conf_report(x->errors, x->file, x->line, label, NULL,
                               "a runtime file holds one [binding \"NAME\"] or [forward \"NAME\"] section only");
                        return SECTION_IGNORED;
                }
                if (!x->sec_line[s]) {
                        x->sec_file[s] = x->file;
                        x->sec_line[s] = x->line;
                }
                if (s == SECTION_API)
                        x->c->api = true;
                return s;
        }
        bool fwd = strncmp(label, "forward", 7) == 0;
        if (strncmp(label, "binding", 7) != 0 && !fwd) {
                conf_report(x->errors, x->file, x->line, label, NULL, "unknown section (expected [daemon], "
                       "[api], [ssh], [backoff], [binding \"NAME\"] or [forward \"NAME\"])");
                return SECTION_IGNORED;
        }
        const char *kind = fwd ? "forward" : "binding";
        size_t len = strlen(label);
        if (label[7] != ' ' || label[8] != '"' || len < 10 || label[len - 1] != '"' || memchr(label + 9, '"', len - 10)) {
                conf_report(x->errors, x->file, x->line, label, NULL,
                       "a %s section is written [%s \"NAME\"], with the name in double quotes", kind, kind);
                return SECTION_IGNORED;
        }
        _cleanup_(freep) char *name = strndup(label + 9, len - 10);
        if (!name)
                abort();
        if (!binding_name_valid(name)) {
                conf_report(x->errors, x->file, x->line, label, NULL, "\"%s\" is not a valid %s name "
                       "(" BINDING_NAME_RULE ")", name, kind);
                return SECTION_IGNORED;
        }
        if (fwd) {
                for (size_t i = 0; i < x->n_pf; i++)
                        if (streq(x->pf[i]->f->name, name)) {
                                conf_report(x->errors, x->file, x->line, label, NULL, "forward \"%s\" is already "
                                       "defined at %s:%u", name, x->pf[i]->f->file, x->pf[i]->f->line);
                                return SECTION_IGNORED;
                        }
                struct pforward *q = xcalloc(1, sizeof(*q));
                q->f = xcalloc(1, sizeof(*q->f));
                q->f->name = name;
                name = NULL;
                q->f->source = x->runtime ? BINDING_SOURCE_RUNTIME : BINDING_SOURCE_CONFIG;
                q->f->file = xstrdup(x->file);
                q->f->line = x->line;
                x->pf = xrealloc(x->pf, (x->n_pf + 1) * sizeof(*x->pf));
                x->pf[x->n_pf++] = q;
                x->curf = q;
                return SECTION_FORWARD;
        }
        struct pbinding *dup = pbinding_find(x->pb, x->n_pb, name);
        if (dup) {
                conf_report(x->errors, x->file, x->line, label, NULL, "binding \"%s\" is already defined at %s:%u",
                       name, dup->b->file, dup->b->line);
                return SECTION_IGNORED;
        }
        struct pbinding *p = xcalloc(1, sizeof(*p));
        p->b = xcalloc(1, sizeof(*p->b));
        p->b->name = name;
        name = NULL;
        p->b->type = SOCKET_TYPE_HTTP;
        p->b->source = x->runtime ? BINDING_SOURCE_RUNTIME : BINDING_SOURCE_CONFIG;
        p->b->file = xstrdup(x->file);
        p->b->line = x->line;
        x->pb = xrealloc(x->pb, (x->n_pb + 1) * sizeof(*x->pb));
        x->pb[x->n_pb++] = p;
        x->cur = p;
        return SECTION_BINDING;
}

/* Hands inih one line at a time, left-stripped so that indented keys are not taken for
 * continuation lines; lines with syntax errors are reported here and passed on blank. */
static char *reader(char *str, int num, void *stream) {
        struct ctx *x = stream;
        if (x->pos >= x->len)
                return NULL;
        const char *start = x->data + x->pos, *nl = memchr(start, '\n', x->len - x->pos);
        size_t n = nl ? (size_t) (nl - start) + 1 : x->len - x->pos;
        x->pos += n;
        if (n + 1 > x->bufsz) {
                x->bufsz = n + 1;
                x->buf = xrealloc(x->buf, x->bufsz);
        }
        memcpy(x->buf, start, n);
        x->buf[n] = '\0';
        x->line++;
        char *s = x->buf;
        /* inih would take a NUL for the end of the line and read what is before it as the value. */
        if (memchr(x->buf, '\0', n)) {
                conf_report(x->errors, x->file, x->line, NULL, NULL, "contains a NUL byte");
                if (s[strspn(s, " \t\v\f")] == '[')
                        x->sec = SECTION_IGNORED;
                snprintf(str, (size_t) num, "\n");
                return str;
        }
        if (x->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;
        s += strspn(s, " \t\v\f");
        size_t len = strcspn(s, "\r\n");
        s[len] = '\0';

        if (len + 3 > (size_t) num) {
                conf_report(x->errors, x->file, x->line, NULL, NULL, "line too long (at most %d characters)", num - 3);
                if (s[0] == '[')
                        x->sec = SECTION_IGNORED;
                s = (char *) "";
        } else if (s[0] == '[') {
                const char *end = find_end(s + 1, "]");
                const char *after = *end ? end + 1 + strspn(end + 1, " \t") : end;
                if (*end != ']') {
                        conf_report(x->errors, x->file, x->line, NULL, NULL, "section header without ']'");
                        x->sec = SECTION_IGNORED;
                        s = (char *) "";
                } else if (*after && *after != ';' && *after != '#') {
                        conf_report(x->errors, x->file, x->line, NULL, NULL, "unexpected text after ']': %s", after);
                        x->sec = SECTION_IGNORED;
                        s = (char *) "";
                } else {
                        snprintf(x->label, sizeof(x->label), "%.*s", (int) (end - s - 1), s + 1);
                        x->cur = NULL;
                        x->curf = NULL;
                        x->sec = section_header(x, x->label);
                }
        } else if (s[0] && s[0] != ';' && s[0] != '#') {
                const char *end = find_end(s, "=:");
                if ((*end != '=' && *end != ':') || end == s) {
                        conf_report(x->errors, x->file, x->line, NULL, NULL, "expected \"key = value\", got: %s", s);
                        s = (char *) "";
                }
        }
        snprintf(str, (size_t) num, "%s\n", s);
        return str;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
        struct ctx *x = user;
        (void) section;   /* x->sec is the reader's view of the same header */

        if (x->sec == SECTION_IGNORED)
                return 1;
        if (x->sec == SECTION_NONE) {
                conf_report(x->errors, x->file, x->line, NULL, name, "key outside of any section");
                return 1;
        }
        int i = conf_key_find(x->sec, name);
        if (i < 0) {
                conf_report(x->errors, x->file, x->line, x->label, name, "unknown key");
                return 1;
        }
        unsigned *seen = x->sec == SECTION_BINDING ? &x->cur->key_line[i]
                         : x->sec == SECTION_FORWARD ? &x->curf->key_line[i] : &x->file_seen[i];
        if (*seen) {
                conf_report(x->errors, x->file, x->line, x->label, name, "duplicate key (first set at line %u)", *seen);
                return 1;
        }
        *seen = x->line;
        if (!*value)      /* "key =" leaves the default, as in the example config */
                return 1;
        void *base = x->sec == SECTION_BINDING ? (void *) x->cur->b
                     : x->sec == SECTION_FORWARD ? (void *) x->curf->f : (void *) x->c;
        _cleanup_(freep) char *msg = conf_keys[i].parse(&conf_keys[i], value, base);
        if (msg) {
                conf_report(x->errors, x->file, x->line, x->label, name, "%s", msg);
                if (x->sec == SECTION_FORWARD)
                        x->curf->f->bad_value = true;
                *(x->sec == SECTION_BINDING ? &x->cur->key_bad[i] : &x->key_bad[i]) = true;
        } else if (x->sec != SECTION_BINDING && x->sec != SECTION_FORWARD) {
                x->set_file[i] = x->file;
                x->set_line[i] = x->line;
        }
        return 1;
}

/* Returns 0, or -errno when the file cannot be opened or read (also reported). */
static int parse_file(struct ctx *x, const char *path) {
        size_t n_errors = x->errors->n;
        _cleanup_(freep) char *text = NULL, *problem = NULL;
        struct stat st;
        int r = read_file_checked(path, CONF_FILE_MAX, x->runtime, &text, &x->len, &st, &problem);
        if (r < 0) {
                conf_report(x->errors, path, 0, NULL, NULL, "%s", problem);
                return r;
        }
        if (x->runtime && (r = state_file_trusted(path, &st, &problem)) < 0) {
                conf_report(x->errors, path, 0, NULL, NULL, "%s", problem);
                return r;
        }
        x->data = text;
        x->pos = 0;
        x->file = path;
        x->line = 0;
        x->sec = SECTION_NONE;
        x->cur = NULL;
        x->curf = NULL;
        memset(x->file_seen, 0, sizeof(x->file_seen));
        int k = ini_parse_stream(reader, x, handler, x);
        if (k < 0) {
                r = -ENOMEM;
                conf_report(x->errors, path, 0, NULL, NULL, "cannot parse: out of memory");
        } else if (k > 0 && x->errors->n == n_errors)
                conf_report(x->errors, path, (unsigned) k, NULL, NULL, "syntax error");
        x->data = NULL;
        return r;
}

/* Validates b with file:line for each problem; returns how many there were. */
static size_t report_binding(const struct config *c, const struct pbinding *p, struct strv *v) {
        struct issue is[ISSUES_MAX];
        size_t n = conf_binding_check(c, p->b, is);
        _cleanup_(freep) char *label = xasprintf("binding \"%s\"", p->b->name);
        for (size_t i = 0; i < n; i++) {
                int k = is[i].key ? conf_key_find(SECTION_BINDING, is[i].key) : -1;
                unsigned line = k >= 0 && p->key_line[k] ? p->key_line[k] : p->b->line;
                if (k < 0 || !p->key_bad[k])
                        conf_report(v, p->b->file, line, label, is[i].key, "%s", is[i].msg);
                free(is[i].msg);
        }
        return n;
}

/* Rules that span keys of the global sections, once every config file is read. */
static void check_config(struct ctx *x) {
        struct config *c = x->c;
#define AT(s, k) x->set_file[conf_key_find(SECTION_##s, k)], x->set_line[conf_key_find(SECTION_##s, k)]
#define SEC(s) x->sec_file[SECTION_##s] ? x->sec_file[SECTION_##s] : c->path, x->sec_line[SECTION_##s]
        if (c->backoff_max < c->backoff_initial) {
                if (x->set_line[conf_key_find(SECTION_BACKOFF, "max")])
                        conf_report(x->errors, AT(BACKOFF, "max"), "backoff", "max",
                               "%u is less than initial (%u)", c->backoff_max, c->backoff_initial);
                else
                        conf_report(x->errors, AT(BACKOFF, "initial"), "backoff", "initial",
                               "%u is more than max (%u)", c->backoff_initial, c->backoff_max);
        }
        bool creds_bad = x->key_bad[conf_key_find(SECTION_API, "email")] ||
                x->key_bad[conf_key_find(SECTION_API, "password_file")] || x->key_bad[conf_key_find(SECTION_API, "token_file")];
        if (c->api && !creds_bad) {
                bool email = c->api_email && *c->api_email, pw = !!c->api_password_file;
                if (c->api_token_file && (email || pw))
                        conf_report(x->errors, AT(API, "token_file"), "api", "token_file",
                               "cannot be combined with email and password_file");
                else if (email && !pw)
                        conf_report(x->errors, SEC(API), "api", "password_file", "missing (required with email)");
                else if (pw && !email)
                        conf_report(x->errors, SEC(API), "api", "email", "missing (required with password_file)");
                else if (!c->api_token_file && !email)
                        conf_report(x->errors, SEC(API), "api", NULL,
                               "needs either email and password_file, or token_file");
        } else if (!c->api && x->n_pb + x->n_pf > 0 && (!c->ssh_user || !*c->ssh_user))
                /* Without bindings there is nothing to log in for: the shipped, all-commented
                 * config must start cleanly. */
                conf_report(x->errors, SEC(SSH), "ssh", "user",
                       "missing (required in direct mode, without an [api] section)");
#undef AT
#undef SEC
        for (size_t i = 0; i < x->n_pb; i++) {
                if (!x->pb[i]->b->host)
                        x->pb[i]->b->host = xstrdup(BINDING_DEFAULT_HOST);
                report_binding(c, x->pb[i], x->errors);
        }
        /* One relay, one listener per port: the second forward could never be granted. */
        int rk = conf_key_find(SECTION_BINDING, "remote_port");
        for (size_t i = 0; !c->api && i < x->n_pb; i++) {
                const struct binding_conf *b = x->pb[i]->b;
                const struct binding_conf *other = NULL;
                for (size_t j = 0; j < i && !other; j++)
                        if (b->remote_port && x->pb[j]->b->remote_port == b->remote_port)
                                other = x->pb[j]->b;
                if (other) {
                        _cleanup_(freep) char *label = xasprintf("binding \"%s\"", b->name);
                        conf_report(x->errors, b->file, x->pb[i]->key_line[rk] ? x->pb[i]->key_line[rk] : b->line, label,
                               "remote_port", "%u is already used by binding \"%s\" (%s:%u) on the same relay",
                               b->remote_port, other->name, other->file, other->line);
                }
        }
}

static void add_binding(struct config *c, struct binding_conf *b) {
        c->bindings = xrealloc(c->bindings, (c->n_bindings + 1) * sizeof(*c->bindings));
        c->bindings[c->n_bindings++] = b;
}

static void parsed_free(struct ctx *x) {
        for (size_t i = 0; i < x->n_pb; i++) {
                conf_binding_free(x->pb[i]->b);
                free(x->pb[i]);
        }
        for (size_t i = 0; i < x->n_pf; i++) {
                conf_forward_free(x->pf[i]->f);
                free(x->pf[i]);
        }
        free(x->pb);
        free(x->pf);
        x->pb = NULL;
        x->pf = NULL;
        x->n_pb = x->n_pf = 0;
}

/* A runtime file that parsed cleanly: the one binding in it, its file name and the clashes
 * with those already loaded (the config files' win). Returns whether it was taken. */
static bool take_runtime_binding(struct config *c, size_t n_config, struct ctx *x, const char *path,
                                 const char *base, size_t stem, struct strv *problems) {
        struct pbinding *p = x->n_pb == 1 && x->n_pf == 0 ? x->pb[0] : NULL;
        const struct binding_conf *clash = NULL;
        for (size_t i = 0; p && i < n_config; i++)
                if (streq(c->bindings[i]->name, p->b->name))
                        clash = c->bindings[i];
        if (!p)
                conf_report(problems, path, 0, NULL, NULL, "must hold exactly one [binding \"NAME\"] section (found %zu)",
                       x->n_pb);
        else if (strlen(p->b->name) != stem || strncmp(p->b->name, base, stem) != 0)
                conf_report(problems, path, p->b->line, NULL, NULL, "binding \"%s\" must be in a file named %s.ini",
                       p->b->name, p->b->name);
        else if (clash)
                conf_report(problems, path, p->b->line, NULL, NULL, "binding \"%s\" is already defined at %s:%u, which "
                       "wins", p->b->name, clash->file, clash->line);
        else if ((clash = conf_remote_port_clash(c->bindings, c->n_bindings, p->b)))
                conf_report(problems, path, p->b->line, NULL, "remote_port", "%u is already used by binding \"%s\" "
                       "(%s:%u) on the same relay", p->b->remote_port, clash->name, clash->file, clash->line);
        else {
                if (!p->b->host)
                        p->b->host = xstrdup(BINDING_DEFAULT_HOST);
                if (report_binding(c, p, problems) == 0) {
                        add_binding(c, p->b);
                        p->b = NULL;
                        return true;
                }
        }
        return false;
}

/* One STATE_DIR/bindings.d or forwards.d file; its problems become warnings and it is
 * skipped (the file is kept). c->bindings[0..n_config) are the config files' bindings. */
static void load_runtime(struct config *c, size_t n_config, const char *path, bool forward, struct strv *warnings) {
        struct strv problems = {};
        struct ctx x = { .c = c, .errors = &problems, .runtime = true };
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t stem = strlen(base) - 4;

        if (parse_file(&x, path) >= 0 && problems.n == 0)
                (void) (forward ? conf_forward_take_runtime(c, x.n_pf == 1 && x.n_pb == 0 ? &x.pf[0]->f : NULL, path, &problems)
                                : take_runtime_binding(c, n_config, &x, path, base, stem, &problems));
        for (size_t i = 0; i < problems.n; i++)
                strv_push(warnings, xstrdup(problems.items[i]));
        if (problems.n > 0)
                conf_report(warnings, path, 0, NULL, NULL, "runtime %s skipped", forward ? "forward" : "binding");
        strv_clear(&problems);
        parsed_free(&x);
        free(x.buf);
}

static struct config *config_new(const char *path) {
        struct config *c = xcalloc(1, sizeof(*c));
        c->state_dir = xstrdup(STATE_DIR_DEFAULT);
        c->control_socket = xstrdup("/run/mysocketd/control.sock");
        c->control_group = xstrdup("mysocketd");
        c->log_level = LOG_INFO;
        c->api_url = xstrdup("https://api.mysocket.io");
        c->ssh_server = xstrdup("ssh.mysocket.io");
        c->ssh_port = 22;
        c->identity_file = xstrdup("/etc/mysocketd/id_ed25519");
        c->host_key_check = HOST_KEY_CHECK_ACCEPT_NEW;
        c->keepalive_interval = 15;
        c->keepalive_count = 3;
        c->backoff_initial = 1;
        c->backoff_max = 300;
        c->stable_after = 60;
        c->path = xstrdup(path);
        return c;
}

int conf_load(const char *path, struct config **ret, struct strv *errors, struct strv *warnings) {
        struct config *c = config_new(path);
        struct ctx x = { .c = c, .errors = errors };
        struct strv dropins = {}, runtime = {};
        _cleanup_(freep) char *dir = NULL, *rdir = NULL, *problem = NULL;
        size_t n_errors = errors->n;
        int r;

        r = parse_file(&x, c->path);
        if (r < 0)
                goto out;

        const char *slash = strrchr(c->path, '/');
        dir = slash ? xasprintf("%.*s/conf.d", (int) (slash - c->path), c->path)
                                           : xstrdup("conf.d");
        r = list_files_sorted(dir, ".ini", &dropins);
        if (r < 0)
                conf_report(errors, dir, 0, NULL, NULL, "cannot read directory: %s", strerror(-r));
        for (size_t i = 0; i < dropins.n; i++)
                parse_file(&x, dropins.items[i]);

        if (!c->known_hosts)
                c->known_hosts = state_known_hosts_path(c->state_dir);
        check_config(&x);
        for (size_t i = 0; i < x.n_pb; i++) {
                add_binding(c, x.pb[i]->b);
                x.pb[i]->b = NULL;
        }
        for (size_t i = 0; i < x.n_pf; i++) {
                conf_forward_check(x.pf[i]->f, c->forwards, c->n_forwards, errors);
                conf_add_forward(c, x.pf[i]->f);
                x.pf[i]->f = NULL;
        }

        rdir = state_bindings_dir(c->state_dir);
        r = c->state_dir[0] == '/' ? list_files_sorted(rdir, ".ini", &runtime) : 0;
        if (r < 0)
                conf_report(warnings, rdir, 0, NULL, NULL, "cannot read directory: %s", strerror(-r));
        if (runtime.n > 0 && state_trusted(c->state_dir, &problem) < 0) {
                strv_push(warnings, xasprintf("%s; its %zu runtime binding%s skipped", problem, runtime.n,
                                              runtime.n == 1 ? "" : "s"));
                strv_clear(&runtime);
        }
        size_t n_config = c->n_bindings;
        for (size_t i = 0; i < runtime.n; i++)
                load_runtime(c, n_config, runtime.items[i], false, warnings);
        strv_clear(&runtime);
        free(rdir);
        rdir = state_forwards_dir(c->state_dir);
        r = c->state_dir[0] == '/' ? list_files_sorted(rdir, ".ini", &runtime) : 0;
        free(problem);
        problem = NULL;
        if (runtime.n > 0 && state_forwards_trusted(c->state_dir, &problem) < 0) {
                strv_push(warnings, xasprintf("%s; its %zu runtime forward%s skipped", problem, runtime.n,
                                              runtime.n == 1 ? "" : "s"));
                strv_clear(&runtime);
        }
        for (size_t i = 0; i < runtime.n; i++)
                load_runtime(c, n_config, runtime.items[i], true, warnings);
        r = errors->n > n_errors ? -EINVAL : 0;
out:
        parsed_free(&x);
        free(x.buf);
        strv_clear(&dropins);
        strv_clear(&runtime);
        if (r < 0)
                conf_free(c);
        else
                *ret = c;
        return r;
}

void conf_free(struct config *c) {
        if (!c)
                return;
        char **strs[] = {
                &c->state_dir, &c->control_socket, &c->control_group, &c->api_url, &c->api_email,
                &c->api_password_file, &c->api_token_file, &c->ssh_server, &c->ssh_user,
                &c->identity_file, &c->known_hosts, &c->host_key_fingerprint, &c->path,
                &c->metrics_listen, &c->ssh_proxy,
        };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                free(*strs[i]);
        for (size_t i = 0; i < c->n_ssh_relays; i++)
                free(c->ssh_relays[i].host);
        for (size_t i = 0; i < c->n_bindings; i++)
                conf_binding_free(c->bindings[i]);
        free(c->bindings);
        for (size_t i = 0; i < c->n_forwards; i++)
                conf_forward_free(c->forwards[i]);
        free(c->forwards);
        free(c);
}
