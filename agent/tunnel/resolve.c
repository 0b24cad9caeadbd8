/* Asynchronous name resolution and the non-blocking connect over an address list; see
 * resolve.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "resolve.h"
#include "util.h"

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

int resolve_parse_literal(const char *host, uint16_t port, struct resolve_addr *a) {
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

static void addrs_from_ai(const struct addrinfo *ai, struct resolve_addr **ret, size_t *n) {
        size_t c = 0;
        for (const struct addrinfo *i = ai; i; i = i->ai_next)
                c++;
        *ret = xcalloc(c ? c : 1, sizeof(struct resolve_addr));
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
        struct resolve_addr *addrs = NULL;
        size_t n = 0;
        uint64_t v;
        (void) src, (void) revents;
        (void) !read(fd, &v, sizeof(v));

        int e = gai_error(&r->cb);
        if (e == EAI_INPROGRESS)
                return 0;
        r->io = sd_event_source_disable_unref(r->io);    /* one notification is all we need */
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

int resolve_connect_next(const struct resolve_addr *addrs, size_t n, size_t *idx, int last,
                         void (*setup)(int fd, void *userdata), void *userdata) {
        while (*idx < n) {
                const struct resolve_addr *a = &addrs[(*idx)++];
                int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        last = -errno;
                        continue;
                }
                if (setup)
                        setup(fd, userdata);
                if (connect(fd, (const struct sockaddr *) &a->sa, a->len) < 0 && errno != EINPROGRESS) {
                        last = -errno;
                        close(fd);
                        continue;
                }
                return fd;
        }
        return last < 0 ? last : -ECONNREFUSED;
}

int resolve_connect_result(int fd) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err == EALREADY)
                err = EINPROGRESS;
        return -err;
}

static bool is_loopback(const struct resolve_addr *a) {
        if (a->sa.ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) &a->sa)->sin_addr.s_addr) >> 24) == 127;
        if (a->sa.ss_family == AF_INET6)
                return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) &a->sa)->sin6_addr);
        return false;
}

/* The SYN-ACK of a loopback connect is handled while connect() runs and waits in the socket's
 * backlog until connect releases the socket: asked again, connect() says how it went. */
int resolve_connect_now(const struct resolve_addr *a, int fd) {
        if (!is_loopback(a))
                return 0;
        if (connect(fd, (const struct sockaddr *) &a->sa, a->len) == 0 || errno == EISCONN)
                return 1;
        return errno == EALREADY || errno == EINPROGRESS || errno == EINTR ? 0 : -errno;
}
