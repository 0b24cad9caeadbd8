/* Private to the tunnel engine (tunnel*.c, hostkey.c): the only files that
 * include libssh2. */
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
#define SEND_LOWAT          (16 * 1024)     /* TCP_NOTSENT_LOWAT on the session socket */

enum tunnel_state {
        TUNNEL_RESOLVING,
        TUNNEL_CONNECTING,
        TUNNEL_HANDSHAKE,
        TUNNEL_AUTH,
        TUNNEL_FORWARD,
        TUNNEL_UP,
        TUNNEL_DOWN,
        _TUNNEL_STATE_MAX,
};

/* The log shell while up: a session channel opened after the forward is granted. */
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
};

struct conn;

struct op {
        enum op_kind kind;
        struct conn *conn;
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
        struct tunnel *t;
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
        bool local_eof;           /* the local service closed its side */
        bool eof_sent;            /* channel EOF sent to the relay */
        bool dirty;               /* needs a visit from the pump */
        bool probe_inflight;      /* log conn: keepalive probe awaiting its reply */
        int error;                /* why it is closing, for the debug log */
};

struct tunnel {
        sd_event *event;
        struct tunnel_params p;   /* strings owned */
        struct tunnel_callbacks cb;
        void *userdata;
        enum tunnel_state state;
        unsigned depth;           /* event handlers on the stack */
        bool freed;               /* tunnel_free() called while depth > 0 */

        /* resolving */
        struct resolve *resolve;
        sd_event_source *resolve_io;
        struct addr *srv_addrs, *loc_addrs;
        size_t n_srv_addrs, n_loc_addrs;
        int loc_resolve_error;    /* EAI_* when local_host could not be resolved */
        size_t srv_idx;

        /* session */
        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* setup deadline, then keepalive/liveness */
        sd_event_source *defer;   /* pump again without waiting for the socket */
        uint64_t setup_deadline;  /* CLOCK_MONOTONIC usec */
        LIBSSH2_SESSION *session;
        LIBSSH2_LISTENER *listener;
        int bound_port;
        bool sock_broken;         /* recv/send callback saw EOF or an error */
        int sock_errno;
        bool no_io;               /* tearing down: the I/O callbacks fail without touching fd */
        uint64_t rx_gen;          /* bumped on every byte received */
        uint64_t rx_gen_seen;     /* rx_gen at the last full sweep */
        uint64_t last_rx;         /* CLOCK_MONOTONIC usec */
        uint64_t next_probe;
        bool want_room;           /* data waits for send room on the session socket */

        struct op pending;
        LIBSSH2_CHANNEL *accepted;    /* result of the last OP_ACCEPT */
        bool started;
        bool probe_due;           /* keepalive interval elapsed: send a probe */
        bool sweep_all;           /* bytes arrived: every channel may have data */
        uint64_t warn_suppressed; /* local-connect warnings not logged (rate limit) */
        uint64_t last_warn;
        enum log_phase log_phase;
        bool log_shell_tried;
        unsigned log_reopens;
        struct conn *log;
        char line[LOG_LINE_MAX + 1];
        size_t line_len;

        struct conn *conns_head, *conns_tail;   /* forwarded connections and the log channel */
        uint64_t next_conn_id;
        struct tunnel_stats stats;
};

/* tunnel.c */
void tunnel_fail(struct tunnel *t, int error, bool permanent, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void tunnel_schedule(struct tunnel *t);
bool tunnel_send_room(struct tunnel *t);
/* Runs one libssh2 call (recording it as pending when it leaves a packet half sent) and
 * returns its result. */
ssize_t op_run(struct tunnel *t, enum op_kind kind, struct conn *c, char *buf, size_t len);
int ssh_errno(struct tunnel *t, int rc, const char **msg);

/* tunnel-bridge.c */
struct conn *conn_new(struct tunnel *t, LIBSSH2_CHANNEL *ch, bool is_log);
void conn_destroy(struct conn *c);
/* Services one connection: channel reads/writes, local flush, EOFs, closing. Returns false
 * when the pump must stop (an op is pending, or the tunnel went down). */
bool conn_service(struct conn *c);
void conn_update_events(struct conn *c);
/* Applies the result of a libssh2 call made for c (also when it is retried as pending). */
void conn_op_done(struct conn *c, enum op_kind kind, ssize_t rc);
void tunnel_enter(struct tunnel *t);
void tunnel_leave(struct tunnel *t);

/* hostkey.c */
char *base64_encode(const void *data, size_t len, bool pad);
char *hostkey_fingerprint(const void *blob, size_t len);
/* Checks the relay's host key per p->host_key_check. Returns 0, or negative errno with a
 * sentence in *ret_message (a mismatch is -EPERM: permanent). */
int hostkey_verify(LIBSSH2_SESSION *session, const struct tunnel_params *p, char **ret_message);

/* tunnel.c: the pump and its plumbing. */
int on_session_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
void pump(struct tunnel *t);                    /* drives every libssh2 call of the session */
uint64_t now_mono(struct tunnel *t);
void arm_timer(struct tunnel *t, uint64_t when);
void fail_lost(struct tunnel *t, ssize_t rc);   /* the session is gone: on_down, not permanent */
bool ssh_fatal(struct tunnel *t, ssize_t rc);   /* true (and on_down) if rc ends the session */
LIBSSH2_RECV_FUNC(recv_cb);                     /* our socket I/O: sees EOF and errno */
LIBSSH2_SEND_FUNC(send_cb);

/* tunnel-connect.c: resolve and connect. */
int resolve_start(struct tunnel *t, const char *host, uint16_t port, bool local);
void resolve_cancel(struct tunnel *t);
void resolve_next(struct tunnel *t);           /* relay, then local service, then connect */
void connect_next(struct tunnel *t);            /* tries the next relay address */
void connect_done(struct tunnel *t);            /* TCP is up: start the SSH session */
void set_sockopts(struct tunnel *t, int fd);

/* tunnel-setup.c: handshake, host key, auth, forward, log shell. */
int check_identity(struct tunnel *t);
void setup_step(struct tunnel *t);
bool log_setup_step(struct tunnel *t);
