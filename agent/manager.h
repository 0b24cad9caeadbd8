/* The manager: the set of bindings and each binding's state machine (SPEC §4).
 *
 *   resolving --(API ids known)--> connecting --(forward granted)--> up
 *       ^                              |                              |
 *       +------- backoff <-------------+---------- (session lost) ----+
 *   failed: an error that retrying cannot fix (auth, host key, key file); a config change
 *   (reload, re-add) starts it again.  removing: being torn down.
 *
 * Every binding is independent: its timers, tunnel and API calls are its own. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "conf.h"
#include "protocol.h"
#include "tunnel/tunnel.h"

enum binding_state {
        BINDING_STATE_RESOLVING,
        BINDING_STATE_CONNECTING,
        BINDING_STATE_UP,
        BINDING_STATE_BACKOFF,
        BINDING_STATE_FAILED,
        BINDING_STATE_REMOVING,
        _BINDING_STATE_MAX,
};
const char *binding_state_to_string(enum binding_state s);

struct manager;
struct api;
struct api_call;
struct urlmatch;

/* One tunnel of a binding: in direct mode one per relay of [ssh] server, in API mode one
 * per tunnel of `tunnels = N` (each its own tunnel id and relay port, all to the first
 * relay), each with its own state, backoff and last error, so that one failing never
 * disturbs another. */
#define BINDING_SLOTS_MAX 8
struct binding_slot {
        struct binding *binding;
        size_t index;                   /* direct mode: the relay, conf_relay(config, index, ...) */
        enum binding_state state;       /* resolving (API mode: waiting for the API's answer),
                                         * connecting, up, backoff or failed */
        char *tunnel_id;                /* API mode: its tunnel at the API */
        uint16_t relay_port;            /* API mode: that tunnel's relay port */
        struct tunnel *tunnel;
        sd_event_source *timer;         /* backoff wait, or the stable_after timer while up */
        unsigned failures;              /* consecutive failed attempts: the backoff exponent */
        uint64_t connected_since;       /* realtime usec, 0 when not up */
        uint64_t next_attempt;          /* realtime usec, 0 when not in backoff */
        char *last_error;
};

struct binding {
        struct manager *manager;
        struct binding_conf *conf;
        enum binding_state state;       /* resolving, removing, or derived from the slots */

        struct binding_slot slots[BINDING_SLOTS_MAX];   /* [0, n_slots) in use; never moved, as
                                                         * each is its tunnel's userdata */
        size_t n_slots;
        struct tunnel_limit limit;      /* max_connections, across all the slots */
        bool stopping;                  /* in binding_stop: a tunnel's on_down starts nothing */
        struct api_call *api_call;
        sd_event_source *timer;         /* API mode: the wait after the API could not be asked */

        unsigned failures;              /* consecutive failed attempts: the backoff exponent */
        uint64_t attempts;
        uint64_t reconnects;            /* attempts after the first one */
        uint64_t connected_since;       /* realtime usec, 0 when not up */
        uint64_t next_attempt;          /* realtime usec, 0 when not in backoff */
        char *last_error;
        struct tunnel_stats past;       /* counters of the sessions before the current one */
        struct urlmatch *url_matcher;  /* public_url_pattern compiled, NULL until a line comes */
        char *relay_url;                /* public_url_pattern's match in the relay's log lines */
        char *last_local_error;         /* of an earlier tunnel: kept when the tunnel goes */
        bool local_failing;

        /* API mode: where the relay expects us (from the API, remembered in the state dir);
         * tunnel_id and relay_port are the first tunnel's (each slot has its own). */
        char *socket_id;
        char *tunnel_id;
        char *dnsname;
        char *ssh_user;                 /* the account's user_name, when [ssh] user is unset */
        uint16_t relay_port;
        uint16_t public_port;           /* tcp/tls sockets */
        bool created_socket;            /* we created it, so `remove --purge` may delete it */
        bool temporary;                 /* `connect`: never written to the state dir */
};

/* A `connect` binding is named CONNECT_NAME_PREFIX N (commands.c); the manager purges
 * the sockets of such names left over from an earlier run. */
#define CONNECT_NAME_PREFIX "connect-"

struct manager {
        sd_event *event;
        struct config *config;          /* owned */
        struct binding **bindings;
        size_t n_bindings;
        struct netwatch *netwatch;
        struct tunnel_registry *tunnels;  /* the SSH sessions bindings (and forwards) share */
        struct localfwds *forwards;     /* [forward "NAME"]: local forwards (localfwd.h) */
        struct api *api;
        uint64_t started;               /* realtime usec */
        char hostname[65];              /* for default display names: "NAME on HOSTNAME" */
        gid_t control_gid;              /* (gid_t) -1 if control_group does not exist */
        sd_event_source *status_hold;   /* a failed reload's STATUS= is shown until this fires */
        /* Direct mode: when the next retry round of each relay's shared session is due
         * (CLOCK_MONOTONIC usec; see slot_retry in binding.c). */
        uint64_t relay_retry_at[CONF_RELAYS_MAX];
};

/* How long STATUS= shows why a reload failed before it counts the bindings again. */
#define MANAGER_RELOAD_ERROR_USEC (10 * 1000000ull)

/* Takes ownership of config. Does not start anything yet. Returns 0 or -errno. */
int manager_new(sd_event *event, struct config *config, struct manager **ret);
/* Starts every binding and the network watch (a watch that cannot start is logged). */
void manager_start(struct manager *m);
/* Stops every tunnel and frees everything. NULL is fine. */
void manager_free(struct manager *m);

struct binding *manager_find(struct manager *m, const char *name);

/* Adds a runtime binding: validates it, writes it to the state dir (atomically, before
 * returning; a temporary binding is never written), starts it. Takes ownership of bc on success. On failure returns a negative
 * errno, *code and *error (caller frees) and nothing has changed. */
int manager_add(struct manager *m, struct binding_conf *bc, bool temporary, enum proto_code *code, char **error);
/* Stops and forgets a runtime binding (and with purge, the socket we created at the API).
 * Same error convention as manager_add. */
int manager_remove(struct manager *m, const char *name, bool purge, enum proto_code *code, char **error);

struct reload_result {
        struct strv added, removed, changed, unchanged;
        struct strv retried;            /* unchanged but failed: tried again */
        struct strv warnings;
};
void manager_reload_result_clear(struct reload_result *r);
/* Re-reads the config files and applies the difference. On a bad config returns -EINVAL
 * with every problem in *errors and leaves the running config untouched. */
int manager_reload(struct manager *m, struct reload_result *result, struct strv *errors);

void manager_count(const struct manager *m, unsigned *up, unsigned *failed);
/* Tells systemd (STATUS=) how many bindings are up; called on every state change. */
void manager_update_status(struct manager *m);
/* The session half of a tunnel's params, from [ssh], for relay server:port as user: what
 * tunnel_shareable compares, so a binding and a forward to one relay share one session.
 * The caller adds the tunnel's own fields (name, forward, target). */
struct tunnel_params manager_session_params(const struct manager *m, const char *server, uint16_t port,
                                            const char *user);

/* binding.c: one binding's state machine. */
struct binding *binding_new(struct manager *m, struct binding_conf *bc);   /* takes bc; starts nothing */
void binding_free(struct binding *b);                                       /* stops it first; NULL is fine */
/* Starts an attempt now: resolve at the API (API mode) or connect (direct mode). */
void binding_attempt(struct binding *b);
/* A network change: every tunnel of b in backoff tries again now (the whole binding when
 * it is in backoff). Returns whether anything was retried. */
bool binding_retry_now(struct binding *b);
/* API mode, when only `tunnels` changed: the tunnels that stay keep their sessions, the
 * extra ones stop (and are deleted at the API), new ones start. Else binding_attempt. */
void binding_resize(struct binding *b);
/* Ends the session, the API call and the timers; the state is left to the caller. */
void binding_stop(struct binding *b);
/* Logs the binding's `down` (with why) if it is up; call before stopping it on purpose. */
void binding_going_down(struct binding *b, const char *why);
/* How many of the binding's tunnels are up. */
unsigned binding_tunnels_up(const struct binding *b);
/* Fills the wire view of a binding (caller clears it with proto_binding_clear). */
void binding_to_proto(const struct binding *b, struct proto_binding *ret);
/* https://dnsname for http/https sockets, dnsname:port for tcp/tls; NULL before the API
 * told us (and always in direct mode). Caller frees. */
char *binding_public_url(const struct binding *b);
/* A line the relay printed: when public_url_pattern finds the public address in it, that
 * becomes the binding's public_url (logged when it changes). */
void binding_match_public_url(struct binding *b, const char *line);
