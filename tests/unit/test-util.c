#include <check.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scrub.h"
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

START_TEST(test_host_port_and_display_name) {
        char *s = format_host_port("127.0.0.1", 8000);
        ck_assert_str_eq(s, "127.0.0.1:8000");
        free(s);
        s = format_host_port("::1", 8000);
        ck_assert_str_eq(s, "[::1]:8000");
        free(s);
        s = format_host_port("db.local", 5432);
        ck_assert_str_eq(s, "db.local:5432");
        free(s);
        s = display_name_default("web", "raspberrypi");
        ck_assert_str_eq(s, "web on raspberrypi");
        free(s);
        char host[256] = "";
        ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
        char *want = xasprintf("web on %s", host);
        s = display_name_default("web", NULL);
        ck_assert_str_eq(s, want);
        free(s);
        free(want);
        ck_assert_int_eq(socket_type_from_string("tls"), SOCKET_TYPE_TLS);
        ck_assert_int_eq(socket_type_from_string("ftp"), -EINVAL);
        ck_assert_str_eq(socket_type_to_string(SOCKET_TYPE_HTTPS), "https");
        ck_assert_ptr_null(socket_type_to_string(_SOCKET_TYPE_MAX));
}
END_TEST

/* The secret-file rule both mysocketd (password_file, token_file) and mysocketctl login
 * follow: one final "\n" or "\r\n" is the file's; everything else is the secret. */
static char *secret_dir;

static int read_secret(const char *content, size_t len, mode_t mode, size_t max, char **ret, char **error) {
        char *path = xasprintf("%s/secret", secret_dir);
        unlink(path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, content, len), (ssize_t) len);
        close(fd);
        ck_assert_int_eq(chmod(path, mode), 0);
        *ret = NULL;
        *error = NULL;
        int r = secret_file_read(path, "password", max, ret, error);
        free(path);
        return r;
}

static void secret_is(const char *content, const char *want) {
        char *s, *e;
        ck_assert_int_eq(read_secret(content, strlen(content), 0600, 64, &s, &e), 0);
        ck_assert_ptr_null(e);
        ck_assert_str_eq(s, want);
        free(s);
}

static void secret_refused(const char *content, size_t len, mode_t mode, size_t max, int want_r,
                           const char *want_fragment) {
        char *s, *e;
        ck_assert_int_eq(read_secret(content, len, mode, max, &s, &e), want_r);
        ck_assert_ptr_null(s);
        ck_assert_ptr_nonnull(e);
        ck_assert_msg(strstr(e, want_fragment), "\"%s\" lacks \"%s\"", e, want_fragment);
        free(e);
}

START_TEST(test_strip_line_end) {
        ck_assert_uint_eq(strip_line_end("pw\n", 3), 2);
        ck_assert_uint_eq(strip_line_end("pw\r\n", 4), 2);
        ck_assert_uint_eq(strip_line_end("pw", 2), 2);
        ck_assert_uint_eq(strip_line_end("pw\r", 3), 3);       /* a lone CR is not a line end */
        ck_assert_uint_eq(strip_line_end("pw\n\n", 4), 3);     /* only one */
        ck_assert_uint_eq(strip_line_end("\n", 1), 0);
        ck_assert_uint_eq(strip_line_end("", 0), 0);
}
END_TEST

START_TEST(test_secret_file) {
        char tmpl[] = "/tmp/test-util-secret-XXXXXX";
        secret_dir = mkdtemp(tmpl);
        ck_assert_ptr_nonnull(secret_dir);

        secret_is("hunter2", "hunter2");
        secret_is("hunter2\n", "hunter2");             /* echo hunter2 > file */
        secret_is("hunter2\r\n", "hunter2");           /* an editor that writes CRLF */
        secret_is(" hunter2 \t\n", " hunter2 \t");      /* blanks are the password's */
        secret_is("x", "x");
        char full[65];
        memset(full, 'a', 64);
        full[64] = '\0';
        secret_is(full, full);                          /* exactly max */
        char full_nl[66];
        memcpy(full_nl, full, 64);
        memcpy(full_nl + 64, "\n", 2);
        secret_is(full_nl, full);                       /* max plus its line end */

        secret_refused("hunter2\n\n", 9, 0600, 64, -EINVAL, "more than one line");
        secret_refused("hunter2\nsecond\n", 15, 0600, 64, -EINVAL, "more than one line");
        secret_refused("hunter2\r", 8, 0600, 64, -EINVAL, "more than one line");
        secret_refused("", 0, 0600, 64, -EINVAL, "is empty or not text");
        secret_refused("\n", 1, 0600, 64, -EINVAL, "is empty or not text");
        secret_refused("\r\n", 2, 0600, 64, -EINVAL, "is empty or not text");
        secret_refused("hun\0ter2", 8, 0600, 64, -EINVAL, "is empty or not text");
        char big[67];
        memset(big, 'a', 65);
        memcpy(big + 65, "\n", 2);
        secret_refused(big, 66, 0600, 64, -EFBIG, "longer than 64 bytes");
        secret_refused("hunter2\n", 8, 0640, 64, -EPERM, "is readable by others (mode 0640); chmod 600 ");
        secret_refused("hunter2\n", 8, 0604, 64, -EPERM, "(mode 0604)");
        /* 0400 is as private as 0600. */
        char *s, *e;
        ck_assert_int_eq(read_secret("hunter2\n", 8, 0400, 64, &s, &e), 0);
        ck_assert_str_eq(s, "hunter2");
        free(s);

        char *missing = xasprintf("%s/missing", secret_dir);
        ck_assert_int_eq(secret_file_read(missing, "token", 64, &s, &e), -ENOENT);
        ck_assert_msg(strstr(e, "cannot open token file ") && strstr(e, "No such file"), "%s", e);
        free(e);
        ck_assert_int_eq(secret_file_read(secret_dir, "token", 64, &s, &e), -EINVAL);
        ck_assert_msg(strstr(e, "is not a regular file"), "%s", e);
        free(e);
        free(missing);

        char *cmd = xasprintf("rm -rf %s", secret_dir);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
}
END_TEST

START_TEST(test_scrub) {
        char buf[128];
        strcpy(buf, "pw=hunter22 and again hunter22, tok ab*** ok");
        scrub_add("hunter22");
        scrub_add("ab***");            /* holds the mask itself: must not loop */
        scrub_add("no");               /* too short to be masked */
        ck_assert_str_eq(scrub_secrets(buf), "pw=*** and again ***, tok *** ok");
        scrub_add("hunter22");
        scrub_remove("hunter22");
        strcpy(buf, "hunter22");
        ck_assert_str_eq(scrub_secrets(buf), "***");   /* still counted once */
        scrub_remove("hunter22");
        strcpy(buf, "hunter22");
        ck_assert_str_eq(scrub_secrets(buf), "hunter22");
        ck_assert_ptr_null(scrub_secrets(NULL));
        scrub_clear();
        strcpy(buf, "ab***");
        ck_assert_str_eq(scrub_secrets(buf), "ab***");
}
END_TEST

START_TEST(test_listen_address) {
        struct sockaddr_storage ss;
        unsigned len;
        char buf[INET6_ADDRSTRLEN];
        ck_assert_int_eq(parse_listen_address("127.0.0.1:9431", &ss, &len), 0);
        const struct sockaddr_in *a4 = (const struct sockaddr_in *) &ss;
        ck_assert_int_eq(ss.ss_family, AF_INET);
        ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
        ck_assert_uint_eq(ntohs(a4->sin_port), 9431);
        ck_assert_str_eq(inet_ntop(AF_INET, &a4->sin_addr, buf, sizeof(buf)), "127.0.0.1");
        ck_assert_int_eq(parse_listen_address("[::1]:65535", &ss, &len), 0);
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *) &ss;
        ck_assert_int_eq(ss.ss_family, AF_INET6);
        ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
        ck_assert_uint_eq(ntohs(a6->sin6_port), 65535);
        ck_assert_str_eq(inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof(buf)), "::1");
        ck_assert_int_eq(parse_listen_address("[::]:1", &ss, &len), 0);
        ck_assert_int_eq(parse_listen_address("0.0.0.0:80", &ss, &len), 0);
        static const char *const bad[] = {
                "", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:8x",
                "localhost:80", "::1:80", "[::1]", "[::1]:", "[]:80", "[127.0.0.1]:80", "1.2.3:80",
                "[::1]80", "[[::1]]:80", "127.0.0.1 :80", "[ffff::1::2]:80",
                "[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(parse_listen_address(bad[i], &ss, &len) == -EINVAL, "accepted \"%s\"", bad[i]);
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
        tcase_add_test(tc, test_strip_line_end);
        tcase_add_test(tc, test_host_port_and_display_name);
        tcase_add_test(tc, test_secret_file);
        tcase_add_test(tc, test_scrub);
        tcase_add_test(tc, test_listen_address);
        tcase_add_test(tc, test_base64);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
