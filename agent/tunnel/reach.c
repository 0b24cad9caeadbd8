/* Reaching a relay, one attempt; see reach.h. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http.h"
#include "log.h"
#include "reach.h"
#include "resolve.h"
#include "util.h"

#define CONNECT_TIMEOUT_USEC (10 * 1000000ULL)     /* per relay address */

enum reach_state {
        REACH_START,
        REACH_RESOLVING,
        REACH_PROXY,
        REACH_CONNECTING,
        REACH_HANDSHAKE,
        REACH_AUTH,
        _REACH_STATE_MAX,
};

struct reach {
        sd_event *event;
        const struct tunnel_params *p;
        enum reach_state state;
        reach_done_t done;
        void *userdata;
        uint64_t deadline;

        struct resolve *resolve;
        struct resolve_addr *addrs;
        size_t n_addrs, idx;
        int fd;
        sd_event_source *io, *timer, *defer;
        struct sshcall *ssh;

        /* [ssh] proxy: libcurl (agent/api/http.c) connects through it and hands over the socket. */
        struct http *http;
        struct http_req *tunnel;
        bool tunnel_done;
        int tunnel_error;
        char *tunnel_message;
};

static const char *const phase[_REACH_STATE_MAX] = {
        [REACH_START] = "starting to reach",
        [REACH_RESOLVING] = "resolving",
        [REACH_PROXY] = "connecting through the proxy to",
        [REACH_CONNECTING] = "connecting to",
        [REACH_HANDSHAKE] = "in the SSH handshake with",
        [REACH_AUTH] = "authenticating to",
};

static uint64_t now_usec(struct reach *r) {
        uint64_t now;
        if (sd_event_now(r->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

static void drop_sources(struct reach *r) {
        r->io = sd_event_source_disable_unref(r->io);
        r->timer = sd_event_source_disable_unref(r->timer);
        r->defer = sd_event_source_disable_unref(r->defer);
        resolve_free(r->resolve);
        r->resolve = NULL;
        http_cancel(r->tunnel);
        r->tunnel = NULL;
        http_free(r->http);
        r->http = NULL;
}

/* The end of the attempt: the last thing any handler does (the owner may free r). */
static void finish(struct reach *r, int error, bool permanent, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void finish(struct reach *r, int error, bool permanent, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        struct sshcall *ssh = NULL;
        int fd = -1;

        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                msg = xvasprintf(fmt, ap);
                va_end(ap);
        }
        drop_sources(r);
        if (error == 0) {
                ssh = r->ssh;
                fd = r->fd;
                r->ssh = NULL;
                r->fd = -1;
        }
        r->done(r->userdata, error, permanent, msg, ssh, fd);
}

/* A private key is a few KiB; libssh2 reads it with fopen(), which a FIFO would block. */
#define IDENTITY_MAX (64 * 1024)

static int check_identity(struct reach *r) {
        struct stat st;
        const char *f = r->p->identity_file;
        if (!f || !*f) {
                finish(r, -ENOKEY, true, "no identity_file configured");
                return -ENOKEY;
        }
        /* Opened without blocking and checked (regular file, size) before libssh2 reads it. */
        _cleanup_(freep) char *data = NULL, *problem = NULL;
        size_t len = 0;
        int e = read_file_checked(f, IDENTITY_MAX, false, &data, &len, &st, &problem);
        if (data)
                explicit_bzero(data, len);
        if (e == -ENOENT)
                finish(r, e, true, "identity file %s does not exist", f);
        else if (e < 0)
                finish(r, e, true, "identity file %s: %s", f, problem ? problem : strerror(-e));
        if (e < 0)
                return e;
        if (st.st_mode & 077) {
                finish(r, -EPERM, true, "identity file %s is readable by others (mode %04o); chmod 600 %s", f,
                       (unsigned) (st.st_mode & 07777), f);
                return -EPERM;
        }
        return 0;
}

/* ---- TCP ------------------------------------------------------------------------------- */

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);

static void set_sockopts(int fd, void *userdata) {
        struct reach *r = userdata;
        int one = 1;
        unsigned timeout = r->p->keepalive_interval * r->p->keepalive_count * 1000;
        int lowat = SSHCALL_SEND_LOWAT;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (timeout > 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}

static int arm_timer(struct reach *r, uint64_t when) {
        int k = sd_event_source_set_time(r->timer, when);
        if (k >= 0)
                k = sd_event_source_set_enabled(r->timer, SD_EVENT_ONESHOT);
        return k;
}

/* Tries the next relay address. Returns false when the attempt is over (finished). */
static bool connect_next(struct reach *r, int last) {
        r->io = sd_event_source_disable_unref(r->io);
        if (r->fd >= 0)
                close(r->fd);
        r->fd = -1;

        int fd = resolve_connect_next(r->addrs, r->n_addrs, &r->idx, last, set_sockopts, r);
        if (fd < 0) {
                finish(r, fd, false, "cannot connect to relay %s:%u: %s", r->p->server, r->p->server_port,
                       strerror(-fd));
                return false;
        }
        r->fd = fd;
        int k = sd_event_add_io(r->event, &r->io, fd, EPOLLOUT, on_io, r);
        uint64_t deadline = now_usec(r) + CONNECT_TIMEOUT_USEC;
        if (k >= 0)
                k = arm_timer(r, deadline < r->deadline ? deadline : r->deadline);
        if (k < 0) {
                finish(r, k, false, "cannot watch the relay socket: %s", strerror(-k));
                return false;
        }
        return true;
}

static void on_resolved(void *userdata, int gai_error, struct resolve_addr *addrs, size_t n_addrs) {
        struct reach *r = userdata;
        resolve_free(r->resolve);
        r->resolve = NULL;
        if (gai_error != 0) {
                finish(r, -EHOSTUNREACH, false, "cannot resolve relay %s: %s", r->p->server, gai_strerror(gai_error));
                return;
        }
        r->addrs = addrs;
        r->n_addrs = n_addrs;
        r->state = REACH_CONNECTING;
        connect_next(r, -ECONNREFUSED);
}

static int on_defer(sd_event_source *src, void *userdata);

/* Come back on the next turn, behind what is already waiting: a fresh defer source each
 * time, dropped when it runs (one re-enabled would keep its first place in sd-event's queue
 * and run before every I/O source; see session_schedule()). */
static int schedule(struct reach *r) {
        return r->defer ? 0 : sd_event_add_defer(r->event, &r->defer, on_defer, r);
}

/* Through the proxy: libcurl's answer is taken on the next turn (from the loop, not from
 * inside libcurl's callback, as finishing may free the transport). */
static void on_tunnel(void *userdata, int error, const char *message, int fd) {
        struct reach *r = userdata;
        r->tunnel = NULL;
        r->tunnel_done = true;
        r->tunnel_error = error;
        r->tunnel_message = xstrdup(message);
        r->fd = fd;
        if (schedule(r) < 0)
                r->tunnel_error = r->tunnel_error ? r->tunnel_error : -EIO;
}

static void start_proxy(struct reach *r) {
        uint64_t now = now_usec(r);
        int k = http_new(r->event, &r->http);
        if (k >= 0)
                k = http_tunnel_start(r->http, r->p->proxy, r->p->server, r->p->server_port,
                                      r->deadline > now ? r->deadline - now : 1, on_tunnel, r, &r->tunnel);
        r->state = REACH_PROXY;
        if (k < 0)
                finish(r, k, false, "cannot start connecting through the proxy: %s", strerror(-k));
}

/* The proxy answered: on success the socket goes on as if connect() had succeeded. */
static void proxied(struct reach *r) {
        _cleanup_(freep) char *msg = r->tunnel_message;
        r->tunnel_message = NULL;
        r->tunnel_done = false;
        http_free(r->http);
        r->http = NULL;
        if (r->tunnel_error < 0) {
                finish(r, r->tunnel_error, r->tunnel_error == -EACCES, "%s", msg);
                return;
        }
        set_sockopts(r->fd, r);
        r->state = REACH_CONNECTING;
        int k = sd_event_add_io(r->event, &r->io, r->fd, EPOLLOUT, on_io, r);
        if (k < 0)
                finish(r, k, false, "cannot watch the relay socket: %s", strerror(-k));
}

static void start(struct reach *r) {
        struct resolve_addr a;
        if (check_identity(r) < 0)
                return;
        if (r->p->proxy) {
                start_proxy(r);
                return;
        }
        r->state = REACH_RESOLVING;
        if (resolve_parse_literal(r->p->server, r->p->server_port, &a) == 0) {
                r->addrs = xmalloc(sizeof(a));
                r->addrs[0] = a;
                r->n_addrs = 1;
                r->state = REACH_CONNECTING;
                connect_next(r, -ECONNREFUSED);
                return;
        }
        int k = resolve_start(r->event, r->p->server, r->p->server_port, on_resolved, r, &r->resolve);
        if (k < 0)
                finish(r, k, false, "cannot resolve relay %s: %s", r->p->server, strerror(-k));
}

/* ---- SSH ------------------------------------------------------------------------------- */

/* Runs handshake, host key check and authentication as far as the socket allows. Each step
 * is made again with the same arguments until it stops saying "again". Returns false when
 * the attempt is over. */
static bool ssh_step(struct reach *r) {
        int k;
        if (r->state == REACH_HANDSHAKE) {
                k = sshcall_handshake(r->ssh);
                if (sshcall_again(k))
                        return true;
                unsigned lines;
                size_t bytes;
                if (sshcall_preversion(r->ssh, &lines, &bytes)) {
                        finish(r, -EPROTO, false, "relay %s:%u sent %u text lines (%zu bytes) before an SSH "
                               "version line: not an SSH server, or a flood", r->p->server, r->p->server_port,
                               lines, bytes);
                        return false;
                }
                if (sshcall_handshake_flood(r->ssh, &bytes)) {
                        finish(r, -EPROTO, false, "relay %s:%u sent %zu KiB in the SSH handshake without "
                               "completing it: a flood", r->p->server, r->p->server_port, bytes / 1024);
                        return false;
                }
                if (k < 0) {
                        finish(r, k, false, "SSH handshake with %s:%u failed: %s", r->p->server, r->p->server_port,
                               sshcall_socket_broken(r->ssh) ? strerror(-k) : sshcall_message(r->ssh));
                        return false;
                }
                _cleanup_(freep) char *msg = NULL;
                k = sshcall_verify_hostkey(r->ssh, r->p, &msg);
                if (k < 0) {
                        finish(r, k, k == -EPERM, "%s", msg);
                        return false;
                }
                r->state = REACH_AUTH;
        }
        if (r->state == REACH_AUTH) {
                _cleanup_(freep) char *pub = xasprintf("%s.pub", r->p->identity_file);
                k = sshcall_auth(r->ssh, r->p->user, access(pub, R_OK) == 0 ? pub : NULL, r->p->identity_file);
                if (sshcall_again(k))
                        return true;
                if (k == -EACCES) {
                        finish(r, -EACCES, true, "relay %s:%u rejected the key %s for user %s", r->p->server,
                               r->p->server_port, r->p->identity_file, r->p->user);
                        return false;
                }
                if (k == -ENOKEY) {
                        finish(r, -ENOKEY, true, "cannot use identity file %s: %s (an unencrypted ed25519 key in "
                               "OpenSSH format is expected)", r->p->identity_file, sshcall_message(r->ssh));
                        return false;
                }
                if (k < 0) {
                        if (sshcall_closed_by_peer(r->ssh))
                                finish(r, -ECONNRESET, false, "relay %s:%u closed the connection", r->p->server,
                                       r->p->server_port);
                        else if (sshcall_socket_broken(r->ssh))
                                finish(r, k, false, "connection to relay %s:%u lost: %s", r->p->server,
                                       r->p->server_port, strerror(-k));
                        else
                                finish(r, k, false, "SSH session with %s:%u failed: %s", r->p->server,
                                       r->p->server_port, sshcall_message(r->ssh));
                        return false;
                }
                sshcall_keepalive_config(r->ssh, r->p->keepalive_interval);
                finish(r, 0, false, NULL);
                return false;
        }
        return true;
}

/* TCP is up: start the SSH session. Returns false when the attempt is over. */
static bool connected(struct reach *r) {
        int k = resolve_connect_result(r->fd);
        if (k == -EINPROGRESS)
                return true;
        if (k < 0) {
                log_binding(LOG_DEBUG, NULL, "connect", "connecting to relay %s:%u: %s; trying the next address",
                            r->p->server, r->p->server_port, strerror(-k));
                return connect_next(r, k);
        }
        k = sshcall_new(r->event, r->fd, &r->ssh);
        if (k < 0) {
                finish(r, k, false, "cannot create an SSH session");
                return false;
        }
        r->state = REACH_HANDSHAKE;
        k = arm_timer(r, r->deadline);
        if (k < 0) {
                finish(r, k, false, "cannot arm the setup timer: %s", strerror(-k));
                return false;
        }
        sshcall_dispatch_begin(r->ssh);
        return ssh_step(r);
}

/* After every dispatch: poll for what libssh2 waits for, and come back next turn when the
 * input budget ran out (reach never takes more than its share of the loop). */
static void rearm(struct reach *r) {
        int k = sd_event_source_set_io_events(r->io, EPOLLIN | (sshcall_wants_output(r->ssh) ? EPOLLOUT : 0));
        if (k >= 0 && sshcall_dispatch_end(r->ssh))
                k = schedule(r);
        if (k < 0)
                finish(r, k, false, "cannot watch the relay socket: %s", strerror(-k));
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct reach *r = userdata;
        (void) src, (void) fd, (void) revents;
        if (r->state == REACH_CONNECTING) {
                if (connected(r) && r->ssh)
                        rearm(r);
                return 0;
        }
        sshcall_dispatch_begin(r->ssh);
        if (ssh_step(r))
                rearm(r);
        return 0;
}

static int on_defer(sd_event_source *src, void *userdata) {
        struct reach *r = userdata;
        (void) src;
        r->defer = sd_event_source_disable_unref(r->defer);     /* once; freed after this callback */
        if (r->state == REACH_START) {
                start(r);
                return 0;
        }
        if (r->state == REACH_PROXY) {
                if (r->tunnel_done)
                        proxied(r);
                return 0;
        }
        if (r->ssh) {
                sshcall_dispatch_begin(r->ssh);
                if (ssh_step(r))
                        rearm(r);
        }
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct reach *r = userdata;
        (void) src;
        if (r->state == REACH_CONNECTING && usec < r->deadline) {
                log_binding(LOG_DEBUG, NULL, "connect", "connecting to relay %s:%u timed out; trying the next "
                            "address", r->p->server, r->p->server_port);
                connect_next(r, -ETIMEDOUT);
                return 0;
        }
        if (r->p->proxy && r->state <= REACH_CONNECTING) {
                _cleanup_(freep) char *name = conf_proxy_name(r->p->proxy);
                finish(r, -ETIMEDOUT, false, "timed out connecting through proxy %s to relay %s:%u", name,
                       r->p->server, r->p->server_port);
                return 0;
        }
        finish(r, -ETIMEDOUT, false, "timed out %s relay %s:%u", phase[r->state], r->p->server, r->p->server_port);
        return 0;
}

int reach_start(sd_event *event, const struct tunnel_params *p, uint64_t deadline, reach_done_t done,
                void *userdata, struct reach **ret) {
        struct reach *r = xcalloc(1, sizeof(*r));
        int k;
        r->event = sd_event_ref(event);
        r->p = p;
        r->deadline = deadline;
        r->done = done;
        r->userdata = userdata;
        r->fd = -1;
        k = sd_event_add_time(event, &r->timer, CLOCK_MONOTONIC, deadline, 50000, on_timer, r);
        if (k >= 0)
                k = schedule(r);        /* start on the next iteration */
        if (k < 0) {
                reach_free(r);
                return k;
        }
        *ret = r;
        return 0;
}

void reach_free(struct reach *r) {
        if (!r)
                return;
        drop_sources(r);
        sshcall_free(r->ssh, false);
        if (r->fd >= 0)
                close(r->fd);
        free(r->addrs);
        free(r->tunnel_message);
        sd_event_unref(r->event);
        free(r);
}
