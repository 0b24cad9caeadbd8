#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "netwatch.h"
#include "util.h"

/* Changes come in bursts (address, then routes); one callback per burst is enough. */
#define NETWATCH_SETTLE_USEC (500 * 1000)

struct netwatch {
        int fd;
        sd_event_source *io;
        sd_event_source *settle;
        netwatch_cb_t cb;
        void *userdata;
};

static int on_settled(sd_event_source *s, uint64_t usec, void *userdata) {
        struct netwatch *w = userdata;
        w->settle = sd_event_source_unref(w->settle);
        w->cb(w->userdata);
        return 0;
}

static bool is_interesting(const struct nlmsghdr *h) {
        if (h->nlmsg_type == RTM_NEWADDR)
                return true;
        if (h->nlmsg_type == RTM_NEWROUTE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
                const struct rtmsg *rt = NLMSG_DATA(h);
                return rt->rtm_dst_len == 0 && rt->rtm_table == RT_TABLE_MAIN;
        }
        return false;
}

static int on_netlink(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct netwatch *w = userdata;
        char buf[8192] __attribute__((aligned(__alignof__(struct nlmsghdr))));
        bool changed = false;
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0) {
                        /* ENOBUFS: we missed messages; assume something changed. */
                        if (errno == ENOBUFS)
                                changed = true;
                        break;
                }
                for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n); h = NLMSG_NEXT(h, n))
                        changed |= is_interesting(h);
        }
        if (changed && !w->settle) {
                int r = sd_event_add_time_relative(sd_event_source_get_event(s), &w->settle, CLOCK_MONOTONIC,
                                                   NETWATCH_SETTLE_USEC, 0, on_settled, w);
                if (r < 0)      /* this change goes unnoticed; backoff timers still retry */
                        log_warning("cannot time the network change: %s", strerror(-r));
        }
        return 0;
}

int netwatch_new(sd_event *event, netwatch_cb_t cb, void *userdata, struct netwatch **ret) {
        struct sockaddr_nl sa = {
                .nl_family = AF_NETLINK,
                .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
        };
        struct netwatch *w = xcalloc(1, sizeof(*w));
        int r;
        w->cb = cb;
        w->userdata = userdata;
        w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (w->fd < 0) {
                r = -errno;
                goto out;
        }
        if (bind(w->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                goto out;
        }
        r = sd_event_add_io(event, &w->io, w->fd, EPOLLIN, on_netlink, w);
        if (r < 0)
                goto out;
        *ret = w;
        return 0;
out:
        netwatch_free(w);
        return r;
}

void netwatch_free(struct netwatch *w) {
        if (!w)
                return;
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->settle);
        if (w->fd >= 0)
                close(w->fd);
        free(w);
}
