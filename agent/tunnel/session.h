/* One SSH session to a relay, shared by every tunnel that reaches the same relay as the same
 * user with the same key, host key policy and keepalive; and the tunnels on it. Private to
 * the engine: session.c (its life, events, keepalive and the pump), forward.c (its
 * tcpip-forwards, cancels and the log shell), bridge.c (its channels) and tunnel.c (the
 * public face, tunnels joining and leaving).
 *
 * 200 bindings on one relay cost one libssh2 session (about 55 KiB each) instead of 200,
 * and one sshd on the relay instead of 200. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "bridge.h"
#include "reach.h"
#include "resolve.h"
#include "sshcall.h"
#include "tunnel.h"

#define SETUP_TIMEOUT_MIN_SEC 30

enum session_state {
        SESSION_REACHING,    /* reach.c: resolve, connect, handshake, host key, auth */
        SESSION_UP,          /* authenticated: forwards are requested, channels bridged */
        SESSION_DOWN,
};

enum forward_state {
        FORWARD_RESOLVING,   /* resolving local_host */
        FORWARD_WAITING,     /* queued for its tcpip-forward request */
        FORWARD_REQUESTING,  /* tcpip-forward sent, waiting for the relay's answer */
        FORWARD_UP,
};

/* The log shell: a session channel opened once the session is up. */
enum log_phase {
        LOG_OPEN,        /* session channel open pending */
        LOG_SHELL,       /* "shell" request pending */
        LOG_RUNNING,     /* lines flow; the channel also carries the keepalive probes */
        LOG_NONE,        /* no channel (refused or closed): keepalives without replies */
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
        struct tunnel_limit *limit; /* shared by the binding's tunnels; NULL = none */
        char *target_host;        /* a local forward (no tcpip-forward): its direct-tcpip target */
        uint16_t target_port;
        struct tunnel_callbacks cb;
        void *userdata;
        enum forward_state state;

        struct resolve *resolve;  /* local_host */
        struct resolve_addr *loc_addrs;
        size_t n_loc_addrs;
        int loc_resolve_error;    /* EAI_* when local_host could not be resolved */

        sshcall_listener *listener;
        int bound_port;
        uint64_t warn_suppressed; /* local-connect warnings not logged (rate limit) */
        uint64_t last_warn;
        char *last_local_error;   /* the last refused or dropped local connection */
        bool local_failing;       /* ...and no local connect succeeded since */
        struct tunnel_stats stats;
};

/* Sessions that take new tunnels: the manager's, passed to tunnel_new(). */
struct tunnel_registry {
        struct session *head, *tail;
};

struct session {
        sd_event *event;
        struct tunnel_registry *registry;
        struct session *prev, *next;            /* in the registry while it takes tunnels */
        bool registered;
        struct tunnel_params p;   /* the shared fields only; strings owned */
        char *label;              /* "user@server:port", for log lines */
        enum session_state state;
        unsigned depth;           /* event handlers on the stack */
        bool freed;               /* no tunnel left while depth > 0: destroy on unwind */

        struct reach *reach;
        struct sshcall *ssh;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* keepalive/liveness */
        sd_event_source *defer;   /* pump again without waiting for the socket; set while scheduled */
        uint64_t rx_gen_seen;     /* sshcall_rx_gen() at the last full sweep */
        uint64_t next_probe;
        bool want_room;           /* data waits for send room on the session socket */

        bool probe_due;           /* keepalive interval elapsed: send a probe */
        bool sweep_all;           /* bytes arrived: every channel may have data */
        enum log_phase log_phase;
        bool log_shell_tried;
        unsigned log_reopens;
        struct bridge *log;

        struct tunnel *tunnels_head, *tunnels_tail;   /* attached forwards */
        /* The tcpip-forward in flight (one at a time: libssh2 keeps its state per session).
         * listen_for is NULL when its tunnel was freed meanwhile. */
        struct tunnel *listen_for;
        bool listening;
        char *listen_host;
        uint16_t listen_port;
        /* Listeners of tunnels that are gone, to cancel; they still count as listeners
         * for the pure read that resumes libssh2's own replies until then. */
        sshcall_listener **cancels;
        size_t n_cancels;

        /* Local forwards' connections waiting for their direct-tcpip channel, oldest first, and
         * the open in flight (one at a time, as libssh2 keeps a channel open's state in the
         * session; open_for is NULL when its connection went away meanwhile). */
        struct direct_open *opens;
        size_t n_opens;
        bool opening;
        struct bridge *open_for;
        char *open_host;
        uint16_t open_port;
        char open_peer[64];
        uint16_t open_peer_port;

        struct bridge *bridges_head, *bridges_tail;   /* forwarded connections and the log channel */
        uint64_t next_bridge_id;
};

/* session.c */
int session_new(sd_event *event, struct tunnel_registry *registry, const struct tunnel_params *params,
                struct session **ret);
void session_release(struct session *s);       /* no tunnel left: destroy now or on unwind */
void session_schedule(struct session *s);      /* pump on the next loop turn */
void session_enter(struct session *s);         /* every event handler of the session starts... */
void session_leave(struct session *s);         /* ...and ends with these */
void session_pump(struct session *s);          /* drives every libssh2 call of the session */
bool session_stopped(const struct session *s); /* down, freed, or a call is pending */
/* The session ended on a libssh2 call (`what`, NULL for none in particular): every tunnel on
 * it gets on_down. */
void session_lost(struct session *s, const char *what);
void session_log_line(struct session *s, const char *line);    /* to every attached tunnel */
void session_log_closed(struct session *s, int error);         /* the log channel is gone */

/* forward.c: returns false when the pump must stop. */
bool forward_step(struct session *s);
void forward_done(struct session *s, ssize_t r);               /* result of SSHCALL_LISTEN */
bool forward_cancel_step(struct session *s);
void forward_cancel_done(struct session *s, sshcall_listener *listener, ssize_t r);
void forward_cancel_later(struct session *s, sshcall_listener *listener);
bool forward_log_step(struct session *s);                       /* opens the log shell */
void forward_log_done(struct session *s, enum sshcall_kind kind, ssize_t r);

/* direct.c: local forwards' channels. */
struct direct_open {
        struct bridge *b;
        struct tunnel *t;
        char peer[64];            /* the local client, sent as the originator */
        uint16_t peer_port;
};
void direct_queue(struct session *s, struct bridge *b, struct tunnel *t, const char *peer, uint16_t peer_port);
void direct_forget(struct session *s, struct bridge *b);         /* b closes: out of the queue */
bool direct_step(struct session *s);                             /* false: the pump must stop */
void direct_done(struct session *s, ssize_t r);                  /* result of SSHCALL_OPEN_DIRECT */

/* tunnel.c: the outcome of a tunnel's forward request. */
void tunnel_forward_granted(struct tunnel *t, sshcall_listener *listener, int bound_port);
void tunnel_forward_refused(struct tunnel *t, int error, const char *message);
void tunnel_local_ready(struct tunnel *t);    /* a local forward on an up session: on_up */
