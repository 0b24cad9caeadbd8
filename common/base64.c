/* Base64, both alphabets; see base64.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base64.h"
#include "util.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t len, bool pad) {
        const unsigned char *p = data;
        char *r = xmalloc(len / 3 * 4 + 5), *o = r;
        size_t i;
        for (i = 0; i + 2 < len; i += 3) {
                *o++ = b64[p[i] >> 2];
                *o++ = b64[(p[i] & 3) << 4 | p[i + 1] >> 4];
                *o++ = b64[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
                *o++ = b64[p[i + 2] & 63];
        }
        if (i < len) {
                *o++ = b64[p[i] >> 2];
                if (i + 1 < len) {
                        *o++ = b64[(p[i] & 3) << 4 | p[i + 1] >> 4];
                        *o++ = b64[(p[i + 1] & 15) << 2];
                } else
                        *o++ = b64[(p[i] & 3) << 4];
                if (pad)
                        while ((o - r) % 4)
                                *o++ = '=';
        }
        *o = 0;
        return r;
}

static int value(char c, bool url) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || (url && c == '-'))
                return 62;
        if (c == '/' || (url && c == '_'))
                return 63;
        return -1;
}

ssize_t base64_decode(const char *s, size_t n, bool url, unsigned char **ret) {
        unsigned char *r = xmalloc(n / 4 * 3 + 4);
        size_t o = 0, i;
        uint32_t acc = 0;
        int bits = 0;
        for (i = 0; i < n; i++) {
                if (s[i] == '=') {          /* padding: only more of it may follow */
                        while (i < n && s[i] == '=')
                                i++;
                        if (i < n)
                                bits = 6;
                        break;
                }
                int v = value(s[i], url);
                if (v < 0) {
                        free(r);
                        return -EINVAL;
                }
                acc = acc << 6 | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        r[o++] = (unsigned char) (acc >> bits);
                }
        }
        if (bits >= 6) {            /* one character alone encodes no byte */
                free(r);
                return -EINVAL;
        }
        r[o] = 0;
        *ret = r;
        return (ssize_t) o;
}
