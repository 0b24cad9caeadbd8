/* The tunnel engine, reaching the relay: asynchronous name resolution (getaddrinfo_a, so
 * the loop never blocks on DNS) and a non-blocking TCP connect over every address in turn,
 * IPv4 and IPv6. */
#include <arpa/inet.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "log.h"
#include "tunnel-internal.h"

/* ---- asynchronous name resolution --------------------------------------------------- */

/* getaddrinfo_a() notifies from a helper thread. The request is refcounted (the owner and
 * the pending notification each hold a reference) so that a request freed while the lookup
 * is still running leaves the late notification harmless: it writes to an eventfd the
 * request itself owns and drops the last reference. */
struct resolve {
        int n_ref;
        int efd;
        sd_event_source *io;
        resolve_done_t done;
        void *userdata;
        struct gaicb cb;
        struct gaicb *list[1];
        struct addrinfo hints;
        char *host;
        char port[8];
};

static void resolve_unref(struct resolve *r) {
        if (!r || __atomic_sub_fetch(&r->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        if (r->cb.ar_result)
                freeaddrinfo(r->cb.ar_result);
        if (r->efd >= 0)
                close(r->efd);
        free(r->host);
        free(r);
}

static void resolve_notify(union sigval v) {
        struct resolve *r = v.sival_ptr;
        uint64_t one = 1;
        (void) !write(r->efd, &one, sizeof(one));
        resolve_unref(r);
}

void resolve_free(struct resolve *r) {
        if (!r)
                return;
        r->io = sd_event_source_disable_unref(r->io);
        /* Cancelled requests are never notified: drop the notification's reference too. */
        if (gai_cancel(&r->cb) == EAI_CANCELED)
                resolve_unref(r);
        resolve_unref(r);
}

int parse_literal(const char *host, uint16_t port, struct addr *a) {
        struct sockaddr_in *in4 = (struct sockaddr_in *) &a->sa;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &a->sa;
        memset(a, 0, sizeof(*a));
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                a->len = sizeof(*in4);
                return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                a->len = sizeof(*in6);
                return 0;
        }
        return -EINVAL;
}

static void addrs_from_ai(const struct addrinfo *ai, struct addr **ret, size_t *n) {
        size_t c = 0;
        for (const struct addrinfo *i = ai; i; i = i->ai_next)
                c++;
        *ret = xcalloc(c ? c : 1, sizeof(struct addr));
        *n = 0;
        for (const struct addrinfo *i = ai; i; i = i->ai_next) {
                if (i->ai_addrlen > sizeof(struct sockaddr_storage))
                        continue;
                memcpy(&(*ret)[*n].sa, i->ai_addr, i->ai_addrlen);
                (*ret)[(*n)++].len = i->ai_addrlen;
        }
}

static int on_resolved(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct resolve *r = userdata;
        struct addr *addrs = NULL;
        size_t n = 0;
        uint64_t v;
        (void) src, (void) revents;
        (void) !read(fd, &v, sizeof(v));

        int e = gai_error(&r->cb);
        if (e == EAI_INPROGRESS)
                return 0;
        sd_event_source_set_enabled(r->io, SD_EVENT_OFF);
        if (e == 0)
                addrs_from_ai(r->cb.ar_result, &addrs, &n);
        r->done(r->userdata, e, addrs, n);      /* takes addrs; may free r */
        return 0;
}

int resolve_start(sd_event *event, const char *host, uint16_t port, resolve_done_t done, void *userdata,
                  struct resolve **ret) {
        struct resolve *r = xcalloc(1, sizeof(*r));
        int k;
        r->n_ref = 2;
        r->done = done;
        r->userdata = userdata;
        r->host = xstrdup(host);
        snprintf(r->port, sizeof(r->port), "%u", port);
        r->hints.ai_socktype = SOCK_STREAM;
        r->hints.ai_protocol = IPPROTO_TCP;
        r->cb.ar_name = r->host;
        r->cb.ar_service = r->port;
        r->cb.ar_request = &r->hints;
        r->list[0] = &r->cb;
        r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->efd < 0) {
                k = -errno;
                goto fail;
        }
        k = sd_event_add_io(event, &r->io, r->efd, EPOLLIN, on_resolved, r);
        if (k < 0)
                goto fail;
        struct sigevent sev = {
                .sigev_notify = SIGEV_THREAD,
                .sigev_value.sival_ptr = r,
                .sigev_notify_function = resolve_notify,
        };
        k = getaddrinfo_a(GAI_NOWAIT, r->list, 1, &sev);
        if (k != 0) {
                k = k == EAI_MEMORY ? -ENOMEM : -EAGAIN;
                goto fail;
        }
        *ret = r;
        return 0;
fail:
        r->io = sd_event_source_disable_unref(r->io);
        r->n_ref = 1;     /* nothing was queued, so nothing will notify */
        resolve_unref(r);
        return k;
}

/* ---- TCP connect ---------------------------------------------------------------------- */

static void set_sockopts(struct session *s, int fd) {
        int one = 1;
        unsigned timeout = s->p.keepalive_interval * s->p.keepalive_count * 1000;
        int lowat = SEND_LOWAT;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (timeout > 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}


void connect_next(struct session *s) {
        int last = ECONNREFUSED;

        s->io = sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;

        while (s->srv_idx < s->n_srv_addrs) {
                struct addr *a = &s->srv_addrs[s->srv_idx++];
                int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        last = errno;
                        continue;
                }
                set_sockopts(s, fd);
                if (connect(fd, (struct sockaddr *) &a->sa, a->len) < 0 && errno != EINPROGRESS) {
                        last = errno;
                        close(fd);
                        continue;
                }
                int r = sd_event_add_io(s->event, &s->io, fd, EPOLLOUT, on_session_io, s);
                if (r < 0) {
                        close(fd);
                        session_fail(s, r, false, "cannot watch the relay socket: %s", strerror(-r));
                        return;
                }
                s->fd = fd;
                uint64_t deadline = now_mono(s) + CONNECT_TIMEOUT_USEC;
                arm_timer(s, deadline < s->setup_deadline ? deadline : s->setup_deadline);
                return;
        }
        session_fail(s, -last, false, "cannot connect to relay %s:%u: %s", s->p.server, s->p.server_port,
                    strerror(last));
}

/* RSA host keys with SHA-1 signatures fail against OpenSSH >= 8.8 in 1.10: prefer ed25519.
 * Only methods this libssh2 knows go into the list: 1.10's method_pref() removes unknown
 * ones with an overlapping memcpy (undefined behaviour, ASan aborts on it). */
/* Sets the preference for `method` to the names of `want` that this libssh2 supports, in
 * that order (1.10's method_pref misbehaves on names it does not know). */
static void set_pref(LIBSSH2_SESSION *session, int method, const char *const *want, size_t n_want) {
        const char **algs = NULL;
        char pref[256] = "";
        int n = libssh2_session_supported_algs(session, method, &algs);
        for (size_t i = 0; i < n_want; i++)
                for (int j = 0; j < n; j++)
                        if (streq(want[i], algs[j]) && strlen(pref) + strlen(want[i]) + 2 < sizeof(pref)) {
                                if (*pref)
                                        strcat(pref, ",");
                                strcat(pref, want[i]);
                        }
        if (n > 0)
                libssh2_free(session, algs);
        if (*pref)
                (void) libssh2_session_method_pref(session, method, pref);
}

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

/* The method preferences, fastest on this CPU first; set_pref() drops what this libssh2
 * lacks (1.10: no AEAD cipher, no ETM MAC). An AEAD cipher (aes-gcm, chacha20-poly1305,
 * from 1.11) authenticates the packet itself, so no separate MAC costs CPU. With AES and
 * carry-less multiply instructions, OpenSSL's aes128-gcm is the fastest; without them
 * (a Raspberry Pi 4) libssh2's chacha20-poly1305 is, and AES in software is slow. Where
 * the relay allows no AEAD cipher, aes-ctr pays for a MAC: on 64-bit CPUs without SHA
 * instructions hmac-sha2-512 is 40% faster than hmac-sha2-256; with them (x86 SHA
 * extensions, a Pi 5's ARMv8 crypto) hmac-sha2-256 is 1.7x faster than -512. The ETM
 * variants (encrypt-then-MAC) come first, at the same cost: hardened relays allow only
 * them, and libssh2 1.11.1 negotiates a MAC even for chacha20-poly1305. */
static void set_method_prefs(LIBSSH2_SESSION *session) {
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
        bool aes = cpu_has_aes_gcm(), sha = cpu_has_sha256();
        set_pref(session, LIBSSH2_METHOD_HOSTKEY, hostkeys, ELEMENTSOF(hostkeys));
        set_pref(session, LIBSSH2_METHOD_CRYPT_CS, ciphers[aes], ELEMENTSOF(ciphers[aes]));
        set_pref(session, LIBSSH2_METHOD_CRYPT_SC, ciphers[aes], ELEMENTSOF(ciphers[aes]));
        set_pref(session, LIBSSH2_METHOD_MAC_CS, macs[sha], ELEMENTSOF(macs[sha]));
        set_pref(session, LIBSSH2_METHOD_MAC_SC, macs[sha], ELEMENTSOF(macs[sha]));
}

void session_algorithms(struct session *s, const char **cipher, const char **mac) {
        *cipher = *mac = NULL;
        if (!s || !s->session || s->state != SESSION_UP)
                return;
        *cipher = libssh2_session_methods(s->session, LIBSSH2_METHOD_CRYPT_CS);
        /* libssh2 still names a MAC for these: "INTEGRATED-AES-GCM" (1.11), or for
         * chacha20-poly1305 the negotiated one it never uses. */
        bool aead = *cipher && (strstr(*cipher, "-gcm@") || strncmp(*cipher, "chacha20-poly1305", 17) == 0);
        if (*cipher && !aead)
                *mac = libssh2_session_methods(s->session, LIBSSH2_METHOD_MAC_CS);
}

void connect_done(struct session *s) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err == EINPROGRESS || err == EALREADY)
                return;
        if (err != 0) {
                log_binding(LOG_DEBUG, NULL, "connect", "connecting to relay %s:%u: %s; trying the next address",
                            s->p.server, s->p.server_port, strerror(err));
                connect_next(s);
                return;
        }

        s->session = libssh2_session_init_ex(NULL, NULL, NULL, s);
        if (!s->session) {
                session_fail(s, -ENOMEM, false, "cannot create an SSH session");
                return;
        }
#ifdef HAVE_LIBSSH2_SESSION_CALLBACK_SET2   /* 1.11.1 deprecates the untyped one */
        libssh2_session_callback_set2(s->session, LIBSSH2_CALLBACK_RECV, (libssh2_cb_generic *) recv_cb);
        libssh2_session_callback_set2(s->session, LIBSSH2_CALLBACK_SEND, (libssh2_cb_generic *) send_cb);
#else
        libssh2_session_callback_set(s->session, LIBSSH2_CALLBACK_RECV, (void *) recv_cb);
        libssh2_session_callback_set(s->session, LIBSSH2_CALLBACK_SEND, (void *) send_cb);
#endif
        libssh2_session_set_blocking(s->session, 0);
        set_method_prefs(s->session);
        s->last_rx = now_mono(s);
        s->state = SESSION_HANDSHAKE;
        arm_timer(s, s->setup_deadline);
        pump(s);
}

