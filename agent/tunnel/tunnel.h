/* The tunnel engine's face (agent/tunnel/): reverse SSH forwards kept by libssh2 on the
 * sd-event loop. Only agent/tunnel/sshcall.c and hostkey.c include libssh2.
 *
 * A tunnel is one binding's attempt: tunnel_new() joins (or starts) the SSH session to the
 * relay, requests the forward, and calls on_up() when it is granted; from then on every
 * channel the relay opens for that forward is bridged to local_host:local_port. Tunnels
 * with the same relay, user, key, host key policy and keepalive share one session (unless
 * one is `exclusive`), each with its own tcpip-forward; the relay's log shell is the
 * session's, so its lines go to every tunnel on it. When the forward is refused, or anything ends the session (error,
 * keepalive timeout, relay closing: then every tunnel on it), on_down() is called exactly
 * once and the tunnel goes quiet; the owner then calls tunnel_free() (allowed from inside
 * any callback) and decides about the next attempt. Reconnecting is the manager's
 * business. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "conf.h"

struct tunnel;
/* The sessions that take new tunnels (so that tunnels to the same relay share one): owned
 * by the caller, one per event loop, outliving every tunnel made with it. */
struct tunnel_registry;

struct tunnel_params {
        const char *name;                    /* binding name, for log lines */
        const char *server;                  /* relay host name or address literal */
        uint16_t server_port;
        const char *proxy;                   /* [ssh] proxy URL (may hold credentials) or NULL */
        const char *user;
        const char *identity_file;           /* private key; public key is identity_file.pub if present */
        const char *known_hosts;
        enum host_key_check host_key_check;
        const char *host_key_fingerprint;    /* "SHA256:..." when pinned */
        unsigned keepalive_interval;         /* seconds */
        unsigned keepalive_count;
        const char *bind_host;               /* tcpip-forward address: "localhost" */
        uint16_t remote_port;                /* port requested on the relay */
        const char *local_host;              /* where accepted channels are bridged to */
        uint16_t local_port;
        struct tunnel_limit *limit;          /* NULL = no limit */
        /* A local forward (like `ssh -L`) when set: no tcpip-forward and no local service;
         * on_up once the session is up, then tunnel_open_local() hands over each accepted
         * connection, opened as a direct-tcpip channel to target_host:target_port. */
        const char *target_host;
        uint16_t target_port;
        /* A session of its own, never shared: in API mode the relay's request log on a
         * connection belongs to the one socket it serves. */
        bool exclusive;
        /* Open a shell on the relay and pass its output lines to on_log; false: no shell
         * (like `ssh -N`), a bare session channel carries only the keepalive probes. */
        bool edge_log;
};

/* max_connections: relay channels open at once, across every tunnel given the same limit
 * (a binding's relays and API tunnels). The caller owns it and keeps it while they live. */
struct tunnel_limit {
        unsigned max;                        /* 0 = no limit */
        unsigned active;                     /* counted by the engine */
};

struct tunnel_stats {
        uint64_t connections_active;
        uint64_t connections_total;
        uint64_t connections_refused;        /* closed at once: max_connections were open */
        uint64_t bytes_in;                   /* relay -> local service */
        uint64_t bytes_out;                  /* local service -> relay */
        uint64_t local_errors;               /* connections the local service refused or dropped */
};

struct tunnel_callbacks {
        /* The forward is granted: the binding is up. */
        void (*on_up)(struct tunnel *t, void *userdata);
        /* The attempt or the session ended. `permanent` means retrying without a change is
         * pointless (authentication rejected, host key mismatch, unreadable or unsafe key).
         * `message` says what happened, for last_error and the log. */
        void (*on_down)(struct tunnel *t, int error, bool permanent, const char *message, void *userdata);
        /* One line the relay printed on the shell session (the edge request log). */
        void (*on_log)(struct tunnel *t, const char *line, void *userdata);
};

struct tunnel_registry *tunnel_registry_new(void);
/* Every tunnel made with it must be freed first. NULL is fine. */
void tunnel_registry_free(struct tunnel_registry *r);

/* Starts an attempt. The params strings are copied. Returns 0 and *ret, or negative errno
 * (nothing started). */
int tunnel_new(struct tunnel_registry *registry, sd_event *event, const struct tunnel_params *params,
               const struct tunnel_callbacks *cb, void *userdata, struct tunnel **ret);
/* Closes everything the tunnel holds (sockets, channels, session). NULL is fine. */
void tunnel_free(struct tunnel *t);
void tunnel_get_stats(const struct tunnel *t, struct tunnel_stats *ret);
/* A local forward's accepted connection (fd taken, even on failure): queued for its
 * direct-tcpip channel; a refusal closes it, counted in connections_refused, with the reason
 * in tunnel_get_local_error(). Returns 0, or -ENOTCONN (fd closed) while t is not up. */
int tunnel_open_local(struct tunnel *t, int fd, const char *peer, uint16_t peer_port);
/* The port the relay listens on for the tunnel (its answer to a request for port 0), or 0
 * while the forward is not granted. */
uint16_t tunnel_get_bound_port(const struct tunnel *t);
/* The last local service error ("cannot connect to 127.0.0.1:8080: Connection refused"), or
 * NULL if none yet; *failing: no local connection succeeded since (valid until the next
 * loop turn). */
const char *tunnel_get_local_error(const struct tunnel *t, bool *failing);
/* The session's negotiated cipher and MAC (names valid until the next loop turn), NULL
 * while it is not up; *mac is NULL for an AEAD cipher (aes-gcm, chacha20-poly1305). */
void tunnel_get_algorithms(const struct tunnel *t, const char **cipher, const char **mac);

/* Called once at start-up / exit (libssh2_init / libssh2_exit). */
int tunnel_global_init(void);
void tunnel_global_done(void);
