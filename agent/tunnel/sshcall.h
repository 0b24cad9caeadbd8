/* Every libssh2 call of the engine, behind one small face (after chrony's tls.h): besides
 * hostkey.c this is the only file that includes <libssh2.h>.
 *
 * An sshcall is the libssh2 side of one TCP connection to a relay: the LIBSSH2_SESSION, our
 * socket callbacks (the input budget per dispatch, the read-ahead, liveness, EOF and errno
 * that libssh2 hides), the method preferences, the table of libssh2 errors and the
 * one-pending-call discipline that libssh2 1.10 demands. Every call returns >= 0 on
 * success, SSHCALL_AGAIN_INPUT / SSHCALL_AGAIN_OUTPUT when it must be made again (with the
 * same arguments) once the socket is readable / writable, or a negative errno; after any
 * error, sshcall_ended() says whether the whole session is over (else only that channel or
 * request failed). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "tunnel.h"

#define SSHCALL_AGAIN_INPUT  (-20001)
#define SSHCALL_AGAIN_OUTPUT (-20002)
static inline bool sshcall_again(ssize_t r) {
        return r == SSHCALL_AGAIN_INPUT || r == SSHCALL_AGAIN_OUTPUT;
}

/* Input handed to libssh2 per event dispatch: past it every read says "again" and the caller
 * resumes on the next loop turn, so no peer that sends faster than we parse holds the loop. */
#define SSHCALL_RX_BUDGET (1024 * 1024)
/* RFC 4253 4.2 lets a server send text lines before its version line; OpenSSH gives up after
 * 1024 of them, and so do we. */
#define SSHCALL_PREVERSION_LINES_MAX 1024
#define SSHCALL_PREVERSION_BYTES_MAX (256 * 1024)
/* A whole handshake takes a few KiB (version, KEXINIT, the key exchange reply with the host
 * key); a relay that sends more without finishing it is flooding. */
#define SSHCALL_HANDSHAKE_BYTES_MAX (1024 * 1024)
#define SSHCALL_SEND_LOWAT (128 * 1024)     /* TCP_NOTSENT_LOWAT on the session socket */

/* libssh2's own types, by their struct tags (no libssh2.h needed to hold a pointer). */
typedef struct _LIBSSH2_CHANNEL sshcall_channel;
typedef struct _LIBSSH2_LISTENER sshcall_listener;

struct sshcall;

/* The calls that go through the one-pending-call discipline. libssh2 1.10 keeps exactly one
 * partially sent packet per session and, when a *different* call comes along, flushes the
 * old packet and reports the new one as sent without sending it. So when a call leaves an
 * outgoing packet pending it is recorded, and it is the only call to make until it is done. */
enum sshcall_kind {
        SSHCALL_NONE,
        SSHCALL_ACCEPT,       /* forward_accept on .listener: a pure read */
        SSHCALL_READ,         /* channel_read into .buf/.len (may send a window adjust) */
        SSHCALL_WRITE,
        SSHCALL_EOF,
        SSHCALL_ADJUST,       /* receive window adjust by .len */
        SSHCALL_FREE,         /* channel_free: EOF + CLOSE, waits for the peer's CLOSE */
        SSHCALL_PROBE,        /* "env" request with want_reply: the liveness probe */
        SSHCALL_KEEPALIVE,
        SSHCALL_LISTEN,       /* tcpip-forward .host:.port; result in sshcall_listened() */
        SSHCALL_CANCEL,       /* cancel-tcpip-forward of .listener */
        SSHCALL_OPEN_SESSION, /* a session channel; result in sshcall_opened() */
        SSHCALL_SHELL,        /* "shell" request on .ch */
        SSHCALL_OPEN_DIRECT,  /* a direct-tcpip channel to .host:.port from .shost:.sport (a local
                               * forward's connection); result in sshcall_opened() */
        /* Recorded only: a reply libssh2 queued by itself (open confirmation, window adjust,
         * rekey) is half sent, and only a pure read (an accept, or a read on a channel that
         * sends nothing) may resume it. */
        SSHCALL_RESUME,
};

struct sshcall_op {
        enum sshcall_kind kind;
        void *owner;                  /* whose call it is (a bridge), for sshcall_forget() */
        sshcall_channel *ch;
        sshcall_listener *listener;
        char *buf;
        size_t len;
        const char *host;             /* SSHCALL_LISTEN, SSHCALL_OPEN_DIRECT */
        uint16_t port;
        const char *shost;            /* SSHCALL_OPEN_DIRECT: the originator */
        uint16_t sport;
};

/* A fresh libssh2 session on the connected socket fd (not taken over: the caller closes it). */
int sshcall_new(sd_event *event, int fd, struct sshcall **ret);
/* Ends the session: a polite disconnect when nothing is half sent and `polite`, then every
 * libssh2 resource is freed with I/O that fails at once (never blocks). NULL is fine. */
void sshcall_free(struct sshcall *c, bool polite);

/* Around every event dispatch that may call libssh2: begin resets the input budget; end
 * returns true when input is left that no epoll event will announce (the budget ran out, or
 * the read-ahead holds bytes): the caller must come back on the next loop turn. */
void sshcall_dispatch_begin(struct sshcall *c);
bool sshcall_dispatch_end(struct sshcall *c);
/* After begin, for a dispatch that is not the relay socket's own: the socket counts as read
 * dry (its level-triggered EPOLLIN brings any input to a dispatch of its own), so the calls
 * made here cost no recv that says EAGAIN. The read-ahead is still handed over. */
void sshcall_dispatch_dry(struct sshcall *c);
/* Between hold and push, libssh2's packets after the first are sent with MSG_MORE: the
 * kernel sends full segments only, and push sends the rest. libssh2 sends each packet as it
 * makes it (a connection's confirmation, data, EOF and close are four); held over a
 * dispatch, the packets of every connection served in it leave in as few segments as they
 * fill, and the relay reads them in one go, as it does from OpenSSH, which writes its output
 * buffer once per loop turn. The first goes at once: a lone packet (a channel confirmation,
 * whose answer may come back within the dispatch) waits for nothing and needs no push.
 * Every hold must be followed by a push before the loop waits. */
void sshcall_hold(struct sshcall *c);
void sshcall_push(struct sshcall *c);

/* Session setup. handshake: 0 when done; -EPROTO after a pre-version flood (see
 * sshcall_preversion()). auth: 0, -EACCES (the relay refused the key on a live connection),
 * -ENOKEY (the key file is unusable), or another error. */
int sshcall_handshake(struct sshcall *c);
int sshcall_verify_hostkey(struct sshcall *c, const struct tunnel_params *p, char **ret_message);
int sshcall_auth(struct sshcall *c, const char *user, const char *public_key, const char *private_key);
void sshcall_keepalive_config(struct sshcall *c, unsigned interval);
/* The negotiated cipher and MAC (client to server), NULL each when not known; *mac is NULL
 * for an AEAD cipher (aes-gcm, chacha20-poly1305), which has no separate MAC. */
void sshcall_algorithms(struct sshcall *c, const char **cipher, const char **mac);
/* Whether the relay flooded text before its version line, with how much. */
bool sshcall_preversion(const struct sshcall *c, unsigned *lines, size_t *bytes);
/* Whether it sent more than SSHCALL_HANDSHAKE_BYTES_MAX without finishing the handshake. */
bool sshcall_handshake_flood(const struct sshcall *c, size_t *bytes);

/* Runs one call, recording it as pending when it leaves a packet half sent. */
ssize_t sshcall_run(struct sshcall *c, struct sshcall_op op);
/* The pending call, to be made again (and nothing else) until it completes; NULL if none. */
const struct sshcall_op *sshcall_pending(const struct sshcall *c);
/* owner is gone: its pending call, if any, becomes SSHCALL_RESUME. */
void sshcall_forget(struct sshcall *c, const void *owner);
sshcall_channel *sshcall_accepted(struct sshcall *c);      /* of the last ACCEPT; taken */
sshcall_channel *sshcall_opened(struct sshcall *c);        /* of the last OPEN_SESSION/OPEN_DIRECT; taken */
sshcall_listener *sshcall_listened(struct sshcall *c, int *bound_port);   /* of LISTEN; taken */

/* Channels. */
bool sshcall_channel_eof(sshcall_channel *ch);
unsigned long sshcall_window_read(sshcall_channel *ch);
unsigned long sshcall_window_write(sshcall_channel *ch);
void sshcall_merge_stderr(sshcall_channel *ch, bool merge);   /* merge, else ignore stderr */

/* State. */
bool sshcall_ended(const struct sshcall *c);          /* a session-ending error was seen */
int sshcall_end_errno(const struct sshcall *c);       /* why (negative errno) */
bool sshcall_closed_by_peer(const struct sshcall *c); /* the socket saw EOF */
bool sshcall_socket_broken(const struct sshcall *c);  /* the socket saw EOF or an error */
const char *sshcall_message(const struct sshcall *c); /* libssh2's last error text */
uint64_t sshcall_rx_gen(const struct sshcall *c);     /* bumped by every byte libssh2 takes */
uint64_t sshcall_last_rx(const struct sshcall *c);    /* CLOCK_MONOTONIC usec of the last byte */
bool sshcall_wants_output(const struct sshcall *c);   /* poll for EPOLLOUT */
bool sshcall_send_room(struct sshcall *c);            /* the kernel takes more without queueing */

int sshcall_global_init(void);
void sshcall_global_done(void);
