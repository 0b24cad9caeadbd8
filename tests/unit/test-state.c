#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "state.h"

static char dir[64];

static void setup(void) {
        strcpy(dir, "/tmp/test-state-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
        char *cmd = xasprintf("rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
}

START_TEST(test_init_creates_private_dirs) {
        char *state = xasprintf("%s/var/lib/mysocketd", dir), *error = NULL;
        ck_assert_int_eq(state_init(state, &error), 0);
        struct stat st;
        char *bd = xasprintf("%s/bindings.d", state);
        ck_assert_int_eq(stat(bd, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0700);
        free(bd);
        free(state);
}
END_TEST

START_TEST(test_init_refuses_writable_dir) {
        char *error = NULL;
        ck_assert_int_eq(chmod(dir, 0777), 0);
        ck_assert_int_eq(state_init(dir, &error), -EPERM);
        ck_assert_ptr_nonnull(strstr(error, "writable by group or others (mode 0777)"));
        free(error);
}
END_TEST

START_TEST(test_init_refuses_dir_of_another_uid) {
        char *error = NULL, *bd = xasprintf("%s/bindings.d", dir);
        ck_assert_int_eq(state_init(dir, &error), 0);
        ck_assert_int_eq(chown(bd, 65534, 65534), 0);
        ck_assert_int_eq(state_init(dir, &error), -EPERM);
        ck_assert_ptr_nonnull(strstr(error, "is owned by uid 65534, not by uid 0 that mysocketd runs as"));
        ck_assert_ptr_nonnull(strstr(error, bd));
        free(error);
        free(bd);
}
END_TEST

START_TEST(test_save_reload_remove) {
        char *error = NULL;
        ck_assert_int_eq(state_init(dir, &error), 0);
        struct binding_conf b = {
                .name = "blog", .host = "::1", .port = 2368, .type = SOCKET_TYPE_TCP,
                .display_name = "my blog", .remote_port = 8081, .source = BINDING_SOURCE_RUNTIME,
        };
        ck_assert_int_eq(state_save_binding(dir, &b), 0);
        char *path = state_binding_path(dir, "blog");
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);

        /* What we wrote, conf_load reads back as the same binding. */
        char *ini = xasprintf("%s/m.ini", dir);
        FILE *f = fopen(ini, "w");
        fprintf(f, "[daemon]\nstate_dir = %s\n[ssh]\nserver = 127.0.0.1\nuser = u\n", dir);
        fclose(f);
        struct config *c = NULL;
        struct strv errors = { 0 }, warnings = { 0 };
        ck_assert_int_eq(conf_load(ini, &c, &errors, &warnings), 0);
        ck_assert_uint_eq(warnings.n, 0);
        ck_assert_uint_eq(c->n_bindings, 1);
        ck_assert(conf_binding_equal(c->bindings[0], &b));
        ck_assert_int_eq(c->bindings[0]->source, BINDING_SOURCE_RUNTIME);
        conf_free(c);

        ck_assert_int_eq(state_remove_binding(dir, "blog"), 0);
        ck_assert_int_eq(stat(path, &st), -1);
        ck_assert_int_eq(state_remove_binding(dir, "blog"), 0);
        strv_clear(&errors);
        strv_clear(&warnings);
        free(ini);
        free(path);
}
END_TEST

START_TEST(test_init_sweeps_crash_leftovers) {
        char *error = NULL;
        ck_assert_int_eq(state_init(dir, &error), 0);
        char *tmp = xasprintf("%s/bindings.d/web.ini.tmp.Ab12Cd", dir);
        char *keep = xasprintf("%s/bindings.d/web.ini", dir);
        FILE *f = fopen(tmp, "w");
        fputs("[binding \"web\"]\npo", f);   /* torn */
        fclose(f);
        f = fopen(keep, "w");
        fputs("[binding \"web\"]\nport = 80\n", f);
        fclose(f);
        ck_assert_int_eq(state_init(dir, &error), 0);
        ck_assert_int_eq(access(tmp, F_OK), -1);
        ck_assert_int_eq(access(keep, F_OK), 0);
        free(tmp);
        free(keep);
}
END_TEST

static void touch(const char *path) {
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
}

static bool has(const struct strv *v, const char *s) {
        for (size_t i = 0; i < v->n; i++)
                if (streq(v->items[i], s))
                        return true;
        return false;
}

/* The layout other modules ask for instead of spelling paths. */
START_TEST(test_layout) {
        char *bd = state_bindings_dir("/var/lib/mysocketd"), *kh = state_known_hosts_path("/var/lib/mysocketd");
        char *bp = state_binding_path("/var/lib/mysocketd", "web");
        ck_assert_str_eq(bd, "/var/lib/mysocketd/bindings.d");
        ck_assert_str_eq(kh, "/var/lib/mysocketd/known_hosts");
        ck_assert(strncmp(bp, bd, strlen(bd)) == 0);    /* a binding's file is in bindings.d */
        free(bd);
        free(kh);
        free(bp);

        struct strv names = { 0 };
        ck_assert_int_eq(state_ids_names(dir, &names), 0);      /* no ids dir yet: none */
        ck_assert_uint_eq(names.n, 0);
        char *error = NULL;
        ck_assert_int_eq(state_init(dir, &error), 0);
        char *ids = xasprintf("%s/ids", dir);
        ck_assert_int_eq(mkdir(ids, 0700), 0);
        const char *files[] = { "web.json", "connect-3.json", "notes.txt", ".json", "-bad.json", "db.json.tmp.Ab12Cd" };
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                char *p = xasprintf("%s/%s", ids, files[i]);
                touch(p);
                free(p);
        }
        ck_assert_int_eq(state_ids_names(dir, &names), 0);
        ck_assert_uint_eq(names.n, 2);
        ck_assert(has(&names, "web"));
        ck_assert(has(&names, "connect-3"));
        strv_clear(&names);
        ck_assert_int_eq(chmod(ids, 0), 0);
        if (geteuid() != 0)     /* root reads it anyway */
                ck_assert_int_eq(state_ids_names(dir, &names), -EACCES);
        ck_assert_int_eq(chmod(ids, 0700), 0);
        strv_clear(&names);
        free(ids);
}
END_TEST

int main(void) {
        Suite *s = suite_create("state");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_init_creates_private_dirs);
        tcase_add_test(tc, test_init_refuses_writable_dir);
        tcase_add_test(tc, test_init_refuses_dir_of_another_uid);
        tcase_add_test(tc, test_save_reload_remove);
        tcase_add_test(tc, test_init_sweeps_crash_leftovers);
        tcase_add_test(tc, test_layout);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
