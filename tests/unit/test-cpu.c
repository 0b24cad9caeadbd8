/* The CPU probe that orders the MACs (issue 12): cpu_has_sha256() must agree with what the
 * kernel reports in /proc/cpuinfo on every architecture the package is built for (amd64:
 * the "sha_ni" flag; arm64 and armhf: "sha2" in Features). Under qemu-user (>= 8) the file
 * is qemu's own, derived from the same hwcaps getauxval() returns to the emulated binary. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* chrony style: the .c is included to reach its static cpu_has_sha256(). */
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

START_TEST(test_sha256_probe_matches_cpuinfo) {
#if defined(__x86_64__) || defined(__i386__)
        bool expect = cpuinfo_has("flags", "sha_ni");
#elif defined(__aarch64__) || defined(__arm__)
        bool expect = cpuinfo_has("Features", "sha2");
#else
        bool expect = false;    /* the probe knows no other CPU: software SHA-2 order */
#endif
        ck_assert_msg(cpu_has_sha256() == expect, "cpu_has_sha256() = %d, /proc/cpuinfo says %d",
                      cpu_has_sha256(), expect);
        printf("cpu_has_sha256: %s\n", expect ? "yes (hmac-sha2-256 first)" : "no (hmac-sha2-512 first)");
}
END_TEST

int main(void) {
        Suite *s = suite_create("cpu");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_sha256_probe_matches_cpuinfo);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
