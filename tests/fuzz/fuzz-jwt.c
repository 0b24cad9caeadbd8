/* libFuzzer target for the JWT claim reader, apijson_jwt_claims() (agent/api/json.c).
 *
 * Each input is tried twice: as a whole token (exercising the splitting and base64url
 * decoding), and as the JSON payload of a token built around it (header and signature
 * fixed, the input base64url-encoded in the middle), so the fuzzer reaches the claim
 * checks without having to learn base64. The contract of api/json.h is checked: -EINVAL or
 * -EBADMSG with the claims cleared, or 0 with an exp that fits the year 9999 in usec and a
 * user_id in the safe character set. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "util.h"

#define CHECK(cond, ...)                                                        \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "fuzz-jwt: " __VA_ARGS__);              \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

#define HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"        /* {"alg":"HS256","typ":"JWT"} */
#define USEC_9999 UINT64_C(253402300799000000)

static void check(const char *token) {
        struct api_jwt_claims c;
        memset(&c, 0x5a, sizeof(c));            /* garbage: the reader must set every field */
        int r = apijson_jwt_claims(token, &c);
        if (r == 0) {
                CHECK(c.exp > 0 && c.exp <= USEC_9999, "exp %llu accepted", (unsigned long long) c.exp);
                CHECK(c.iat <= USEC_9999, "iat %llu accepted", (unsigned long long) c.iat);
                if (c.user_id) {
                        size_t n = strlen(c.user_id);
                        CHECK(n > 0 && n <= REMOTE_ID_MAX && strspn(c.user_id, "abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n, "user_id \"%s\" accepted", c.user_id);
                }
                CHECK(!c.email || strlen(c.email) < 256, "email of %zu bytes accepted", strlen(c.email));
        } else {
                CHECK(r == -EINVAL || r == -EBADMSG, "api_jwt_claims returned %d", r);
                CHECK(!c.exp && !c.iat && !c.user_id && !c.email, "refused claims not cleared");
        }
        apijson_jwt_claims_clear(&c);
}

static char *b64url(const uint8_t *d, size_t n) {
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *out = xmalloc(n / 3 * 4 + 5), *o = out;
        size_t i = 0;
        for (; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t) d[i] << 16 | (uint32_t) d[i + 1] << 8 | d[i + 2];
                *o++ = t[v >> 18], *o++ = t[(v >> 12) & 63], *o++ = t[(v >> 6) & 63], *o++ = t[v & 63];
        }
        if (n - i == 1) {
                uint32_t v = (uint32_t) d[i] << 16;
                *o++ = t[v >> 18], *o++ = t[(v >> 12) & 63];
        } else if (n - i == 2) {
                uint32_t v = (uint32_t) d[i] << 16 | (uint32_t) d[i + 1] << 8;
                *o++ = t[v >> 18], *o++ = t[(v >> 12) & 63], *o++ = t[(v >> 6) & 63];
        }
        *o = '\0';
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* As a token: a C string, so up to the first NUL. */
        char *token = xmalloc(size + 1);
        memcpy(token, data, size);
        token[size] = '\0';
        check(token);
        free(token);

        /* As the claims of a token. */
        char *payload = b64url(data, size);
        token = xasprintf(HEADER ".%s.c2lnbmF0dXJl", payload);
        check(token);
        free(token);
        free(payload);
        return 0;
}
