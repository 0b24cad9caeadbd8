/* The SSH method preferences of the engine as plain names, most wanted first, and the CPU
 * probes (AES-GCM, SHA-256 instructions) that choose between the orders. Knows no libssh2:
 * sshcall.c maps libssh2's method numbers onto these kinds and hands the result to
 * libssh2_session_method_pref(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

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

/* What this CPU has in hardware: AES rounds with carry-less multiply (*aes), SHA-256 (*sha). */
void methods_cpu(bool *aes, bool *sha);
