/* Private to the tunnel engine (tunnel*.c, hostkey.c): the only files that
 * include libssh2.
 *
 * Two objects. A `struct session` is one SSH connection to a relay, shared by every
 * binding that reaches the same relay as the same user with the same key and host key
 * policy: it resolves, connects, authenticates, keeps alive, carries the log shell and
 * drives every libssh2 call. A `struct tunnel` is one binding's reverse forward on it: its
 * own tcpip-forward, its listener, its local service and its counters. 200 bindings on one
 * relay cost one libssh2 session (about 55 KiB each) instead of 200, and one sshd on the
 * relay instead of 200. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libssh2.h>
#include <systemd/sd-event.h>

#include "tunnel.h"
#include "util.h"

#define USEC_PER_SEC 1000000ULL
#define CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)     /* per relay address */
#define SETUP_TIMEOUT_MIN_SEC 30
#define LISTEN_QUEUE 4096    /* libssh2 refuses channels past this many unaccepted ones */
#define CONN_BUF_SIZE       (64 * 1024)     /* per direction, per forwarded connection */
#define CONN_WINDOW         (1024 * 1024)   /* SSH receive window kept open per channel */
#define LOG_LINE_MAX        4096
#define LOG_READ_SIZE       4096            /* read size of the log shell channel */
#define RX_AHEAD_SIZE       (64 * 1024)     /* session socket read size in bulk (libssh2 asks 16 KiB) */
#define SEND_LOWAT          (128 * 1024)    /* TCP_NOTSENT_LOWAT on the session socket */

enum session_state {
        SESSION_RESOLVING,
        SESSION_CONNECTING,
        SESSION_HANDSHAKE,
        SESSION_AUTH,
        SESSION_UP,          /* authenticated: forwards are requested, channels bridged */
        SESSION_DOWN,
        _SESSION_STATE_MAX,
};

enum forward_state {
        FORWARD_RESOLVING,   /* resolving local_host */
        FORWARD_WAITING,     /* queued for its tcpip-forward request */
        FORWARD_REQUESTING,  /* tcpip-forward sent, waiting for the relay's answer */
        FORWARD_UP,
};

/* The log shell: a session channel opened once the session is up. */
enum log_phase {
        LOG_OPEN,        /* libssh2_channel_open_session pending */
        LOG_SHELL,       /* "shell" request pending */
        LOG_RUNNING,     /* lines flow; the channel also carries the keepalive probes */
        LOG_NONE,        /* no channel (refused or closed): keepalives without replies */
};

/* Every libssh2 call made once the session is up. libssh2 1.10 keeps exactly one
 * partially sent packet per session and, when a *different* call comes along, flushes the
 * old packet and reports the new one as sent without sending it. So whenever a call leaves
 * an outgoing packet pending, that call is recorded here and is the only call the engine
 * makes until it completes. */
enum op_kind {
        OP_NONE,
        OP_ACCEPT,       /* forward_accept: a pure read, also resumes libssh2-internal replies */
        OP_READ,
        OP_WRITE,
        OP_EOF,
        OP_ADJUST,
        OP_FREE,         /* channel_free: EOF + CLOSE, waits for the peer's CLOSE */
        OP_PROBE,        /* channel "env" request with want_reply on the log channel */
        OP_KEEPALIVE,
        OP_LISTEN,       /* tcpip-forward for session->listen_* */
        OP_CANCEL,       /* cancel-tcpip-forward (want_reply=0) of a detached listener */
};

struct conn;
struct tunnel;

struct op {
        enum op_kind kind;
        struct conn *conn;
        LIBSSH2_LISTENER *listener;   /* OP_ACCEPT, OP_CANCEL */
        char *buf;
        size_t len;
};

struct addr {
        struct sockaddr_storage sa;
        socklen_t len;
};

enum conn_state {
        CONN_CONNECTING,  /* local connect in progress */
        CONN_OPEN,
        CONN_CLOSING,     /* local side gone; channel being freed */
};

struct conn {
        struct session *s;
        struct tunnel *t;         /* the forward it came in on; NULL for the log shell and
                                   * once that forward is gone */
        struct conn *prev, *next;
        LIBSSH2_CHANNEL *ch;
        bool is_log;              /* the log shell: data goes to on_log, no local socket */
        enum conn_state state;
        uint64_t id;

        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* local connect timeout */
        size_t addr_idx;

        char *tl;                 /* relay -> local */
        size_t tl_off, tl_len;
        char *tr;                 /* local -> relay */
        size_t tr_off, tr_len;

        bool ch_eof;              /* relay sent EOF and everything before it was read */
        bool local_shut;          /* shutdown(SHUT_WR) done on the local socket */
        bool tr_more;             /* the last local read filled tr: the socket may hold more */
        bool local_eof;           /* the local service closed its side */
        bool eof_sent;            /* channel EOF sent to the relay */
        bool dirty;               /* needs a visit from the pump */
        bool probe_inflight;      /* log conn: keepalive probe awaiting its reply */
        int error;                /* why it is closing, for the debug log */
};

/* One binding's forward. */
struct tunnel {
        struct session *s;        /* NULL once detached (session gone) */
        struct tunnel *prev, *next;
        char *name;
        char *bind_host;
        uint16_t remote_port;
        char *local_host;
        uint16_t local_port;
        struct tunnel_callbacks cb;
        void *userdata;
        enum forward_state state;

        struct resolve *resolve;  /* local_host */
        struct addr *loc_addrs;
        size_t n_loc_addrs;
        int loc_resolve_error;    /* EAI_* when local_host could not be resolved */

        LIBSSH2_LISTENER *listener;
        int bound_port;
        uint64_t warn_suppressed; /* local-connect warnings not logged (rate limit) */
        uint64_t last_warn;
        struct tunnel_stats stats;
};

/* One SSH connection, shared. */
struct session {
        sd_event *event;
        struct session *prev, *next;            /* the registry of sessions that take tunnels */
        bool registered;
        struct tunnel_params p;   /* the shared fields only; strings owned */
        char *label;              /* "user@server:port", for log lines */
        enum session_state state;
        unsigned depth;           /* event handlers on the stack */
        bool freed;               /* no tunnel left while depth > 0: destroy on unwind */

        struct resolve *resolve;  /* the relay */
        struct addr *srv_addrs;
        size_t n_srv_addrs;
        size_t srv_idx;

        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* setup deadline, then keepalive/liveness */
        sd_event_source *defer;   /* pump again without waiting for the socket */
        uint64_t setup_deadline;  /* CLOCK_MONOTONIC usec */
        LIBSSH2_SESSION *session;
        bool sock_broken;         /* recv/send callback saw EOF or an error */
        int sock_errno;
        bool no_io;               /* tearing down: the I/O callbacks fail without touching fd */
        bool rx_dry;              /* recv said EAGAIN in this event's dispatch: say it again
                                   * without a system call until the next event */
        uint64_t rx_gen;          /* bumped on every byte handed to libssh2 */
        bool rx_bulk;             /* the last recv filled libssh2's request: more is likely */
        char *rxa;                /* read-ahead: bytes received, not yet taken by libssh2 */
        size_t rxa_off, rxa_len;
        uint64_t rx_gen_enter;    /* rx_gen when the current event's dispatch began */
        uint64_t rx_gen_seen;     /* rx_gen at the last full sweep */
        uint64_t last_rx;         /* CLOCK_MONOTONIC usec */
        uint64_t next_probe;
        bool want_room;           /* data waits for send room on the session socket */
        ssize_t room;             /* bytes we may still send before asking the kernel again */

        struct op pending;
        LIBSSH2_CHANNEL *accepted;    /* result of the last OP_ACCEPT */
        bool started;
        bool probe_due;           /* keepalive interval elapsed: send a probe */
        bool sweep_all;           /* bytes arrived: every channel may have data */
        enum log_phase log_phase;
        bool log_shell_tried;
        unsigned log_reopens;
        struct conn *log;
        char line[LOG_LINE_MAX + 1];
        size_t line_len;

        struct tunnel *tunnels_head, *tunnels_tail;   /* attached forwards */
        /* The tcpip-forward in flight (one at a time: libssh2 keeps its state per session).
         * listen_for is NULL when its tunnel was freed meanwhile. */
        struct tunnel *listen_for;
        bool listening;
        char *listen_host;
        uint16_t listen_port;
        LIBSSH2_LISTENER *listen_result;
        int listen_bound;
        /* Listeners of tunnels that are gone, to cancel; they still count as listeners
         * for the pure-read call until then. */
        LIBSSH2_LISTENER **cancels;
        size_t n_cancels;

        struct conn *conns_head, *conns_tail;   /* forwarded connections and the log channel */
        uint64_t next_conn_id;
};

/* tunnel.c: tunnels on a session. */
void session_fail(struct session *s, int error, bool permanent, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void session_log_line(struct session *s, const char *line);   /* to every attached tunnel */
/* One tunnel's forward was refused: that tunnel alone goes down. */
void tunnel_forward_refused(struct tunnel *t, int error, const char *message);
void tunnel_forward_granted(struct tunnel *t, LIBSSH2_LISTENER *listener, int bound_port);
void session_unregister(struct session *s);     /* takes no new tunnels; idempotent */

/* tunnel-pump.c: the session's libssh2 calls and its life. */
int session_new(sd_event *event, const struct tunnel_params *params, struct session **ret);
void session_destroy(struct session *s);
void session_release(struct session *s);       /* no tunnel left: destroy now or on unwind */
void session_schedule(struct session *s);
bool session_send_room(struct session *s);
void session_enter(struct session *s);
void session_leave(struct session *s);
/* Runs one libssh2 call (recording it as pending when it leaves a packet half sent) and
 * returns its result. */
ssize_t op_run(struct session *s, enum op_kind kind, struct conn *c, char *buf, size_t len);
ssize_t op_call(struct session *s, struct op op);
/* Some listener of the session (a live forward's, else one being cancelled), or NULL: what
 * the pure read that resumes a libssh2-internal reply is made with. */
LIBSSH2_LISTENER *any_listener(struct session *s);
int ssh_errno(struct session *s, int rc, const char **msg);
int on_session_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);
void pump(struct session *s);                   /* drives every libssh2 call of the session */
uint64_t now_mono(struct session *s);
void arm_timer(struct session *s, uint64_t when);
void fail_lost(struct session *s, ssize_t rc);  /* the session is gone: on_down, not permanent */
bool ssh_fatal(struct session *s, ssize_t rc);  /* true if rc ends the session */
LIBSSH2_RECV_FUNC(recv_cb);                     /* our socket I/O: sees EOF and errno */
LIBSSH2_SEND_FUNC(send_cb);

/* tunnel-bridge.c */
struct conn *conn_new(struct session *s, struct tunnel *t, LIBSSH2_CHANNEL *ch, bool is_log);
void conn_destroy(struct conn *c);
void conn_abort(struct conn *c, int error);
/* Services one connection: channel reads/writes, local flush, EOFs, closing. Returns false
 * when the pump must stop (an op is pending, or the session went down). */
bool conn_service(struct conn *c);
void conn_update_events(struct conn *c);
/* Applies the result of a libssh2 call made for c (also when it is retried as pending). */
void conn_op_done(struct conn *c, enum op_kind kind, ssize_t rc);

/* hostkey.c */
char *base64_encode(const void *data, size_t len, bool pad);
char *hostkey_fingerprint(const void *blob, size_t len);
/* Checks the relay's host key per p->host_key_check. Returns 0, or negative errno with a
 * sentence in *ret_message (a mismatch is -EPERM: permanent). */
int hostkey_verify(LIBSSH2_SESSION *session, const struct tunnel_params *p, char **ret_message);

/* tunnel-connect.c: resolve and connect. */
struct resolve;
/* Called once with the outcome (gai_error 0 and the addresses, or an EAI_* code); the
 * owner frees the request with resolve_free(), from inside the callback too. */
typedef void (*resolve_done_t)(void *userdata, int gai_error, struct addr *addrs, size_t n_addrs);
/* Resolves the name host:port without blocking. */
int resolve_start(sd_event *event, const char *host, uint16_t port, resolve_done_t done, void *userdata,
                  struct resolve **ret);
void resolve_free(struct resolve *r);          /* cancels a lookup still running; NULL is fine */
int parse_literal(const char *host, uint16_t port, struct addr *a);   /* 0 for an address literal */
void connect_next(struct session *s);           /* tries the next relay address */
void connect_done(struct session *s);           /* TCP is up: start the SSH session */
/* The negotiated cipher and MAC (client to server) of an authenticated session, else NULL
 * each; *mac is NULL for an AEAD cipher, which has no separate MAC. */
void session_algorithms(struct session *s, const char **cipher, const char **mac);

/* tunnel-setup.c: handshake, host key, auth, forwards, log shell. */
int check_identity(struct session *s);
void setup_step(struct session *s);
bool log_setup_step(struct session *s);
/* Requests the next waiting forward and completes the one in flight. Returns false when
 * the pump must stop. */
bool forward_step(struct session *s);
void forward_done(struct session *s, ssize_t rc);              /* result of OP_LISTEN */
/* Cancels the forwards of tunnels that are gone. Returns false when the pump must stop. */
bool cancel_step(struct session *s);
void cancel_done(struct session *s, LIBSSH2_LISTENER *listener, ssize_t rc);   /* result of OP_CANCEL */
