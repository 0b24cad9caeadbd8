/* Which SSH methods the engine prefers, and the CPU probes that order them; see methods.h. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include "methods.h"
#include "util.h"

/* Joins the names of `want` that are in `have`, in want's order, with commas, into out.
 * Only methods this libssh2 knows may go into a preference: 1.10's method_pref() removes
 * unknown ones with an overlapping memcpy (undefined behaviour, ASan aborts on it). */
void methods_join(const char *const *want, size_t n_want, const char *const *have, size_t n_have, char *out,
                  size_t size) {
        *out = 0;
        for (size_t i = 0; i < n_want; i++)
                for (size_t j = 0; j < n_have; j++)
                        if (streq(want[i], have[j]) && strlen(out) + strlen(want[i]) + 2 < size) {
                                if (*out)
                                        strcat(out, ",");
                                strcat(out, want[i]);
                        }
}

/* glibc's <sys/auxv.h> names aarch64's HWCAP_SHA2 but none of 32-bit arm's AT_HWCAP2 bits
 * (they are in the kernel's <asm/hwcap.h>, which armhf's libc6-dev does not ship). */
#if defined(__arm__)
#ifndef HWCAP2_AES
#define HWCAP2_AES (1 << 0)
#endif
#ifndef HWCAP2_PMULL
#define HWCAP2_PMULL (1 << 1)
#endif
#ifndef HWCAP2_SHA2
#define HWCAP2_SHA2 (1 << 3)
#endif
#endif

/* OpenSSL's environment syntax for its capability vectors (OPENSSL_ia32cap(3)): a number
 * is hex after "0x", octal after "0", decimal otherwise, and ends at the first character
 * that is no digit of its base (OpenSSL's own ossl_strtouint64, not strtoull: no sign, no
 * blanks, no overflow check). */
static uint64_t cap_number(const char *s) {
        uint64_t v = 0;
        unsigned base = 10, digit;
        if (*s == '0') {
                base = 8, s++;
                if (*s == 'x' || *s == 'X')
                        base = 16, s++;
        }
        for (;; s++) {
                if (*s >= '0' && *s <= '9')
                        digit = (unsigned) (*s - '0');
                else if (*s >= 'a' && *s <= 'f')
                        digit = (unsigned) (*s - 'a' + 10);
                else if (*s >= 'A' && *s <= 'F')
                        digit = (unsigned) (*s - 'A' + 10);
                else
                        break;
                if (digit >= base)
                        break;
                v = v * base + digit;
        }
        return v;
}

/* OPENSSL_cpuid_setup() of OpenSSL 3 (crypto/cpuid.c), for the two logical vectors the
 * choice reads. LV0: "~N" clears N's bits from CPUID, with FXSR (bit 24) cleared also
 * PCLMULQDQ, XOP, AES-NI and AVX (bits 33, 43, 57, 60); an empty field (the value starts
 * with ':') keeps CPUID; a plain N replaces it. LV1 follows the first ':' the same way
 * without the FXSR rule; no ':' at all, or nothing after it, sets LV1 to 0. (OpenSSL 3.0
 * reads "::" as LV1 = 0 where 3.2+ keeps CPUID; nobody masks that way.) */
void methods_ia32cap(const char *env, uint64_t lv[2]) {
        if (!env)
                return;
        if (*env == '~') {
                uint64_t mask = cap_number(env + 1);
                lv[0] &= ~mask;
                if (mask & (1u << 24))
                        lv[0] &= ~((uint64_t) (1u << 1 | 1u << 11 | 1u << 25 | 1u << 28) << 32);
        } else if (*env != ':')
                lv[0] = cap_number(env);
        const char *f = strchr(env, ':');
        if (!f || !*++f)
                lv[1] = 0;
        else if (*f == '~')
                lv[1] &= ~cap_number(f + 1);
        else if (*f != ':')
                lv[1] = cap_number(f);
}

/* OpenSSL's bits (x86: CPUID leaf 1 EDX:ECX in LV0, leaf 7 EBX:ECX in LV1; arm: its own
 * OPENSSL_armcap_P, arm_arch.h). */
#define IA32_LV0_PCLMULQDQ (UINT64_C(1) << 33)
#define IA32_LV0_AESNI     (UINT64_C(1) << 57)
#define IA32_LV1_SHA       (UINT64_C(1) << 29)
#define ARMCAP_AES         (1u << 2)
#define ARMCAP_SHA256      (1u << 4)
#define ARMCAP_PMULL       (1u << 5)

void methods_from_ia32cap(const uint64_t lv[2], bool *aes, bool *sha) {
        *aes = (lv[0] & (IA32_LV0_AESNI | IA32_LV0_PCLMULQDQ)) == (IA32_LV0_AESNI | IA32_LV0_PCLMULQDQ);
        *sha = lv[1] & IA32_LV1_SHA;
}

/* OpenSSL on arm takes OPENSSL_armcap as the whole vector (strtoul base 0), no probing. */
void methods_from_armcap(const char *env, bool *aes, bool *sha) {
        if (!env)
                return;
        unsigned long cap = strtoul(env, NULL, 0);
        *aes = *aes && (cap & (ARMCAP_AES | ARMCAP_PMULL)) == (ARMCAP_AES | ARMCAP_PMULL);
        *sha = *sha && (cap & ARMCAP_SHA256);
}

/* What the CPU really has: AES rounds with the carry-less multiply of GHASH (x86 AES-NI and
 * PCLMULQDQ, ARMv8 AES and PMULL) and SHA-256 (x86 SHA extensions, ARMv8 SHA2); on x86 also
 * the CPUID vectors in OpenSSL's layout (lv may be NULL). */
static void cpu_probe(bool *aes, bool *sha, uint64_t lv[2]) {
        *aes = *sha = false;
#if defined(__x86_64__) || defined(__i386__)
        unsigned a, b, c, d;
        uint64_t v[2] = { 0, 0 };
        if (__get_cpuid(1, &a, &b, &c, &d))
                v[0] = (uint64_t) d | (uint64_t) c << 32;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d))
                v[1] = (uint64_t) b | (uint64_t) c << 32;
        methods_from_ia32cap(v, aes, sha);
        if (lv)
                lv[0] = v[0], lv[1] = v[1];
#elif defined(__aarch64__)
        (void) lv;
        unsigned long hw = getauxval(AT_HWCAP);
#if defined(HWCAP_AES) && defined(HWCAP_PMULL)
        *aes = (hw & (HWCAP_AES | HWCAP_PMULL)) == (HWCAP_AES | HWCAP_PMULL);
#endif
#ifdef HWCAP_SHA2
        *sha = hw & HWCAP_SHA2;
#endif
#elif defined(__arm__)
        (void) lv;
        unsigned long hw2 = getauxval(AT_HWCAP2);
        *aes = (hw2 & (HWCAP2_AES | HWCAP2_PMULL)) == (HWCAP2_AES | HWCAP2_PMULL);
        *sha = hw2 & HWCAP2_SHA2;
#else
        (void) lv;
#endif
}

/* The one place that says which methods we prefer, most wanted first, for a CPU with or
 * without AES-GCM (aes) and SHA-256 (sha) instructions as OpenSSL will use them (methods_cpu);
 * methods_join() drops what this libssh2 lacks (1.10: no AEAD cipher, no ETM MAC). RSA host
 * keys with SHA-1 signatures fail against OpenSSH >= 8.8 in 1.10: prefer ed25519. An AEAD
 * cipher (aes-gcm, chacha20-poly1305, from 1.11) authenticates the packet itself, so no
 * separate MAC costs CPU. The orders are what tests/bench/bench_matrix.py --sweep measured
 * (mysocketd's CPU s/GiB down/up, relay restricted to one cipher; tests/bench/results/
 * matrix/): with AES instructions aes128-gcm costs least on Debian 13's 1.11.1 (2.6/2.3
 * against 3.2/3.0 for chacha20 and 3.0/3.0 for aes128-ctr+ETM) and on the patched 1.11.1
 * (0.9/0.7, chacha20 1.2/1.0, aes-ctr 1.6/1.5); without them (a Raspberry Pi 4, or
 * OPENSSL_ia32cap masking AES) chacha20-poly1305 costs 1.8-3.1 against 4.4-11 for either AES
 * mode. Where the relay allows no AEAD cipher, aes-ctr pays for a MAC: on 64-bit
 * CPUs without SHA instructions hmac-sha2-512 is 40% faster than hmac-sha2-256; with them
 * (x86 SHA extensions, a Pi 5's ARMv8 crypto) hmac-sha2-256 is 1.7x faster than -512. The
 * ETM variants come first, at the same cost: hardened relays allow only them. */
const char *const *methods_wants(enum methods_kind kind, bool aes, bool sha, size_t *n) {
        static const char *const hostkeys[] = { "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                                "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256" };
        static const char *const ciphers[2][6] = {
                { "chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                  "aes128-ctr", "aes192-ctr", "aes256-ctr" },                       /* AES in software */
                { "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                  "aes128-ctr", "aes192-ctr", "aes256-ctr" },                       /* AES instructions */
        };
        static const char *const macs[2][5] = {
                { "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                  "hmac-sha2-512", "hmac-sha2-256", "hmac-sha1" },                  /* SHA-2 in software */
                { "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
                  "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1" },                  /* SHA-256 instructions */
        };
        switch (kind) {
        case METHODS_HOSTKEY:
                *n = ELEMENTSOF(hostkeys);
                return hostkeys;
        case METHODS_CIPHER:
                *n = ELEMENTSOF(ciphers[aes]);
                return ciphers[aes];
        case METHODS_MAC:
                *n = ELEMENTSOF(macs[sha]);
                return macs[sha];
        }
        *n = 0;
        return NULL;
}

void methods_cpu(bool *aes, bool *sha) {
        uint64_t lv[2];
        cpu_probe(aes, sha, lv);
#if defined(__x86_64__) || defined(__i386__)
        const char *env = getenv("OPENSSL_ia32cap");
        if (env) {
                bool ossl_aes, ossl_sha;
                methods_ia32cap(env, lv);
                methods_from_ia32cap(lv, &ossl_aes, &ossl_sha);
                *aes = *aes && ossl_aes;
                *sha = *sha && ossl_sha;
        }
#elif defined(__arm__) || defined(__aarch64__)
        methods_from_armcap(getenv("OPENSSL_armcap"), aes, sha);
#endif
}
