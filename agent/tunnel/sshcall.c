/* The engine's libssh2 calls; see sshcall.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <libssh2.h>

#include "hostkey.h"
#include "methods.h"
#include "sshcall.h"
#include "sshmem.h"
#include "util.h"

#define RX_AHEAD_SIZE (64 * 1024)     /* session socket read size in bulk (libssh2 asks 16 KiB) */

struct sshcall {
        sd_event *event;
        LIBSSH2_SESSION *session;
        int fd;
        bool sock_broken;         /* recv/send callback saw EOF or an error */
        int sock_errno;
        bool ended;               /* a session-ending error came back from a call */
        int end_errno;
        bool no_io;               /* tearing down: the I/O callbacks fail without touching fd */
        bool hold;                /* in a dispatch: sends after its first go with MSG_MORE */
        bool sent;                /* the dispatch has sent */
        bool held;                /* with MSG_MORE: the last segment may be waiting in the kernel */
        bool rx_dry;              /* recv said EAGAIN in this dispatch: say it again without a
                                   * system call until the next event */
        uint64_t rx_gen;          /* bumped on every byte handed to libssh2 */
        uint64_t rx_gen_enter;    /* rx_gen when the current dispatch began */
        bool rx_bulk;             /* the last recv filled libssh2's request: more is likely */
        char *rxa;                /* read-ahead: bytes received, not yet taken by libssh2 */
        size_t rxa_off, rxa_len;
        size_t rx_budget;         /* bytes libssh2 may still take in this dispatch */
        bool rx_capped;           /* the budget ran out */
        uint64_t last_rx;         /* CLOCK_MONOTONIC usec */
        ssize_t room;             /* bytes we may still send before asking the kernel again */
        bool pv_done;             /* the relay's "SSH-" version line has begun */
        bool pv_mismatch;         /* the current pre-version line is not "SSH-..." */
        unsigned pv_col;
        unsigned pv_lines;        /* text lines before the version line */
        size_t pv_bytes;
        bool pv_flood;
        bool hs_done;             /* the handshake is complete */
        size_t hs_bytes;          /* bytes taken before that */
        bool hs_flood;
        struct sshcall_op pending;
        LIBSSH2_CHANNEL *accepted, *opened;
        LIBSSH2_LISTENER *listened;
        int listen_bound;
};

/* ---- the one table of libssh2 errors ------------------------------------------------- */

/* What each libssh2 error means for us: the errno it becomes and whether it ends the whole
 * session (else only the channel or request it came from failed). Anything not listed is
 * -EIO and ends the session; a socket that saw EOF or an error always ends it. */
static const struct sshcall_error {
        int code;
        int err;
        bool ends;
} sshcall_errors[] = {
        { LIBSSH2_ERROR_ALLOC,                   ENOMEM,      true },
        { LIBSSH2_ERROR_SOCKET_SEND,             ECONNRESET,  true },
        { LIBSSH2_ERROR_SOCKET_RECV,             ECONNRESET,  true },
        { LIBSSH2_ERROR_SOCKET_DISCONNECT,       ECONNRESET,  true },
        { LIBSSH2_ERROR_BANNER_RECV,             ECONNRESET,  true },
        { LIBSSH2_ERROR_BANNER_SEND,             ECONNRESET,  true },
        { LIBSSH2_ERROR_TIMEOUT,                 ETIMEDOUT,   true },
        { LIBSSH2_ERROR_SOCKET_TIMEOUT,          ETIMEDOUT,   true },
        { LIBSSH2_ERROR_AUTHENTICATION_FAILED,   EACCES,      true },
        { LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED,    EACCES,      true },
        { LIBSSH2_ERROR_FILE,                    ENOKEY,      true },
        { LIBSSH2_ERROR_KEYFILE_AUTH_FAILED,     ENOKEY,      true },
        { LIBSSH2_ERROR_METHOD_NONE,             EPROTO,      true },
        { LIBSSH2_ERROR_KEX_FAILURE,             EPROTO,      true },
        { LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE,    EPROTO,      true },
        { LIBSSH2_ERROR_HOSTKEY_INIT,            EPROTO,      true },
        { LIBSSH2_ERROR_HOSTKEY_SIGN,            EPROTO,      true },
        { LIBSSH2_ERROR_DECRYPT,                 EPROTO,      true },
        { LIBSSH2_ERROR_INVALID_MAC,             EPROTO,      true },
        { LIBSSH2_ERROR_PROTO,                   EPROTO,      true },
        /* One request or channel: */
        { LIBSSH2_ERROR_REQUEST_DENIED,          EADDRINUSE,  false },   /* tcpip-forward refused */
        { LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED,  EREMOTEIO,   false },   /* shell, env refused */
        { LIBSSH2_ERROR_CHANNEL_FAILURE,         ECONNREFUSED, false },  /* channel open refused */
        { LIBSSH2_ERROR_CHANNEL_CLOSED,          EPIPE,       false },
        { LIBSSH2_ERROR_CHANNEL_EOF_SENT,        EPIPE,       false },
        { LIBSSH2_ERROR_CHANNEL_UNKNOWN,         EBADF,       false },
        { LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED, EMSGSIZE,    false },
        { LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED, EMSGSIZE,    false },
        { LIBSSH2_ERROR_CHANNEL_WINDOW_FULL,     ENOBUFS,     false },
        { LIBSSH2_ERROR_BAD_USE,                 EINVAL,      false },
        { LIBSSH2_ERROR_INVAL,                   EINVAL,      false },
};

static const struct sshcall_error *error_lookup(int code) {
        for (size_t i = 0; i < ELEMENTSOF(sshcall_errors); i++)
                if (sshcall_errors[i].code == code)
                        return &sshcall_errors[i];
        return NULL;
}

/* libssh2's rc -> >= 0, SSHCALL_AGAIN_*, or -errno (recording a session-ending one). */
static ssize_t translate(struct sshcall *c, ssize_t rc) {
        if (rc >= 0)
                return rc;
        if (rc == LIBSSH2_ERROR_EAGAIN)
                return libssh2_session_block_directions(c->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND ?
                       SSHCALL_AGAIN_OUTPUT : SSHCALL_AGAIN_INPUT;
        const struct sshcall_error *e = error_lookup((int) rc);
        int err = e ? e->err : EIO;
        if (c->sock_broken) {
                err = c->sock_errno ? c->sock_errno : ECONNRESET;
                if (e && e->code == LIBSSH2_ERROR_AUTHENTICATION_FAILED)
                        err = ECONNRESET;   /* 1.10 says "auth failed" for a relay dying mid-auth */
        }
        if (c->pv_flood || c->hs_flood)
                err = EPROTO;
        if (c->sock_broken || c->pv_flood || c->hs_flood || !e || e->ends) {
                if (!c->ended)
                        c->end_errno = -err;
                c->ended = true;
        }
        return -err;
}

/* ---- libssh2 I/O callbacks ---------------------------------------------------------- */

/* Watches what comes before the relay's version line (RFC 4253 4.2): text lines are
 * allowed, a flood of them is not. Returns false when the relay sent too many. */
static bool preversion_scan(struct sshcall *s, const char *p, size_t n) {
        for (size_t i = 0; i < n && !s->pv_done; i++) {
                if (s->pv_col < 4 && p[i] != "SSH-"[s->pv_col])
                        s->pv_mismatch = true;
                s->pv_col++;
                if (s->pv_col == 4 && !s->pv_mismatch)
                        s->pv_done = true;
                else if (p[i] == '\n') {
                        s->pv_lines++;
                        s->pv_col = 0;
                        s->pv_mismatch = false;
                }
        }
        if (!s->pv_done)
                s->pv_bytes += n;
        if (!s->pv_done && (s->pv_lines > SSHCALL_PREVERSION_LINES_MAX || s->pv_bytes > SSHCALL_PREVERSION_BYTES_MAX))
                s->pv_flood = true;
        return !s->pv_flood;
}

/* n bytes go to libssh2: count them against the dispatch's budget. */
static ssize_t handed(struct sshcall *s, const void *buffer, size_t n) {
        s->rx_gen++;
        s->rx_budget = n < s->rx_budget ? s->rx_budget - n : 0;
        if (!s->pv_done && !preversion_scan(s, buffer, n))
                return -EPROTO;
        if (!s->hs_done && (s->hs_bytes += n) > SSHCALL_HANDSHAKE_BYTES_MAX) {
                s->hs_flood = true;
                return -EPROTO;
        }
        return (ssize_t) n;
}

static ssize_t take_ahead(struct sshcall *s, void *buffer, size_t length) {
        size_t n = length < s->rxa_len ? length : s->rxa_len;
        if (n > s->rx_budget && s->rx_budget > 0)
                n = s->rx_budget;
        memcpy(buffer, s->rxa + s->rxa_off, n);
        s->rxa_off += n;
        s->rxa_len -= n;
        return handed(s, buffer, n);
}

/* Our own socket I/O, to see what libssh2 hides: the time of the last byte received (the
 * liveness signal), EOF and errno (forward_accept() reports a dead socket as "channel not
 * found"), and so that a tunnel being torn down can make every call fail fast.
 *
 * libssh2 1.10 reads the socket 16 KiB at a time. In bulk (the last read filled its request)
 * we read RX_AHEAD_SIZE and hand it over from our buffer: a quarter of the system calls.
 * Bytes held there are invisible to epoll; sshcall_dispatch_end() makes sure they are taken. */
static LIBSSH2_RECV_FUNC(recv_cb) {
        struct sshcall *s = *abstract;
        if (s->no_io)
                return -ECONNRESET;
        if (s->pv_flood || s->hs_flood)
                return -EPROTO;
        if (s->rx_budget == 0) {
                s->rx_capped = true;
                return -EAGAIN;
        }
        if (length > s->rx_budget)
                length = s->rx_budget;
        if (s->rxa_len > 0)
                return take_ahead(s, buffer, length);
        if (s->rx_dry)
                return -EAGAIN;
        bool ahead = s->rx_bulk && length < RX_AHEAD_SIZE;
        if (ahead && !s->rxa)
                ahead = (s->rxa = malloc(RX_AHEAD_SIZE)) != NULL;
        ssize_t n = ahead ? recv(socket, s->rxa, RX_AHEAD_SIZE, flags) : recv(socket, buffer, length, flags);
        if (n > 0) {
                uint64_t now;
                if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0)
                        s->last_rx = now;
                s->rx_bulk = (size_t) n == (ahead ? RX_AHEAD_SIZE : length);
                if (!ahead)
                        return handed(s, buffer, (size_t) n);
                s->rxa_off = 0;
                s->rxa_len = (size_t) n;
                return take_ahead(s, buffer, length);
        }
        s->rx_bulk = false;
        if (n == 0) {
                s->sock_broken = true;
                return 0;
        }
        if (errno == EAGAIN) {
                s->rx_dry = true;
                return -EAGAIN;
        }
        if (errno == EINTR)
                return -EAGAIN;
        s->sock_broken = true;
        s->sock_errno = errno;
        return -errno;
}

static LIBSSH2_SEND_FUNC(send_cb) {
        struct sshcall *s = *abstract;
        if (s->no_io)
                return -EPIPE;
        bool more = s->hold && s->sent;
        ssize_t n = send(socket, buffer, length, flags | MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (n >= 0) {
                s->room -= n;
                s->sent = true;
                s->held |= more;
                return n;
        }
        if (errno == EAGAIN || errno == EINTR)
                return -EAGAIN;
        s->sock_broken = true;
        s->sock_errno = errno;
        return -errno;
}

/* ---- method preferences (the names and CPU probes are in methods.c) ------------------ */

/* Sets the preference for `method` to the names of `want` that this libssh2 supports. */
static void set_pref(LIBSSH2_SESSION *session, int method, const char *const *want, size_t n_want) {
        const char **algs = NULL;
        char pref[256];
        int n = libssh2_session_supported_algs(session, method, &algs);
        methods_join(want, n_want, algs, n > 0 ? (size_t) n : 0, pref, sizeof(pref));
        if (n > 0)
                libssh2_free(session, algs);
        if (*pref)
                (void) libssh2_session_method_pref(session, method, pref);
}

/* Maps a libssh2 method onto our kinds; NULL (and *n = 0) for one we state no preference on. */
static const char *const *sshcall_method_wants(int method, bool aes, bool sha, size_t *n) {
        switch (method) {
        case LIBSSH2_METHOD_HOSTKEY:
                return methods_wants(METHODS_HOSTKEY, aes, sha, n);
        case LIBSSH2_METHOD_CRYPT_CS:
        case LIBSSH2_METHOD_CRYPT_SC:
                return methods_wants(METHODS_CIPHER, aes, sha, n);
        case LIBSSH2_METHOD_MAC_CS:
        case LIBSSH2_METHOD_MAC_SC:
                return methods_wants(METHODS_MAC, aes, sha, n);
        default:
                *n = 0;
                return NULL;
        }
}

static void sshcall_method_prefs(LIBSSH2_SESSION *session) {
        static const int methods[] = { LIBSSH2_METHOD_HOSTKEY, LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC,
                                       LIBSSH2_METHOD_MAC_CS, LIBSSH2_METHOD_MAC_SC };
        bool aes, sha;
        methods_cpu(&aes, &sha);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                size_t n;
                const char *const *want = sshcall_method_wants(methods[i], aes, sha, &n);
                set_pref(session, methods[i], want, n);
        }
}

/* ---- life ------------------------------------------------------------------------------ */

_Static_assert(SSHMEM_BIG > LIBSSH2_PACKET_MAXPAYLOAD + 1024, "received packets stay on the heap (sshmem.h)");

int sshcall_new(sd_event *event, int fd, struct sshcall **ret) {
        struct sshcall *c = xcalloc(1, sizeof(*c));
        c->session = libssh2_session_init_ex(sshmem_alloc, sshmem_free, sshmem_realloc, c);
        if (!c->session) {
                free(c);
                return -ENOMEM;
        }
        /* The session struct is zeroed whole at init; an idle session touches a few of its
         * pages again (sshmem.h). */
        (void) sshmem_trim(c->session);
        c->event = sd_event_ref(event);
        c->fd = fd;
        c->rx_budget = SSHCALL_RX_BUDGET;
#ifdef HAVE_LIBSSH2_SESSION_CALLBACK_SET2   /* 1.11.1 deprecates the untyped one */
        libssh2_session_callback_set2(c->session, LIBSSH2_CALLBACK_RECV, (libssh2_cb_generic *) recv_cb);
        libssh2_session_callback_set2(c->session, LIBSSH2_CALLBACK_SEND, (libssh2_cb_generic *) send_cb);
#else
        libssh2_session_callback_set(c->session, LIBSSH2_CALLBACK_RECV, (void *) recv_cb);
        libssh2_session_callback_set(c->session, LIBSSH2_CALLBACK_SEND, (void *) send_cb);
#endif
        libssh2_session_set_blocking(c->session, 0);
        sshcall_method_prefs(c->session);
        if (sd_event_now(event, CLOCK_MONOTONIC, &c->last_rx) < 0)
                c->last_rx = now_monotonic_usec();
        *ret = c;
        return 0;
}

void sshcall_free(struct sshcall *c, bool polite) {
        if (!c)
                return;
        /* Best effort, never blocking: only when no packet is half sent. */
        if (polite && !c->sock_broken && c->pending.kind == SSHCALL_NONE &&
            !(libssh2_session_block_directions(c->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
                (void) libssh2_session_disconnect_ex(c->session, SSH_DISCONNECT_BY_APPLICATION, "Normal Shutdown", "");
        /* Channels and listeners are closed by libssh2 with I/O that now fails at once, so
         * session_free() neither blocks nor returns EAGAIN half way. */
        c->no_io = true;
        libssh2_session_free(c->session);
        free(c->rxa);
        sd_event_unref(c->event);
        free(c);
}

/* A new event is when the socket may hold bytes again: until then, each libssh2 call that
 * polls it (a write first reads what came in; every channel's read does) hears "nothing
 * yet" without a system call, a dozen of them per packet sent otherwise. Epoll is
 * level-triggered and always watches for input, so bytes arriving meanwhile bring the next
 * event. */
void sshcall_dispatch_begin(struct sshcall *c) {
        c->rx_dry = false;
        c->rx_gen_enter = c->rx_gen;
        c->rx_budget = SSHCALL_RX_BUDGET;
        c->rx_capped = false;
}

void sshcall_hold(struct sshcall *c) {
        c->hold = true;
        c->sent = false;
}

void sshcall_push(struct sshcall *c) {
        c->hold = false;
        if (!c->held)
                return;
        c->held = false;
        /* Setting TCP_NODELAY (on already) sends what MSG_MORE held back. */
        int one = 1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void sshcall_dispatch_dry(struct sshcall *c) {
        c->rx_dry = true;
}

/* Bytes left in the read-ahead buffer get no epoll event: go round again while they are being
 * taken, as if they had just arrived. A dispatch that took none waits for its own event (a
 * call blocked on output, which EPOLLOUT resumes; the next call that reads takes them all). */
bool sshcall_dispatch_end(struct sshcall *c) {
        if (c->rx_capped)
                return true;
        if (c->rxa_len == 0) {
                free(c->rxa);
                c->rxa = NULL;
                return false;
        }
        return c->rx_gen != c->rx_gen_enter;
}

/* ---- setup ---------------------------------------------------------------------------- */

int sshcall_handshake(struct sshcall *c) {
        ssize_t r = translate(c, libssh2_session_handshake(c->session, c->fd));
        if (r == 0)
                c->pv_done = c->hs_done = true;
        return (int) r;
}

int sshcall_verify_hostkey(struct sshcall *c, const struct tunnel_params *p, char **ret_message) {
        return hostkey_verify(c->session, p, ret_message);
}

int sshcall_auth(struct sshcall *c, const char *user, const char *public_key, const char *private_key) {
        return (int) translate(c, libssh2_userauth_publickey_fromfile_ex(c->session, user, (unsigned) strlen(user),
                                                                         public_key, private_key, NULL));
}

/* want_reply=0: with want_reply=1 the relay's REQUEST_FAILURE answers get taken by 1.10 as
 * the answer to a later tcpip-forward request. */
void sshcall_keepalive_config(struct sshcall *c, unsigned interval) {
        libssh2_keepalive_config(c->session, 0, interval);
}

void sshcall_algorithms(struct sshcall *c, const char **cipher, const char **mac) {
        *cipher = libssh2_session_methods(c->session, LIBSSH2_METHOD_CRYPT_CS);
        /* libssh2 still names a MAC for these: "INTEGRATED-AES-GCM" (1.11), or for
         * chacha20-poly1305 the negotiated one it never uses. */
        bool aead = *cipher && (strstr(*cipher, "-gcm@") || strncmp(*cipher, "chacha20-poly1305", 17) == 0);
        *mac = *cipher && !aead ? libssh2_session_methods(c->session, LIBSSH2_METHOD_MAC_CS) : NULL;
}

bool sshcall_handshake_flood(const struct sshcall *c, size_t *bytes) {
        *bytes = c->hs_bytes;
        return c->hs_flood;
}

bool sshcall_preversion(const struct sshcall *c, unsigned *lines, size_t *bytes) {
        *lines = c->pv_lines;
        *bytes = c->pv_bytes;
        return c->pv_flood;
}

/* ---- the one-pending-call discipline ------------------------------------------------ */

/* channel_read sends too: the window adjust libssh2 makes by itself when the window runs
 * low. Left half sent, only the same read resumes it (its read_state), not an accept. */
static bool op_sends(enum sshcall_kind k) {
        return k != SSHCALL_NONE && k != SSHCALL_ACCEPT && k != SSHCALL_RESUME;
}

ssize_t sshcall_run(struct sshcall *c, struct sshcall_op op) {
        ssize_t rc = LIBSSH2_ERROR_INVAL;
        int next;

        switch (op.kind) {
        case SSHCALL_ACCEPT:
                c->accepted = libssh2_channel_forward_accept(op.listener);
                rc = c->accepted ? 1 : libssh2_session_last_errno(c->session);
                break;
        case SSHCALL_READ:
                rc = libssh2_channel_read(op.ch, op.buf, op.len);
                break;
        case SSHCALL_WRITE:
                rc = libssh2_channel_write(op.ch, op.buf, op.len);
                break;
        case SSHCALL_EOF:
                rc = libssh2_channel_send_eof(op.ch);
                break;
        case SSHCALL_ADJUST:
                rc = libssh2_channel_receive_window_adjust2(op.ch, (unsigned long) op.len, 1, NULL);
                break;
        case SSHCALL_FREE:
                rc = libssh2_channel_free(op.ch);
                break;
        case SSHCALL_PROBE:
                rc = libssh2_channel_setenv_ex(op.ch, "MYSOCKETD_KEEPALIVE", 19, "1", 1);
                break;
        case SSHCALL_KEEPALIVE:
                rc = libssh2_keepalive_send(c->session, &next);
                break;
        case SSHCALL_LISTEN:
                c->listened = libssh2_channel_forward_listen_ex(c->session, op.host, op.port, &c->listen_bound,
                                                                4096 /* libssh2's cap on unaccepted channels */);
                rc = c->listened ? 0 : libssh2_session_last_errno(c->session);
                break;
        case SSHCALL_CANCEL:
                rc = libssh2_channel_forward_cancel(op.listener);
                break;
        case SSHCALL_OPEN_SESSION:
                c->opened = libssh2_channel_open_session(c->session);
                rc = c->opened ? 0 : libssh2_session_last_errno(c->session);
                break;
        case SSHCALL_SHELL:
                rc = libssh2_channel_shell(op.ch);
                break;
        case SSHCALL_OPEN_DIRECT:
                c->opened = libssh2_channel_direct_tcpip_ex(c->session, op.host, op.port, op.shost, op.sport);
                rc = c->opened ? 0 : libssh2_session_last_errno(c->session);
                break;
        case SSHCALL_NONE:
        case SSHCALL_RESUME:
                break;
        }

        if (libssh2_session_block_directions(c->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
                if (rc == LIBSSH2_ERROR_EAGAIN && op_sends(op.kind))
                        c->pending = op;
                else
                        c->pending = (struct sshcall_op) { .kind = SSHCALL_RESUME };
        } else
                c->pending = (struct sshcall_op) { .kind = SSHCALL_NONE };
        return translate(c, rc);
}

const struct sshcall_op *sshcall_pending(const struct sshcall *c) {
        return c->pending.kind == SSHCALL_NONE ? NULL : &c->pending;
}

void sshcall_forget(struct sshcall *c, const void *owner) {
        if (c->pending.kind != SSHCALL_NONE && owner && c->pending.owner == owner)
                c->pending = (struct sshcall_op) { .kind = SSHCALL_RESUME };
}

sshcall_channel *sshcall_accepted(struct sshcall *c) {
        LIBSSH2_CHANNEL *ch = c->accepted;
        c->accepted = NULL;
        return ch;
}

sshcall_channel *sshcall_opened(struct sshcall *c) {
        LIBSSH2_CHANNEL *ch = c->opened;
        c->opened = NULL;
        return ch;
}

sshcall_listener *sshcall_listened(struct sshcall *c, int *bound_port) {
        LIBSSH2_LISTENER *l = c->listened;
        c->listened = NULL;
        *bound_port = c->listen_bound;
        return l;
}

/* ---- channels and state ----------------------------------------------------------------- */

bool sshcall_channel_eof(sshcall_channel *ch) {
        return libssh2_channel_eof(ch) == 1;
}

unsigned long sshcall_window_read(sshcall_channel *ch) {
        return libssh2_channel_window_read(ch);
}

unsigned long sshcall_window_write(sshcall_channel *ch) {
        return libssh2_channel_window_write(ch);
}

void sshcall_merge_stderr(sshcall_channel *ch, bool merge) {
        libssh2_channel_handle_extended_data2(ch, merge ? LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE :
                                                  LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
}

bool sshcall_ended(const struct sshcall *c) {
        return c->ended || c->sock_broken;
}

int sshcall_end_errno(const struct sshcall *c) {
        if (c->sock_broken)
                return c->sock_errno ? -c->sock_errno : -ECONNRESET;
        return c->ended ? c->end_errno : 0;
}

bool sshcall_closed_by_peer(const struct sshcall *c) {
        return c->sock_broken && c->sock_errno == 0;
}

bool sshcall_socket_broken(const struct sshcall *c) {
        return c->sock_broken;
}

const char *sshcall_message(const struct sshcall *c) {
        char *m = NULL;
        libssh2_session_last_error(c->session, &m, NULL, 0);
        return m && *m ? m : "unknown libssh2 error";
}

uint64_t sshcall_rx_gen(const struct sshcall *c) {
        return c->rx_gen;
}

uint64_t sshcall_last_rx(const struct sshcall *c) {
        return c->last_rx;
}

bool sshcall_wants_output(const struct sshcall *c) {
        return (libssh2_session_block_directions(c->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND) ||
               c->pending.kind != SSHCALL_NONE;
}

/* Room in the kernel send queue: with TCP_NOTSENT_LOWAT, EPOLLOUT means exactly this, and
 * keeping the queue short means libssh2 practically never leaves a packet half sent (which
 * is what makes 1.10 drop data when another call comes along). The kernel is asked only when
 * what we sent since the last answer may have used that room up: the unsent queue grows only
 * by our own sends, so the room left is never less than we count. */
bool sshcall_send_room(struct sshcall *s) {
        if (s->room > 0)
                return true;
        int unsent = 0;
        if (ioctl(s->fd, SIOCOUTQNSD, &unsent) < 0)
                return true;
        s->room = SSHCALL_SEND_LOWAT - unsent;
        return s->room > 0;
}

int sshcall_global_init(void) {
        return libssh2_init(0) == 0 ? 0 : -EIO;
}

void sshcall_global_done(void) {
        libssh2_exit();
}
