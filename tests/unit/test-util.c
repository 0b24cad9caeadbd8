#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "util.h"

START_TEST(test_binding_names) {
        ck_assert(binding_name_valid("web"));
        ck_assert(binding_name_valid("a"));
        ck_assert(binding_name_valid("Web-1.x_y"));
        ck_assert(!binding_name_valid(""));
        ck_assert(!binding_name_valid("-web"));
        ck_assert(!binding_name_valid("_web"));
        ck_assert(!binding_name_valid("we b"));
        ck_assert(!binding_name_valid("web/x"));
        ck_assert(!binding_name_valid("..")); /* would escape bindings.d */
        char name[70];
        memset(name, 'a', 63);
        name[63] = '\0';
        ck_assert(binding_name_valid(name));
        name[63] = 'a';
        name[64] = '\0';
        ck_assert(!binding_name_valid(name));
}
END_TEST

START_TEST(test_parse_numbers) {
        uint16_t port;
        unsigned u;
        bool b;
        ck_assert_int_eq(parse_port("80", &port), 0);
        ck_assert_uint_eq(port, 80);
        ck_assert_int_eq(parse_port("65535", &port), 0);
        ck_assert_int_eq(parse_port("0", &port), -EINVAL);
        ck_assert_int_eq(parse_port("65536", &port), -EINVAL);
        ck_assert_int_eq(parse_port("80x", &port), -EINVAL);
        ck_assert_int_eq(parse_port("-1", &port), -EINVAL);
        ck_assert_int_eq(parse_port("", &port), -EINVAL);
        ck_assert_int_eq(parse_uint("99999999999999999999", 0, 10, &u), -ERANGE);
        ck_assert_int_eq(parse_uint("11", 0, 10, &u), -ERANGE);
        ck_assert_int_eq(parse_bool("Yes", &b), 0);
        ck_assert(b);
        ck_assert_int_eq(parse_bool("off", &b), 0);
        ck_assert(!b);
        ck_assert_int_eq(parse_bool("maybe", &b), -EINVAL);
}
END_TEST

START_TEST(test_rfc3339) {
        char buf[32];
        uint64_t t;
        ck_assert_str_eq(format_rfc3339(1795305600ull * 1000000u, buf), "2026-11-22T00:00:00Z");
        ck_assert_int_eq(parse_rfc3339("2026-11-22T00:00:00Z", &t), 0);
        ck_assert_uint_eq(t, 1795305600ull * 1000000u);
        ck_assert_int_eq(parse_rfc3339("2026-11-22 00:00:00", &t), -EINVAL);
}
END_TEST

START_TEST(test_utf8_and_sanitize) {
        ck_assert(utf8_valid("h\xc3\xa9llo", 6));
        ck_assert(!utf8_valid("\xc3", 1));
        ck_assert(!utf8_valid("\xc0\xaf", 2));          /* overlong '/' */
        ck_assert(!utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
        ck_assert(!utf8_valid("a\0b", 3));
        char *s = sanitize_text("line\r\nforged: root\x1b[31m", 100);
        ck_assert_str_eq(s, "line??forged: root?[31m");
        free(s);
        s = sanitize_text("\xff\xfe ok", 100);
        ck_assert_str_eq(s, "?? ok");
        free(s);
}
END_TEST

START_TEST(test_atomic_write) {
        char dir[] = "/tmp/test-util-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char *path = xasprintf("%s/sub/dir/f.ini", dir);
        char *sub = xasprintf("%s/sub/dir", dir);
        ck_assert_int_eq(mkdir_p(sub, 0700), 0);
        ck_assert_int_eq(write_file_atomic(path, "one\n", 4, 0600), 0);
        ck_assert_int_eq(write_file_atomic(path, "two\n", 4, 0600), 0);
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(st.st_size, 4);
        char buf[8] = { 0 };
        int fd = open(path, O_RDONLY);
        ck_assert_int_eq(read(fd, buf, sizeof(buf)), 4);
        close(fd);
        ck_assert_str_eq(buf, "two\n");
        /* A failed write (directory gone) leaves no temp file and reports the errno. */
        char *bad = xasprintf("%s/missing/f.ini", dir);
        ck_assert_int_eq(write_file_atomic(bad, "x", 1, 0600), -ENOENT);
        ck_assert_int_eq(unlink_durable(path), 0);
        ck_assert_int_eq(unlink_durable(path), 0);   /* already gone is fine */
        ck_assert_int_eq(rmdir(sub), 0);             /* empty: no temp file left behind */
        char *cmd = xasprintf("rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        free(bad);
        free(sub);
        free(path);
}
END_TEST

START_TEST(test_strv) {
        struct strv v = { 0 };
        strv_pushf(&v, "%d", 1);
        strv_push(&v, xstrdup("two"));
        ck_assert_uint_eq(v.n, 2);
        ck_assert_str_eq(v.items[0], "1");
        ck_assert_ptr_null(v.items[2]);
        strv_clear(&v);
        ck_assert_uint_eq(v.n, 0);
}
END_TEST

/* Regression (fuzz-protocol, tests/fuzz/corpus/protocol/regress-leap-second-year-10000):
 * a leap second on the last second of 9999 parsed to a time that format_rfc3339 writes as
 * year 10000, which parse_rfc3339 refuses: a binding did not survive encode/decode. */
START_TEST(test_rfc3339_past_9999) {
        uint64_t t = 0;
        char buf[32];
        ck_assert_int_eq(parse_rfc3339("9999-12-31T23:59:59Z", &t), 0);
        ck_assert_str_eq(format_rfc3339(t, buf), "9999-12-31T23:59:59Z");
        ck_assert_int_eq(parse_rfc3339("9999-12-31T23:59:60Z", &t), -EINVAL);
        ck_assert_int_eq(parse_rfc3339("9999-12-31T23:59:61Z", &t), -EINVAL);
        ck_assert_int_eq(parse_rfc3339("2016-12-31T23:59:60Z", &t), 0);
        ck_assert_int_eq(parse_rfc3339(format_rfc3339(t, buf), &t), 0);
}
END_TEST

START_TEST(test_base64) {
        static const struct { const char *plain, *padded, *bare; } v[] = {   /* RFC 4648 section 10 */
                { "", "", "" }, { "f", "Zg==", "Zg" }, { "fo", "Zm8=", "Zm8" }, { "foo", "Zm9v", "Zm9v" },
                { "foob", "Zm9vYg==", "Zm9vYg" }, { "fooba", "Zm9vYmE=", "Zm9vYmE" }, { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
        };
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                char *e = base64_encode(v[i].plain, strlen(v[i].plain), true);
                ck_assert_str_eq(e, v[i].padded);
                free(e);
                e = base64_encode(v[i].plain, strlen(v[i].plain), false);
                ck_assert_str_eq(e, v[i].bare);
                free(e);
                for (int pad = 0; pad < 2; pad++) {
                        const char *in = pad ? v[i].padded : v[i].bare;
                        unsigned char *d = NULL;
                        ck_assert_int_eq(base64_decode(in, strlen(in), false, &d), (ssize_t) strlen(v[i].plain));
                        ck_assert_str_eq((char *) d, v[i].plain);
                        free(d);
                }
        }
        unsigned char *d = NULL;
        /* The URL alphabet only with url; the standard one's 62/63 either way. */
        ck_assert_int_eq(base64_decode("-_-_", 4, false, &d), -EINVAL);
        ck_assert_int_eq(base64_decode("-_-_", 4, true, &d), 3);
        ck_assert_int_eq(d[0], 0xfb);
        ck_assert_int_eq(d[1], 0xff);
        ck_assert_int_eq(d[2], 0xbf);
        free(d);
        ck_assert_int_eq(base64_decode("+/+/", 4, true, &d), 3);
        free(d);
        ck_assert_int_eq(base64_decode("Zg=x", 4, false, &d), -EINVAL);   /* data after padding */
        ck_assert_int_eq(base64_decode("Zm9vY", 5, false, &d), -EINVAL);  /* a dangling 6-bit group */
        ck_assert_int_eq(base64_decode("Zm 9", 4, false, &d), -EINVAL);
}
END_TEST

int main(void) {
        Suite *s = suite_create("util");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_binding_names);
        tcase_add_test(tc, test_parse_numbers);
        tcase_add_test(tc, test_rfc3339);
        tcase_add_test(tc, test_utf8_and_sanitize);
        tcase_add_test(tc, test_atomic_write);
        tcase_add_test(tc, test_strv);
        tcase_add_test(tc, test_rfc3339_past_9999);
        tcase_add_test(tc, test_base64);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
