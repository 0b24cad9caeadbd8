/* libFuzzer target for the config parser (agent/conf.c).
 *
 * The input is up to three files separated by a line "%%": the main mysocketd.ini, a
 * conf.d drop-in and a runtime binding STATE_DIR/bindings.d/web.ini. They live in one
 * temp dir per process, created once and removed at exit; a fixed last drop-in points
 * state_dir into it, so whatever state_dir an input names is parsed and validated but
 * never read from.
 *
 * Beyond "no crash, no leak" it checks the contracts of conf.h on every config that
 * loads: each binding passes conf_binding_validate(), and conf_binding_to_ini() reads back
 * (in a config of the same mode) as an equal binding. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

#define SEP "\n%%\n"

static char dir[64];
static char *main_path, *dropin_path, *runtime_path, *rt_main;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(p);
}

static void cleanup(void) {
        if (dir[0])
                nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || (len > 0 && write(fd, data, len) != (ssize_t) len) || close(fd) < 0) {
                perror(path);
                abort();
        }
}

static void setup(void) {
        /* tmpfs if there is one: every input rewrites three files, and on a disk each
         * open(O_TRUNC) costs more than parsing them. */
        struct stat st;
        const char *t = getenv("TMPDIR");
        if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
                t = "/dev/shm";
        snprintf(dir, sizeof(dir), "%s/fuzz-conf-XXXXXX", t && strlen(t) < 40 ? t : "/tmp");
        if (!mkdtemp(dir))
                abort();
        atexit(cleanup);
        char *p = xasprintf("%s/conf.d", dir);
        char *q = xasprintf("%s/state", dir);
        char *r = xasprintf("%s/state/bindings.d", dir);
        char *s = xasprintf("%s/rt", dir);
        if (mkdir(p, 0700) < 0 || mkdir(q, 0700) < 0 || mkdir(r, 0700) < 0 || mkdir(s, 0700) < 0)
                abort();
        char *last = xasprintf("%s/zz-state.ini", p);
        char *content = xasprintf("[daemon]\nstate_dir = %s\n", q);
        put(last, content, strlen(content));
        main_path = xasprintf("%s/mysocketd.ini", dir);
        dropin_path = xasprintf("%s/50-fuzz.ini", p);
        runtime_path = xasprintf("%s/web.ini", r);
        rt_main = xasprintf("%s/mysocketd.ini", s);
        free(p), free(q), free(r), free(s), free(last), free(content);
}

static void put_or_remove(const char *path, const uint8_t *data, size_t len, bool present) {
        if (present)
                put(path, data, len);
        else if (unlink(path) < 0 && errno != ENOENT)
                abort();
}

static void fail(const char *what, const struct binding_conf *b, const char *detail) {
        fprintf(stderr, "fuzz-conf: %s: binding \"%s\" (%s:%u): %s\n", what, b->name, b->file, b->line,
                detail ? detail : "");
        abort();
}

/* What conf.h promises for a binding of a config that loaded. */
static void check_binding(const struct config *c, const struct binding_conf *b) {
        struct strv errors = {}, warnings = {};
        if (conf_binding_validate(c, b, &errors) < 0)
                fail("a loaded binding fails conf_binding_validate", b, errors.items[0]);
        strv_clear(&errors);

        /* A config of the same mode with b as its only binding, in a dir of its own. */
        _cleanup_(freep) char *ini = conf_binding_to_ini(b);
        _cleanup_(freep) char *text = xasprintf("[daemon]\nstate_dir = %s/rt/state\n%s\n%s", dir,
                                                c->api ? "[api]\ntoken_file = /nonexistent" : "[ssh]\nuser = u",
                                                ini);
        put(rt_main, text, strlen(text));
        struct config *d = NULL;
        int r = conf_load(rt_main, &d, &errors, &warnings);
        if (r < 0 || d->n_bindings != 1 || warnings.n > 0) {
                fprintf(stderr, "%s---\n", text);
                fail("conf_binding_to_ini does not load back", b,
                     errors.n ? errors.items[0] : warnings.n ? warnings.items[0] : "wrong binding count");
        }
        if (!conf_binding_equal(b, d->bindings[0])) {
                fprintf(stderr, "%s---\n", text);
                fail("conf_binding_to_ini loads back as a different binding", b, NULL);
        }
        conf_free(d);
        strv_clear(&errors);
        strv_clear(&warnings);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!main_path)
                setup();

        /* Split into up to three parts at "\n%%\n". */
        const uint8_t *part[3] = { data, NULL, NULL };
        size_t len[3] = { size, 0, 0 };
        for (int i = 0; i < 2 && part[i]; i++) {
                const uint8_t *s = memmem(part[i], len[i], SEP, strlen(SEP));
                if (!s)
                        break;
                part[i + 1] = s + strlen(SEP);
                len[i + 1] = (size_t) (part[i] + len[i] - part[i + 1]);
                len[i] = (size_t) (s - part[i]) + 1;     /* keep the '\n' */
        }
        put(main_path, part[0], len[0]);
        put_or_remove(dropin_path, part[1], len[1], part[1] != NULL);
        put_or_remove(runtime_path, part[2], len[2], part[2] != NULL);

        struct config *c = NULL;
        struct strv errors = {}, warnings = {};
        int r = conf_load(main_path, &c, &errors, &warnings);
        if (r >= 0) {
                if (errors.n > 0) {
                        fprintf(stderr, "fuzz-conf: conf_load succeeded with errors: %s\n", errors.items[0]);
                        abort();
                }
                for (size_t i = 0; i < c->n_bindings; i++)
                        check_binding(c, c->bindings[i]);
                conf_free(c);
        } else if (errors.n == 0) {
                fprintf(stderr, "fuzz-conf: conf_load failed (%s) without saying why\n", strerror(-r));
                abort();
        }
        strv_clear(&errors);
        strv_clear(&warnings);
        return 0;
}
