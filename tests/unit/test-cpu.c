/* The CPU probes that order the ciphers and MACs (issues 12, 16). cpu_probe() must agree
 * with what the kernel reports in /proc/cpuinfo on every architecture the package is built
 * for (amd64: "sha_ni", "aes" and "pclmulqdq" flags; arm64 and armhf: "sha2", "aes" and
 * "pmull" in Features). Under qemu-user (>= 8) the file is qemu's own, derived from the same
 * hwcaps getauxval() returns to the emulated binary. Then OpenSSL's view: OPENSSL_ia32cap /
 * OPENSSL_armcap parsed as OpenSSL parses them, and the order that comes out of both. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* chrony style: the .c is included to reach its static cpu_probe(). */
#include "../../agent/tunnel/methods.c"

/* Whether the first /proc/cpuinfo line starting with `key` lists the word `feature`;
 * fails the test when no such line exists (the check would then prove nothing). */
static bool cpuinfo_has(const char *key, const char *feature) {
        FILE *f = fopen("/proc/cpuinfo", "re");
        ck_assert_msg(f != NULL, "cannot open /proc/cpuinfo");
        char line[8192];
        bool found = false, has = false;
        while (!found && fgets(line, sizeof(line), f)) {
                if (strncmp(line, key, strlen(key)) != 0 || !strchr(line, ':'))
                        continue;
                found = true;
                for (char *save = NULL, *w = strtok_r(strchr(line, ':') + 1, " \t\n", &save); w;
                     w = strtok_r(NULL, " \t\n", &save))
                        has = has || streq(w, feature);
        }
        fclose(f);
        ck_assert_msg(found, "/proc/cpuinfo has no \"%s\" line", key);
        return has;
}

START_TEST(test_probe_matches_cpuinfo) {
        bool aes, sha;
        cpu_probe(&aes, &sha, NULL);
#if defined(__x86_64__) || defined(__i386__)
        bool expect_sha = cpuinfo_has("flags", "sha_ni");
        bool expect_aes = cpuinfo_has("flags", "aes") && cpuinfo_has("flags", "pclmulqdq");
#elif defined(__aarch64__) || defined(__arm__)
        bool expect_sha = cpuinfo_has("Features", "sha2");
        bool expect_aes = cpuinfo_has("Features", "aes") && cpuinfo_has("Features", "pmull");
#else
        bool expect_sha = false, expect_aes = false;  /* the probe knows no other CPU */
#endif
        ck_assert_msg(sha == expect_sha, "probe sha = %d, /proc/cpuinfo says %d", sha, expect_sha);
        ck_assert_msg(aes == expect_aes, "probe aes = %d, /proc/cpuinfo says %d", aes, expect_aes);
        printf("cpu: sha256 %s, aes+clmul %s\n", sha ? "yes" : "no", aes ? "yes" : "no");
}
END_TEST

/* A CPU with everything the choice reads, plus bits that must survive a mask of others:
 * SSE2 (LV0 26), SSSE3 (LV0 41), BMI1 (LV1 3), VAES (LV1 41). */
#define LV0_ALL (IA32_LV0_AESNI | IA32_LV0_PCLMULQDQ | UINT64_C(1) << 26 | UINT64_C(1) << 41 | UINT64_C(1) << 24)
#define LV1_ALL (IA32_LV1_SHA | UINT64_C(1) << 3 | UINT64_C(1) << 41)

/* What OpenSSL's view of LV0_ALL/LV1_ALL is under `env`. */
static void view(const char *env, uint64_t lv[2], bool *aes, bool *sha) {
        lv[0] = LV0_ALL;
        lv[1] = LV1_ALL;
        methods_ia32cap(env, lv);
        methods_from_ia32cap(lv, aes, sha);
}

START_TEST(test_ia32cap_as_openssl_reads_it) {
        uint64_t lv[2];
        bool aes, sha;
        view(NULL, lv, &aes, &sha);
        ck_assert(aes && sha && lv[0] == LV0_ALL && lv[1] == LV1_ALL);
        /* the bench's "no crypto instructions" mask: AES-NI, PCLMUL, AVX; AVX2, AVX-512, SHA, VAES */
        view("~0x1200000200000000:~0x00000600E0230020", lv, &aes, &sha);
        ck_assert(!aes && !sha);
        ck_assert_uint_eq(lv[0], LV0_ALL & ~(IA32_LV0_AESNI | IA32_LV0_PCLMULQDQ));
        ck_assert_uint_eq(lv[1], UINT64_C(1) << 3);     /* BMI1 kept, VAES (bit 41) masked */
        /* only AES-NI, no ':': OpenSSL then zeroes LV1 too (SHA off) */
        view("~0x200000000000000", lv, &aes, &sha);
        ck_assert(!aes && !sha && lv[1] == 0);
        /* LV0 untouched (empty field), only SHA masked */
        view(":~0x20000000", lv, &aes, &sha);
        ck_assert(aes && !sha && lv[0] == LV0_ALL);
        /* clearing FXSR clears AES-NI and PCLMULQDQ with it */
        view("~0x1000000:", lv, &aes, &sha);
        ck_assert(!aes && !sha);
        /* decimal and octal numbers as OpenSSL reads them: 1 << 57 */
        view("~144115188075855872:~0", lv, &aes, &sha);
        ck_assert(!aes && sha);
        view("~010000000000000000000:~0", lv, &aes, &sha);
        ck_assert(!aes && sha);
        /* a plain value replaces the vector; "::" keeps LV1 (OpenSSL 3.2+) */
        view("0x4000000::", lv, &aes, &sha);
        ck_assert(!aes && sha && lv[0] == UINT64_C(0x4000000) && lv[1] == LV1_ALL);
        /* the number ends at the first non-digit of its base */
        view("~0x200000200000000g12:~0x20000000", lv, &aes, &sha);
        ck_assert(!aes && !sha);
}
END_TEST

START_TEST(test_armcap_replaces_the_probe) {
        bool aes = true, sha = true;
        methods_from_armcap(NULL, &aes, &sha);
        ck_assert(aes && sha);
        methods_from_armcap("0x34", &aes, &sha);        /* AES | SHA256 | PMULL */
        ck_assert(aes && sha);
        methods_from_armcap("1", &aes, &sha);           /* NEON only: a Pi 4's OpenSSL view */
        ck_assert(!aes && !sha);
        aes = sha = false;                              /* no claim beats the CPU */
        methods_from_armcap("0xffffffff", &aes, &sha);
        ck_assert(!aes && !sha);
        aes = sha = true;
        methods_from_armcap("20", &aes, &sha);          /* decimal 0x14: AES + SHA256, no PMULL */
        ck_assert(!aes && sha);
}
END_TEST

/* The first cipher and MAC methods_cpu() leads to, against a libssh2 offering `have`. */
static void first_choice(const char *const *have, size_t n_have, char *cipher, size_t csize, char *mac,
                         size_t msize) {
        bool aes, sha;
        size_t n;
        const char *const *want;
        methods_cpu(&aes, &sha);
        want = methods_wants(METHODS_CIPHER, aes, sha, &n);
        methods_join(want, n, have, n_have, cipher, csize);
        want = methods_wants(METHODS_MAC, aes, sha, &n);
        methods_join(want, n, have, n_have, mac, msize);
        cipher[strcspn(cipher, ",")] = 0;
        mac[strcspn(mac, ",")] = 0;
}

static const char *const lib_1_11[] = { "aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com",
                                        "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                                        "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1", "hmac-sha2-256-etm@openssh.com",
                                        "hmac-sha2-512-etm@openssh.com" };
static const char *const lib_1_10[] = { "aes128-ctr", "aes192-ctr", "aes256-ctr", "aes256-cbc",
                                        "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1" };

START_TEST(test_choice_masked_and_unmasked) {
        char cipher[256], mac[256];
        bool aes, sha;
        ck_assert_int_eq(unsetenv("OPENSSL_ia32cap"), 0);
        ck_assert_int_eq(unsetenv("OPENSSL_armcap"), 0);
        cpu_probe(&aes, &sha, NULL);
        first_choice(lib_1_11, ELEMENTSOF(lib_1_11), cipher, sizeof(cipher), mac, sizeof(mac));
        ck_assert_str_eq(cipher, aes ? "aes128-gcm@openssh.com" : "chacha20-poly1305@openssh.com");
        ck_assert_str_eq(mac, sha ? "hmac-sha2-256-etm@openssh.com" : "hmac-sha2-512-etm@openssh.com");
        first_choice(lib_1_10, ELEMENTSOF(lib_1_10), cipher, sizeof(cipher), mac, sizeof(mac));
        ck_assert_str_eq(cipher, "aes128-ctr");
        ck_assert_str_eq(mac, sha ? "hmac-sha2-256" : "hmac-sha2-512");
        printf("unmasked: 1.11 %s, 1.10 %s + %s\n", aes ? "aes128-gcm" : "chacha20-poly1305", cipher, mac);

        /* OpenSSL told there are no crypto instructions: its AES and SHA-256 are then the
         * slow C/SSSE3 ones, whatever the CPU has */
#if defined(__x86_64__) || defined(__i386__)
        ck_assert_int_eq(setenv("OPENSSL_ia32cap", "~0x1200000200000000:~0x00000600E0230020", 1), 0);
#else
        ck_assert_int_eq(setenv("OPENSSL_armcap", "1", 1), 0);
#endif
        methods_cpu(&aes, &sha);
        ck_assert(!aes && !sha);
        first_choice(lib_1_11, ELEMENTSOF(lib_1_11), cipher, sizeof(cipher), mac, sizeof(mac));
        ck_assert_str_eq(cipher, "chacha20-poly1305@openssh.com");
        ck_assert_str_eq(mac, "hmac-sha2-512-etm@openssh.com");
        first_choice(lib_1_10, ELEMENTSOF(lib_1_10), cipher, sizeof(cipher), mac, sizeof(mac));
        ck_assert_str_eq(cipher, "aes128-ctr");
        ck_assert_str_eq(mac, "hmac-sha2-512");
        printf("masked: 1.11 chacha20-poly1305, 1.10 %s + %s\n", cipher, mac);

        /* claiming more than the CPU has changes nothing */
        cpu_probe(&aes, &sha, NULL);
        bool a2, s2;
        ck_assert_int_eq(setenv("OPENSSL_ia32cap", "0xffffffffffffffff:0xffffffffffffffff", 1), 0);
        ck_assert_int_eq(setenv("OPENSSL_armcap", "0xffffffff", 1), 0);
        methods_cpu(&a2, &s2);
        ck_assert(a2 == aes && s2 == sha);
        unsetenv("OPENSSL_ia32cap");
        unsetenv("OPENSSL_armcap");
}
END_TEST

int main(void) {
        Suite *s = suite_create("cpu");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_probe_matches_cpuinfo);
        tcase_add_test(tc, test_ia32cap_as_openssl_reads_it);
        tcase_add_test(tc, test_armcap_replaces_the_probe);
        tcase_add_test(tc, test_choice_masked_and_unmasked);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
