/* Unit tests of agent/binding.c's statics: the file is included whole (as chrony's
 * test/unit does), so backoff_delay is reached without being exported. */
#include <check.h>

#include "binding.c"

#define SAMPLES 4000

struct spread {
        uint64_t min, max;
        double mean;
};

static struct spread sample(unsigned initial, unsigned max, unsigned failures) {
        const struct config c = { .backoff_initial = initial, .backoff_max = max };
        struct spread s = { .min = UINT64_MAX };
        double sum = 0;
        for (int i = 0; i < SAMPLES; i++) {
                uint64_t d = backoff_delay(&c, failures);
                s.min = d < s.min ? d : s.min;
                s.max = d > s.max ? d : s.max;
                sum += (double) d;
        }
        s.mean = sum / SAMPLES;
        return s;
}

/* Full jitter: uniform in [BACKOFF_MIN_USEC, cap], cap = initial * 2^failures up to max. A
 * uniform sample of 4000 reaches both ends, and its mean is within 5% of the middle: that is
 * 5.5 standard errors (a false failure once in about 10^7 checks; 3%, 3.3 of them, failed
 * about one run in a hundred). */
static void check_uniform(unsigned initial, unsigned max, unsigned failures, uint64_t cap) {
        struct spread s = sample(initial, max, failures);
        double middle = ((double) cap + BACKOFF_MIN_USEC) / 2;
        ck_assert_uint_ge(s.min, BACKOFF_MIN_USEC);
        ck_assert_uint_le(s.max, cap);
        ck_assert_uint_ge(s.max, cap - cap / 50);
        ck_assert_uint_le(s.min, BACKOFF_MIN_USEC + cap / 50);
        ck_assert_double_ge(s.mean, middle * 0.95);
        ck_assert_double_le(s.mean, middle * 1.05);
}

START_TEST(test_first_retry_is_within_initial) {
        check_uniform(1, 300, 0, USEC_PER_SEC);
        check_uniform(5, 300, 0, 5 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_cap_doubles_per_failure) {
        check_uniform(1, 300, 1, 2 * USEC_PER_SEC);
        check_uniform(1, 300, 3, 8 * USEC_PER_SEC);
        check_uniform(2, 300, 5, 64 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_cap_stops_at_max) {
        check_uniform(1, 300, 9, 300 * USEC_PER_SEC);          /* 512 s would be past max */
        check_uniform(1, 300, 1000000, 300 * USEC_PER_SEC);    /* no overflow, however many */
        check_uniform(86400, 86400, 4000000000u, 86400 * USEC_PER_SEC);
        check_uniform(1, 1, 7, USEC_PER_SEC);
}
END_TEST

START_TEST(test_never_spins) {
        /* Even a cap below the floor waits the floor: a binding never retries in a tight loop. */
        const struct config c = { .backoff_initial = 1, .backoff_max = 1 };
        for (int i = 0; i < SAMPLES; i++)
                ck_assert_uint_ge(backoff_delay(&c, 0), BACKOFF_MIN_USEC);
}
END_TEST

START_TEST(test_no_spike_at_the_floor) {
        /* A draw from [0, cap] clamped up to the floor put a tenth of all retries (1 s cap)
         * on the same instant after a relay went away; the floor is one value among many. */
        const struct config c = { .backoff_initial = 1, .backoff_max = 300 };
        int at_floor = 0;
        for (int i = 0; i < SAMPLES; i++)
                at_floor += backoff_delay(&c, 0) == BACKOFF_MIN_USEC;
        ck_assert_int_le(at_floor, 2);
}
END_TEST

int main(void) {
        Suite *s = suite_create("binding");
        TCase *tc = tcase_create("backoff");
        tcase_add_test(tc, test_first_retry_is_within_initial);
        tcase_add_test(tc, test_cap_doubles_per_failure);
        tcase_add_test(tc, test_cap_stops_at_max);
        tcase_add_test(tc, test_never_spins);
        tcase_add_test(tc, test_no_spike_at_the_floor);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
