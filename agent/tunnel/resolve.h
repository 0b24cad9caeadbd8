/* Name resolution that never blocks the loop (getaddrinfo_a, notified through an eventfd),
 * and a non-blocking TCP connect over a list of addresses. Knows nothing of SSH: both the
 * relay side (reach.c) and the local-service side (bridge.c) use it. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <systemd/sd-event.h>

struct resolve_addr {
        struct sockaddr_storage sa;
        socklen_t len;
};

struct resolve;

/* Called once with the outcome (gai_error 0 and the addresses, owned by the callee, or an
 * EAI_* code); the owner frees the request with resolve_free(), from inside the callback too. */
typedef void (*resolve_done_t)(void *userdata, int gai_error, struct resolve_addr *addrs, size_t n_addrs);

/* Resolves host:port without blocking. Returns 0 and *ret, or negative errno (no callback). */
int resolve_start(sd_event *event, const char *host, uint16_t port, resolve_done_t done, void *userdata,
                  struct resolve **ret);
/* Cancels a lookup still running; NULL is fine. */
void resolve_free(struct resolve *r);
/* Fills *a for an IPv4/IPv6 address literal. Returns 0, or -EINVAL for anything else. */
int resolve_parse_literal(const char *host, uint16_t port, struct resolve_addr *a);

/* Starts a non-blocking TCP connect to addrs[*idx], else the next one, advancing *idx past
 * each address tried. setup(fd, userdata) sets socket options first (NULL: none). Returns
 * the socket (connect in progress: wait for EPOLLOUT, then resolve_connect_result()), or the
 * negative errno of the last failure when no address is left (`last` if none was tried). */
int resolve_connect_next(const struct resolve_addr *addrs, size_t n, size_t *idx, int last,
                         void (*setup)(int fd, void *userdata), void *userdata);
/* The outcome of a connect in progress on fd: 0 connected, -EINPROGRESS still going, or
 * negative errno. */
int resolve_connect_result(int fd);
/* Right after resolve_connect_next() returned fd for address a: 1 when the connect is already
 * done (on loopback it is, by the time connect() returns), 0 when not known (in progress, or
 * not loopback: not asked, a system call for nothing), or the negative errno of a refusal. */
int resolve_connect_now(const struct resolve_addr *a, int fd);
