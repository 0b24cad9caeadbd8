/* The SSH method preferences of the engine as plain names, most wanted first, and the CPU
 * probes (AES-GCM, SHA-256 instructions) that choose between the orders. Knows no libssh2:
 * sshcall.c maps libssh2's method numbers onto these kinds and hands the result to
 * libssh2_session_method_pref(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum methods_kind {
        METHODS_HOSTKEY,
        METHODS_CIPHER,   /* both directions */
        METHODS_MAC,      /* both directions */
};

/* The names we want for `kind` on a CPU with (aes) or without AES-GCM instructions and with
 * (sha) or without SHA-256 instructions; *n is set to their number. Static storage. */
const char *const *methods_wants(enum methods_kind kind, bool aes, bool sha, size_t *n);

/* Joins the names of `want` that are in `have`, in want's order, with commas, into out
 * (empty when none is left; names that do not fit in size are dropped). */
void methods_join(const char *const *want, size_t n_want, const char *const *have, size_t n_have, char *out,
                  size_t size);

/* What this CPU has in hardware AND what OpenSSL will use of it: AES rounds with carry-less
 * multiply (*aes), SHA-256 (*sha). A feature counts when cpuid (x86) or AT_HWCAP/AT_HWCAP2
 * (arm) shows it and OpenSSL's environment override (OPENSSL_ia32cap, OPENSSL_armcap) leaves
 * it on: a masked AES makes OpenSSL's AES slow, so chacha20-poly1305 goes first. */
void methods_cpu(bool *aes, bool *sha);

/* Applies an OPENSSL_ia32cap value (NULL: none) to lv, OpenSSL's first two capability
 * vectors (lv[0] = CPUID(1) EDX | ECX << 32, lv[1] = CPUID(7,0) EBX | ECX << 32), the way
 * OpenSSL 3's OPENSSL_cpuid_setup() does. */
void methods_ia32cap(const char *env, uint64_t lv[2]);

/* Reads AES-NI+PCLMULQDQ (*aes) and SHA (*sha) from vectors in that layout. */
void methods_from_ia32cap(const uint64_t lv[2], bool *aes, bool *sha);

/* Clears *aes / *sha when an OPENSSL_armcap value (NULL: none; it replaces OpenSSL's whole
 * probe) lacks ARMv8 AES+PMULL / SHA256. */
void methods_from_armcap(const char *env, bool *aes, bool *sha);
