/* Relay host key verification: known_hosts (strict / accept-new) and pinned fingerprints.
 * Besides sshcall.c the one file of the engine that includes libssh2. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>

#include "base64.h"
#include "hostkey.h"
#include "log.h"
#include "util.h"

/* --- SHA-256 (FIPS 180-4): only needed to fingerprint the key recorded in known_hosts,
 * libssh2 only hashes the key the relay offers. --------------------------------------- */

static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p) {
        uint32_t w[64], a, b, c, d, e, f, g, hh;
        for (int i = 0; i < 16; i++)
                w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
                       (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
                uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
                uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
                uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
                uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
                hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void sha256(const void *data, size_t len, unsigned char out[32]) {
        uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
        const unsigned char *p = data;
        unsigned char tail[128] = { 0 };
        size_t full = len / 64 * 64, rest = len - full;

        for (size_t i = 0; i < full; i += 64)
                sha256_block(h, p + i);
        memcpy(tail, p + full, rest);
        tail[rest] = 0x80;
        size_t tl = rest + 9 <= 64 ? 64 : 128;
        uint64_t bits = (uint64_t) len * 8;
        for (int i = 0; i < 8; i++)
                tail[tl - 1 - i] = (unsigned char) (bits >> (8 * i));
        for (size_t i = 0; i < tl; i += 64)
                sha256_block(h, tail + i);
        for (int i = 0; i < 8; i++)
                for (int j = 0; j < 4; j++)
                        out[4 * i + j] = (unsigned char) (h[i] >> (24 - 8 * j));
}

char *hostkey_fingerprint(const void *blob, size_t len) {
        unsigned char d[32];
        sha256(blob, len, d);
        _cleanup_(freep) char *e = base64_encode(d, sizeof(d), false);
        return xasprintf("SHA256:%s", e);
}

/* --- verification ------------------------------------------------------------------- */

static const char *key_type_name(int type) {
        switch (type) {
        case LIBSSH2_HOSTKEY_TYPE_RSA:       return "ssh-rsa";
        case LIBSSH2_HOSTKEY_TYPE_DSS:       return "ssh-dss";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
        case LIBSSH2_HOSTKEY_TYPE_ED25519:   return "ssh-ed25519";
        default:                             return NULL;
        }
}

static int key_type_mask(int type) {
        switch (type) {
        case LIBSSH2_HOSTKEY_TYPE_RSA:       return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
        case LIBSSH2_HOSTKEY_TYPE_DSS:       return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
        case LIBSSH2_HOSTKEY_TYPE_ED25519:   return LIBSSH2_KNOWNHOST_KEY_ED25519;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
        default:                             return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
        }
}

/* OpenSSH writes "host" for port 22 and "[host]:port" otherwise. */
static char *known_hosts_name(const char *host, uint16_t port) {
        return port == 22 ? xstrdup(host) : xasprintf("[%s]:%u", host, port);
}

#define KNOWN_HOSTS_MAX (16 * 1024 * 1024)

/* Reads known_hosts without blocking (a FIFO never stalls the loop), a regular file of at most
 * KNOWN_HOSTS_MAX. A missing file is empty. Returns 0, or -errno with *problem set. */
static int known_hosts_read(const char *path, char **ret, size_t *ret_len, char **problem) {
        int r = read_file_checked(path, KNOWN_HOSTS_MAX, false, ret, ret_len, NULL, problem);
        if (r == -ENOENT) {
                free(*problem);
                *problem = NULL;
                *ret = xstrdup("");
                *ret_len = 0;
                return 0;
        }
        return r;
}

/* Appends one line to known_hosts, rewriting the whole file atomically (0600). */
static int known_hosts_append(const char *path, const char *line) {
        _cleanup_(freep) char *old = NULL, *problem = NULL;
        size_t len = 0;
        int r = known_hosts_read(path, &old, &len, &problem);
        if (r < 0)
                return r;

        bool need_nl = len > 0 && old[len - 1] != '\n';
        size_t ll = strlen(line);
        _cleanup_(freep) char *buf = xmalloc(len + ll + 2);
        if (len)
                memcpy(buf, old, len);
        if (need_nl)
                buf[len++] = '\n';
        memcpy(buf + len, line, ll);
        len += ll;
        return write_file_atomic(path, buf, len, 0600);
}

int hostkey_verify(struct _LIBSSH2_SESSION *session, const struct tunnel_params *p, char **ret_message) {
        size_t keylen = 0;
        int type = 0;
        const char *key = libssh2_session_hostkey(session, &keylen, &type);
        _cleanup_(freep) char *hname = known_hosts_name(p->server, p->server_port);
        _cleanup_(freep) char *offered = NULL, *expected = NULL;
        LIBSSH2_KNOWNHOSTS *kh = NULL;
        int r;

        if (!key || keylen == 0) {
                *ret_message = xasprintf("relay %s sent no usable host key", hname);
                return -EPROTO;
        }
        offered = hostkey_fingerprint(key, keylen);

        if (p->host_key_check == HOST_KEY_CHECK_PINNED) {
                /* Accept the pin with or without base64 padding. */
                _cleanup_(freep) char *want = xstrdup(p->host_key_fingerprint ? p->host_key_fingerprint : "");
                size_t wl = strlen(want);
                while (wl > 0 && want[wl - 1] == '=')
                        want[--wl] = 0;
                if (streq(want, offered))
                        return 0;
                *ret_message = xasprintf("host key for %s does not match the pinned fingerprint: expected %s, "
                                         "relay offered %s; update host_key_check if the change is expected",
                                         hname, want, offered);
                return -EPERM;
        }

        kh = libssh2_knownhost_init(session);
        if (!kh) {
                *ret_message = xstrdup("cannot allocate the known hosts list");
                return -ENOMEM;
        }
        /* Read here, checked, then parsed line by line: libssh2's readfile would fopen() a FIFO
         * and block the loop. */
        _cleanup_(freep) char *text = NULL, *problem = NULL;
        size_t text_len = 0;
        if ((r = known_hosts_read(p->known_hosts, &text, &text_len, &problem)) < 0) {
                *ret_message = xasprintf("%s: %s", p->known_hosts, problem ? problem : strerror(-r));
                goto out;
        }
        for (size_t at = 0, lineno = 1; at < text_len; lineno++) {
                const char *nl = memchr(text + at, '\n', text_len - at);
                size_t n = nl ? (size_t) (nl - (text + at)) + 1 : text_len - at;
                if (libssh2_knownhost_readline(kh, text + at, n, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
                        *ret_message = xasprintf("%s:%zu: not a known_hosts line libssh2 can read", p->known_hosts,
                                                 lineno);
                        r = -EIO;
                        goto out;
                }
                at += n;
        }

        struct libssh2_knownhost *found = NULL;
        r = libssh2_knownhost_checkp(kh, p->server, p->server_port, key, keylen,
                                     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                     key_type_mask(type), &found);
        switch (r) {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH:
                r = 0;
                goto out;
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: {
                unsigned char *blob = NULL;
                ssize_t bl = found && found->key ? base64_decode(found->key, strlen(found->key), false, &blob) : -EINVAL;
                expected = bl > 0 ? hostkey_fingerprint(blob, (size_t) bl) : xstrdup("(unreadable entry)");
                free(blob);
                *ret_message = xasprintf("host key for %s changed: expected %s, relay offered %s; remove the old "
                                         "line from %s if the change is expected",
                                         hname, expected, offered, p->known_hosts);
                r = -EPERM;
                goto out;
        }
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
                break;
        default:
                *ret_message = xasprintf("cannot check the host key of %s against %s", hname, p->known_hosts);
                r = -EIO;
                goto out;
        }

        if (p->host_key_check == HOST_KEY_CHECK_STRICT) {
                *ret_message = xasprintf("host key for %s is not in %s (host_key_check = strict); the relay offered "
                                         "%s", hname, p->known_hosts, offered);
                r = -EPERM;
                goto out;
        }

        /* accept-new: trust on first use, remember it for next time. */
        const char *tname = key_type_name(type);
        if (!tname) {
                *ret_message = xasprintf("relay %s offered a host key of unknown type", hname);
                r = -EPROTO;
                goto out;
        }
        {
                _cleanup_(freep) char *b = base64_encode(key, keylen, true);
                _cleanup_(freep) char *line = xasprintf("%s %s %s\n", hname, tname, b);
                int w = known_hosts_append(p->known_hosts, line);
                if (w < 0)
                        log_binding(LOG_WARNING, p->name, "host-key",
                                    "accepted new host key %s for %s but cannot record it in %s: %s",
                                    offered, hname, p->known_hosts, strerror(-w));
                else
                        log_binding(LOG_NOTICE, p->name, "host-key", "recorded new host key %s for %s in %s",
                                    offered, hname, p->known_hosts);
        }
        r = 0;
out:
        libssh2_knownhost_free(kh);
        return r;
}
