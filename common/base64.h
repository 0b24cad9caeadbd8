/* Base64 (RFC 4648): the standard alphabet (known_hosts keys, SHA256 fingerprints) and the
 * URL-safe one (JWT parts). One copy for the whole project. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Encodes len bytes, with '=' padding if pad. Never NULL (aborts on OOM); caller frees. */
char *base64_encode(const void *data, size_t len, bool pad);
/* Decodes the first n characters of s (trailing '=' padding optional). url also accepts the
 * URL-safe alphabet's '-' '_' (and still '+' '/', as JWT parsers tolerate). Returns the
 * length of *ret (NUL-terminated, caller frees) or -EINVAL (a character outside the
 * alphabet, anything after padding, or a dangling 6-bit group). */
ssize_t base64_decode(const char *s, size_t n, bool url, unsigned char **ret);
