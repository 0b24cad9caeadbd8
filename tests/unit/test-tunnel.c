/* Unit tests of the tunnel engine's statics (chrony style: the .c files are included):
 * sshcall's one table of libssh2 errors, its method preferences, and the session-sharing
 * key of tunnel.c. */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../agent/tunnel/sshcall.c"
#include "../../agent/tunnel/tunnel.c"

/* A session object with no socket: enough for translate(), which only reads state. */
static struct sshcall *fresh(void) {
        struct sshcall *c = xcalloc(1, sizeof(*c));
        c->session = libssh2_session_init_ex(NULL, NULL, NULL, c);
        ck_assert_ptr_nonnull(c->session);
        return c;
}

static void done(struct sshcall *c) {
        libssh2_session_free(c->session);
        free(c);
}

START_TEST(test_error_table_channel_errors_keep_the_session) {
        /* The ones ssh_fatal and session_error disagreed on, and the channel-level rest. */
        static const int channel_level[] = {
                LIBSSH2_ERROR_CHANNEL_WINDOW_FULL, LIBSSH2_ERROR_REQUEST_DENIED, LIBSSH2_ERROR_INVAL,
                LIBSSH2_ERROR_CHANNEL_CLOSED, LIBSSH2_ERROR_CHANNEL_EOF_SENT, LIBSSH2_ERROR_CHANNEL_UNKNOWN,
                LIBSSH2_ERROR_CHANNEL_FAILURE, LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED,
                LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED, LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED, LIBSSH2_ERROR_BAD_USE,
        };
        for (size_t i = 0; i < ELEMENTSOF(channel_level); i++) {
                struct sshcall *c = fresh();
                ssize_t r = translate(c, channel_level[i]);
                ck_assert_msg(r < 0 && r > -4096, "libssh2 error %d -> %zd", channel_level[i], r);
                ck_assert_msg(!sshcall_ended(c), "libssh2 error %d ends the session", channel_level[i]);
                done(c);
        }
}
END_TEST

START_TEST(test_error_table_session_errors_end_it) {
        static const struct { int code, err; } ending[] = {
                { LIBSSH2_ERROR_SOCKET_RECV, -ECONNRESET }, { LIBSSH2_ERROR_SOCKET_DISCONNECT, -ECONNRESET },
                { LIBSSH2_ERROR_TIMEOUT, -ETIMEDOUT }, { LIBSSH2_ERROR_AUTHENTICATION_FAILED, -EACCES },
                { LIBSSH2_ERROR_FILE, -ENOKEY }, { LIBSSH2_ERROR_KEX_FAILURE, -EPROTO },
                { LIBSSH2_ERROR_INVALID_MAC, -EPROTO }, { LIBSSH2_ERROR_ALLOC, -ENOMEM },
                { -9999 /* unknown */, -EIO },
        };
        for (size_t i = 0; i < ELEMENTSOF(ending); i++) {
                struct sshcall *c = fresh();
                ck_assert_int_eq(translate(c, ending[i].code), ending[i].err);
                ck_assert(sshcall_ended(c));
                ck_assert_int_eq(sshcall_end_errno(c), ending[i].err);
                done(c);
        }
}
END_TEST

START_TEST(test_error_table_socket_state_wins) {
        struct sshcall *c = fresh();
        /* A relay dying mid-auth: 1.10 says "authentication failed", the socket says EOF. */
        c->sock_broken = true;
        ck_assert_int_eq(translate(c, LIBSSH2_ERROR_AUTHENTICATION_FAILED), -ECONNRESET);
        ck_assert(sshcall_ended(c));
        ck_assert(sshcall_closed_by_peer(c));
        done(c);

        c = fresh();
        c->sock_broken = true;
        c->sock_errno = EHOSTUNREACH;
        ck_assert_int_eq(translate(c, LIBSSH2_ERROR_CHANNEL_CLOSED), -EHOSTUNREACH);   /* even a channel error */
        ck_assert_int_eq(sshcall_end_errno(c), -EHOSTUNREACH);
        done(c);

        c = fresh();
        ck_assert_int_eq(translate(c, 5), 5);
        ck_assert(sshcall_again(translate(c, LIBSSH2_ERROR_EAGAIN)));
        ck_assert(!sshcall_ended(c));
        done(c);
}
END_TEST

START_TEST(test_error_table_has_no_duplicates) {
        for (size_t i = 0; i < ELEMENTSOF(sshcall_errors); i++)
                for (size_t j = i + 1; j < ELEMENTSOF(sshcall_errors); j++)
                        ck_assert_int_ne(sshcall_errors[i].code, sshcall_errors[j].code);
}
END_TEST

START_TEST(test_preversion_lines_are_counted_and_capped) {
        struct sshcall *c = fresh();
        const char *junk = "hello there\r\n";
        for (int i = 0; i < SSHCALL_PREVERSION_LINES_MAX; i++)
                ck_assert(preversion_scan(c, junk, strlen(junk)));
        ck_assert(!preversion_scan(c, junk, strlen(junk)));
        unsigned lines;
        size_t bytes;
        ck_assert(sshcall_preversion(c, &lines, &bytes));
        ck_assert_uint_eq(lines, SSHCALL_PREVERSION_LINES_MAX + 1);
        done(c);

        c = fresh();
        const char *ok = "one line first\r\nSSH-2.0-OpenSSH_9.2\r\nthen binary";
        ck_assert(preversion_scan(c, ok, strlen(ok)));
        ck_assert(c->pv_done);
        ck_assert_uint_eq(c->pv_lines, 1);
        done(c);

        c = fresh();     /* "SSH-" in the middle of a line is not a version line */
        ck_assert(preversion_scan(c, "xSSH-2.0\n", 9));
        ck_assert(!c->pv_done);
        done(c);
}
END_TEST

START_TEST(test_method_preferences) {
        const char *have[] = { "hmac-sha1", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5" };
        char out[256];
        size_t n;
        const char *const *w = sshcall_method_wants(LIBSSH2_METHOD_MAC_CS, false, false, &n);
        methods_join(w, n, have, ELEMENTSOF(have), out, sizeof(out));
        ck_assert_str_eq(out, "hmac-sha2-512,hmac-sha2-256,hmac-sha1");
        w = sshcall_method_wants(LIBSSH2_METHOD_MAC_SC, false, true, &n);
        methods_join(w, n, have, ELEMENTSOF(have), out, sizeof(out));
        ck_assert_str_eq(out, "hmac-sha2-256,hmac-sha2-512,hmac-sha1");

        /* Names this libssh2 does not know never reach method_pref. */
        const char *old[] = { "ssh-rsa", "ecdsa-sha2-nistp256" };
        w = sshcall_method_wants(LIBSSH2_METHOD_HOSTKEY, false, false, &n);
        ck_assert_str_eq(w[0], "ssh-ed25519");
        methods_join(w, n, old, ELEMENTSOF(old), out, sizeof(out));
        ck_assert_str_eq(out, "ecdsa-sha2-nistp256");
        methods_join(w, n, old, 0, out, sizeof(out));
        ck_assert_str_eq(out, "");

        /* Without AES instructions chacha20-poly1305 first, with them aes128-gcm; on 1.10,
         * which has neither, aes128-ctr is the first this library keeps. */
        w = sshcall_method_wants(LIBSSH2_METHOD_CRYPT_CS, false, false, &n);
        ck_assert_str_eq(w[0], "chacha20-poly1305@openssh.com");
        w = sshcall_method_wants(LIBSSH2_METHOD_CRYPT_SC, true, false, &n);
        ck_assert_str_eq(w[0], "aes128-gcm@openssh.com");
        const char *v110[] = { "aes256-ctr", "aes128-ctr", "aes256-cbc" };
        methods_join(w, n, v110, ELEMENTSOF(v110), out, sizeof(out));
        ck_assert_str_eq(out, "aes128-ctr,aes256-ctr");
        ck_assert_ptr_null(sshcall_method_wants(LIBSSH2_METHOD_KEX, false, false, &n));

        /* And on a real session the preferences are accepted. */
        struct sshcall *c = fresh();
        sshcall_method_prefs(c->session);
        done(c);
}
END_TEST

static struct tunnel_params params(void) {
        return (struct tunnel_params) {
                .server = "relay.example", .server_port = 22, .user = "u", .identity_file = "/k",
                .known_hosts = "/kh", .host_key_check = HOST_KEY_CHECK_STRICT, .keepalive_interval = 20,
                .keepalive_count = 3, .bind_host = "localhost", .remote_port = 9000, .local_host = "127.0.0.1",
                .local_port = 8000, .name = "a",
        };
}

START_TEST(test_sharing_key) {
        sd_event *e1 = (sd_event *) 0x1, *e2 = (sd_event *) 0x2;
        struct session s = { .event = e1, .p = params() };
        struct tunnel_params p = params();
        /* What is the tunnel's own does not matter. */
        p.name = "b", p.remote_port = 9001, p.local_port = 8001, p.local_host = "::1", p.bind_host = "0.0.0.0";
        ck_assert(tunnel_shareable(&s, e1, &p));
        ck_assert(!tunnel_shareable(&s, e2, &p));
#define DIFFERS(field, value) do { struct tunnel_params q = params(); q.field = value; \
                ck_assert_msg(!tunnel_shareable(&s, e1, &q), #field " is not in the key"); } while (0)
        DIFFERS(server, "other.example");
        DIFFERS(server_port, 2222);
        DIFFERS(user, "v");
        DIFFERS(user, NULL);
        DIFFERS(identity_file, "/k2");
        DIFFERS(known_hosts, "/kh2");
        DIFFERS(host_key_check, HOST_KEY_CHECK_ACCEPT_NEW);
        DIFFERS(host_key_fingerprint, "SHA256:x");
        DIFFERS(keepalive_interval, 21);
        DIFFERS(keepalive_count, 4);
        DIFFERS(exclusive, true);
        s.p.exclusive = true;
        ck_assert(!tunnel_shareable(&s, e1, &p));
}
END_TEST

/* Big blocks give back their zero pages and read the same after; a session made with the
 * allocator is trimmed at birth (most of libssh2's zeroed struct is not resident). */
static size_t resident_pages(void *p, size_t len) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        uintptr_t a = (uintptr_t) p & ~(uintptr_t) (page - 1);
        size_t n = ((uintptr_t) p + len - a + page - 1) / page, r = 0;
        unsigned char vec[64];
        ck_assert_uint_le(n, sizeof(vec));
        ck_assert_int_eq(mincore((void *) a, n * page, vec), 0);
        for (size_t i = 0; i < n; i++)
                r += vec[i] & 1;
        return r;
}

START_TEST(test_sshmem_gives_back_zero_pages) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE), size = 81536;
        unsigned char *p = sshmem_alloc(size, NULL);
        ck_assert_ptr_nonnull(p);
        memset(p, 0, size);
        p[100] = 1;
        p[50000] = 2;
        size_t before = resident_pages(p, size);
        size_t trimmed = sshmem_trim(p);
        ck_assert_uint_ge(trimmed, (size + page) / page - 3);
        ck_assert_uint_le(resident_pages(p, size), before - trimmed);
        for (size_t i = 0; i < size; i++)
                ck_assert_uint_eq(p[i], i == 100 ? 1 : i == 50000 ? 2 : 0);
        /* Grown from small to big and back, the contents stay. */
        char *q = sshmem_alloc(10, NULL);
        memcpy(q, "0123456789", 10);
        q = sshmem_realloc(q, 60000, NULL);
        ck_assert(memcmp(q, "0123456789", 10) == 0);
        q = sshmem_realloc(q, 5, NULL);
        ck_assert(memcmp(q, "01234", 5) == 0);
        ck_assert_uint_eq(sshmem_trim(q), 0);          /* small: nothing to give back */
        sshmem_free(q, NULL);
        sshmem_free(p, NULL);
        sshmem_free(NULL, NULL);
        /* A received packet's block (up to 40000 bytes) stays on the heap: no pages of its
         * own to map, fault in and unmap for every packet. */
        q = sshmem_alloc(40000 + 64, NULL);
        memset(q, 0, 40000 + 64);
        ck_assert_uint_eq(sshmem_trim(q), 0);
        sshmem_free(q, NULL);

        sd_event *e;
        struct sshcall *c;
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(sshcall_new(e, -1, &c), 0);
        sshcall_free(c, false);
        sd_event_unref(e);
}
END_TEST

int main(void) {
        Suite *s = suite_create("tunnel");
        TCase *tc = tcase_create("statics");
        if (sshcall_global_init() < 0)
                return 1;
        tcase_add_test(tc, test_error_table_channel_errors_keep_the_session);
        tcase_add_test(tc, test_error_table_session_errors_end_it);
        tcase_add_test(tc, test_error_table_socket_state_wins);
        tcase_add_test(tc, test_error_table_has_no_duplicates);
        tcase_add_test(tc, test_preversion_lines_are_counted_and_capped);
        tcase_add_test(tc, test_method_preferences);
        tcase_add_test(tc, test_sshmem_gives_back_zero_pages);
        tcase_add_test(tc, test_sharing_key);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        sshcall_global_done();
        return failed ? 1 : 0;
}
