/* The tunnel engine, reaching the relay: asynchronous name resolution (getaddrinfo_a, so
 * the loop never blocks on DNS) and a non-blocking TCP connect over every address in turn,
 * IPv4 and IPv6. */
#include <arpa/inet.h>
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
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "log.h"
#include "tunnel-internal.h"

/* ---- asynchronous name resolution --------------------------------------------------- */

/* getaddrinfo_a() notifies from a helper thread. The request is refcounted (the tunnel
 * and the pending notification each hold a reference) so that a tunnel freed while the
 * lookup is still running leaves the late notification harmless: it writes to an eventfd
 * the request itself owns and drops the last reference. */
struct resolve {
        int n_ref;
        int efd;
        bool local;               /* resolving local_host (else the relay) */
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

void resolve_cancel(struct tunnel *t) {
        if (!t->resolve)
                return;
        t->resolve_io = sd_event_source_disable_unref(t->resolve_io);
        /* Cancelled requests are never notified: drop the notification's reference too. */
        if (gai_cancel(&t->resolve->cb) == EAI_CANCELED)
                resolve_unref(t->resolve);
        resolve_unref(t->resolve);
        t->resolve = NULL;
}

static int parse_literal(const char *host, uint16_t port, struct addr *a) {
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
        *ret = xcalloc(c, sizeof(struct addr));
        *n = 0;
        for (const struct addrinfo *i = ai; i; i = i->ai_next) {
                if (i->ai_addrlen > sizeof(struct sockaddr_storage))
                        continue;
                memcpy(&(*ret)[*n].sa, i->ai_addr, i->ai_addrlen);
                (*ret)[(*n)++].len = i->ai_addrlen;
        }
}

void connect_next(struct tunnel *t);

static int on_resolved(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct tunnel *t = userdata;
        struct resolve *r = t->resolve;
        uint64_t v;
        (void) s, (void) revents;
        (void) !read(fd, &v, sizeof(v));

        tunnel_enter(t);
        int e = gai_error(&r->cb);
        if (e == EAI_INPROGRESS)
                goto out;
        if (!r->local) {
                if (e != 0) {
                        tunnel_fail(t, -EHOSTUNREACH, false, "cannot resolve relay %s: %s", t->p.server,
                                    gai_strerror(e));
                        goto out;
                }
                addrs_from_ai(r->cb.ar_result, &t->srv_addrs, &t->n_srv_addrs);
        } else {
                if (e != 0)
                        t->loc_resolve_error = e;
                else
                        addrs_from_ai(r->cb.ar_result, &t->loc_addrs, &t->n_loc_addrs);
        }
        t->resolve_io = sd_event_source_disable_unref(t->resolve_io);
        resolve_unref(t->resolve);
        t->resolve = NULL;
        resolve_next(t);
out:
        tunnel_leave(t);
        return 0;
}

int resolve_start(struct tunnel *t, const char *host, uint16_t port, bool local) {
        struct resolve *r = xcalloc(1, sizeof(*r));
        int k;
        r->n_ref = 2;
        r->local = local;
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
                r->n_ref = 1;
                resolve_unref(r);
                return k;
        }
        k = sd_event_add_io(t->event, &t->resolve_io, r->efd, EPOLLIN, on_resolved, t);
        if (k < 0) {
                r->n_ref = 1;
                resolve_unref(r);
                return k;
        }
        struct sigevent sev = {
                .sigev_notify = SIGEV_THREAD,
                .sigev_value.sival_ptr = r,
                .sigev_notify_function = resolve_notify,
        };
        t->resolve = r;
        k = getaddrinfo_a(GAI_NOWAIT, r->list, 1, &sev);
        if (k != 0) {
                t->resolve_io = sd_event_source_disable_unref(t->resolve_io);
                t->resolve = NULL;
                r->n_ref = 1;     /* nothing was queued, so nothing will notify */
                resolve_unref(r);
                return k == EAI_MEMORY ? -ENOMEM : -EAGAIN;
        }
        return 0;
}

/* Relay first, then the local service (each skipped for an address literal), then connect. */
void resolve_next(struct tunnel *t) {
        struct addr a;
        int r;
        if (!t->srv_addrs) {
                if (parse_literal(t->p.server, t->p.server_port, &a) == 0) {
                        t->srv_addrs = xmalloc(sizeof(a));
                        t->srv_addrs[0] = a;
                        t->n_srv_addrs = 1;
                } else {
                        r = resolve_start(t, t->p.server, t->p.server_port, false);
                        if (r < 0)
                                tunnel_fail(t, r, false, "cannot resolve relay %s: %s", t->p.server, strerror(-r));
                        return;
                }
        }
        if (!t->loc_addrs && !t->loc_resolve_error) {
                if (parse_literal(t->p.local_host, t->p.local_port, &a) == 0) {
                        t->loc_addrs = xmalloc(sizeof(a));
                        t->loc_addrs[0] = a;
                        t->n_loc_addrs = 1;
                } else {
                        r = resolve_start(t, t->p.local_host, t->p.local_port, true);
                        if (r < 0)
                                t->loc_resolve_error = EAI_SYSTEM;
                        else
                                return;
                }
        }
        t->state = TUNNEL_CONNECTING;
        connect_next(t);
}

/* ---- TCP connect ---------------------------------------------------------------------- */

void set_sockopts(struct tunnel *t, int fd) {
        int one = 1;
        unsigned timeout = t->p.keepalive_interval * t->p.keepalive_count * 1000;
        int lowat = SEND_LOWAT;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (timeout > 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}


void connect_next(struct tunnel *t) {
        int last = ECONNREFUSED;

        t->io = sd_event_source_disable_unref(t->io);
        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;

        while (t->srv_idx < t->n_srv_addrs) {
                struct addr *a = &t->srv_addrs[t->srv_idx++];
                int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        last = errno;
                        continue;
                }
                set_sockopts(t, fd);
                if (connect(fd, (struct sockaddr *) &a->sa, a->len) < 0 && errno != EINPROGRESS) {
                        last = errno;
                        close(fd);
                        continue;
                }
                int r = sd_event_add_io(t->event, &t->io, fd, EPOLLOUT, on_session_io, t);
                if (r < 0) {
                        close(fd);
                        tunnel_fail(t, r, false, "cannot watch the relay socket: %s", strerror(-r));
                        return;
                }
                t->fd = fd;
                uint64_t deadline = now_mono(t) + CONNECT_TIMEOUT_USEC;
                arm_timer(t, deadline < t->setup_deadline ? deadline : t->setup_deadline);
                return;
        }
        tunnel_fail(t, -last, false, "cannot connect to relay %s:%u: %s", t->p.server, t->p.server_port,
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

static void set_method_prefs(LIBSSH2_SESSION *session) {
        static const char *const hostkeys[] = { "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                                "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256" };
        /* libssh2 1.10 has no AEAD ciphers, so every packet pays for a separate MAC: the
         * benchmark measured hmac-sha2-512 40% faster than hmac-sha2-256 on 64-bit CPUs
         * without SHA instructions (a Raspberry Pi 4 is one). */
        static const char *const macs[] = { "hmac-sha2-512", "hmac-sha2-256", "hmac-sha1" };
        set_pref(session, LIBSSH2_METHOD_HOSTKEY, hostkeys, ELEMENTSOF(hostkeys));
        set_pref(session, LIBSSH2_METHOD_MAC_CS, macs, ELEMENTSOF(macs));
        set_pref(session, LIBSSH2_METHOD_MAC_SC, macs, ELEMENTSOF(macs));
}

void connect_done(struct tunnel *t) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err == EINPROGRESS || err == EALREADY)
                return;
        if (err != 0) {
                log_binding(LOG_DEBUG, t->p.name, "connect", "connecting to relay %s:%u: %s; trying the next address",
                            t->p.server, t->p.server_port, strerror(err));
                connect_next(t);
                return;
        }

        t->session = libssh2_session_init_ex(NULL, NULL, NULL, t);
        if (!t->session) {
                tunnel_fail(t, -ENOMEM, false, "cannot create an SSH session");
                return;
        }
        libssh2_session_callback_set(t->session, LIBSSH2_CALLBACK_RECV, (void *) recv_cb);
        libssh2_session_callback_set(t->session, LIBSSH2_CALLBACK_SEND, (void *) send_cb);
        libssh2_session_set_blocking(t->session, 0);
        set_method_prefs(t->session);
        t->last_rx = now_mono(t);
        t->state = TUNNEL_HANDSHAKE;
        arm_timer(t, t->setup_deadline);
        pump(t);
}

