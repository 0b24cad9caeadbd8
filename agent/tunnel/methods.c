/* Which SSH methods the engine prefers, and the CPU probes that order them; see methods.h. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
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
#if defined(__arm__) && !defined(HWCAP2_SHA2)
#define HWCAP2_SHA2 (1 << 3)
#endif

/* Whether this CPU hashes SHA-256 in hardware (x86 SHA extensions, ARMv8 SHA2), which is
 * what OpenSSL then uses. */
static bool cpu_has_sha256(void) {
#if defined(__x86_64__) || defined(__i386__)
        unsigned a, b, c, d;
        return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
#elif defined(__aarch64__) && defined(HWCAP_SHA2)
        return getauxval(AT_HWCAP) & HWCAP_SHA2;
#elif defined(__arm__) && defined(HWCAP2_SHA2)
        return getauxval(AT_HWCAP2) & HWCAP2_SHA2;
#else
        return false;
#endif
}

/* Whether this CPU runs AES-GCM in hardware: AES rounds and the carry-less multiply of
 * GHASH (x86 AES-NI and PCLMULQDQ, ARMv8 AES and PMULL), which OpenSSL then uses. */
static bool cpu_has_aes_gcm(void) {
#if defined(__x86_64__) || defined(__i386__)
        unsigned a, b, c, d;
        return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_AES) && (c & bit_PCLMUL);
#elif defined(__aarch64__) && defined(HWCAP_AES) && defined(HWCAP_PMULL)
        return (getauxval(AT_HWCAP) & (HWCAP_AES | HWCAP_PMULL)) == (HWCAP_AES | HWCAP_PMULL);
#elif defined(__arm__) && defined(HWCAP2_AES) && defined(HWCAP2_PMULL)
        return (getauxval(AT_HWCAP2) & (HWCAP2_AES | HWCAP2_PMULL)) == (HWCAP2_AES | HWCAP2_PMULL);
#else
        return false;
#endif
}

/* The one place that says which methods we prefer, most wanted first, for a CPU with or
 * without AES-GCM (aes) and SHA-256 (sha) instructions; methods_join() drops what this
 * libssh2 lacks (1.10: no AEAD cipher, no ETM MAC). RSA host keys with SHA-1 signatures
 * fail against OpenSSH >= 8.8 in 1.10: prefer ed25519. An AEAD cipher (aes-gcm,
 * chacha20-poly1305, from 1.11) authenticates the packet itself, so no separate MAC costs
 * CPU. With AES and carry-less multiply instructions OpenSSL's aes128-gcm is the fastest;
 * without them (a Raspberry Pi 4) chacha20-poly1305 is, and AES in software is slow. Where
 * the relay allows no AEAD cipher, aes-ctr pays for a MAC: on 64-bit CPUs without SHA
 * instructions hmac-sha2-512 is 40% faster than hmac-sha2-256; with them (x86 SHA
 * extensions, a Pi 5's ARMv8 crypto) hmac-sha2-256 is 1.7x faster than -512. The ETM
 * variants come first, at the same cost: hardened relays allow only them. */
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
        *aes = cpu_has_aes_gcm();
        *sha = cpu_has_sha256();
}
