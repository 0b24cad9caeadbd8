/* Every word of the control protocol (docs/PROTOCOL.md): the JSON keys, the commands, their
 * actions and the values a client compares. mysocketd and mysocketctl spell them only
 * through these names, so the two sides cannot disagree; included by protocol.h.
 *
 * A key that means the same in several objects has one name ("name" is an argument, a
 * binding's field and a socket's field). Renaming a value here changes the wire: see
 * PROTOCOL.md's version rules first. */
#pragma once

/* ---- the envelope --------------------------------------------------------------------- */
#define PROTO_KEY_V              "v"
#define PROTO_KEY_CMD            "cmd"
#define PROTO_KEY_OK             "ok"
#define PROTO_KEY_ERROR          "error"
#define PROTO_KEY_CODE           "code"
#define PROTO_KEY_ERRORS         "errors"          /* a refusal's list of sentences */
#define PROTO_KEY_EVENT          "event"           /* a streamed line's object; an event's word */

/* ---- commands ------------------------------------------------------------------------- */
#define PROTO_CMD_LIST           "list"
#define PROTO_CMD_SHOW           "show"
#define PROTO_CMD_STATUS         "status"
#define PROTO_CMD_LOGS           "logs"
#define PROTO_CMD_ADD            "add"
#define PROTO_CMD_REMOVE         "remove"
#define PROTO_CMD_RELOAD         "reload"
#define PROTO_CMD_CONNECT        "connect"
#define PROTO_CMD_LOGIN          "login"
#define PROTO_CMD_ACCOUNT        "account"
#define PROTO_CMD_SOCKET         "socket"
#define PROTO_CMD_TUNNEL         "tunnel"
#define PROTO_CMD_METRICS        "metrics"
#define PROTO_CMD_FORWARD_ADD    "forward_add"
#define PROTO_CMD_FORWARD_LIST   "forward_list"
#define PROTO_CMD_FORWARD_REMOVE "forward_remove"

/* The "action" of socket and tunnel. */
#define PROTO_ACTION_LS          "ls"
#define PROTO_ACTION_CREATE      "create"
#define PROTO_ACTION_DELETE      "delete"

/* ---- arguments (besides the binding fields below) --------------------------------------- */
#define PROTO_KEY_BINDING        "binding"         /* add, connect; show's result; an event's field */
#define PROTO_KEY_PURGE          "purge"           /* remove */
#define PROTO_KEY_FOLLOW         "follow"          /* logs */
#define PROTO_KEY_LINES          "lines"           /* logs */
#define PROTO_KEY_EMAIL          "email"           /* login */
#define PROTO_KEY_ACTION         "action"          /* socket, tunnel */

/* ---- results ---------------------------------------------------------------------------- */
#define PROTO_KEY_BINDINGS       "bindings"        /* list; status's count */
#define PROTO_KEY_REMOVED        "removed"         /* remove; reload's list */
#define PROTO_KEY_STATUS         "status"
#define PROTO_KEY_RELOAD         "reload"
#define PROTO_KEY_WARNINGS       "warnings"        /* reload */
#define PROTO_KEY_EVENTS         "events"          /* logs */
#define PROTO_KEY_ACCOUNT        "account"
#define PROTO_KEY_SOCKETS        "sockets"
#define PROTO_KEY_SOCKET         "socket"
#define PROTO_KEY_TUNNELS        "tunnels"         /* also a socket's field at the API */
#define PROTO_KEY_TUNNEL         "tunnel"
#define PROTO_KEY_METRICS        "metrics"         /* metrics: the Prometheus text */

/* The reload object. */
#define PROTO_KEY_ADDED          "added"
#define PROTO_KEY_CHANGED        "changed"
#define PROTO_KEY_UNCHANGED      "unchanged"
#define PROTO_KEY_RETRIED        "retried"

/* The status object. */
#define PROTO_KEY_VERSION        "version"
#define PROTO_KEY_PID            "pid"
#define PROTO_KEY_STARTED        "started"
#define PROTO_KEY_UPTIME         "uptime"
#define PROTO_KEY_MODE           "mode"
#define PROTO_KEY_CONFIG         "config"
#define PROTO_KEY_CONTROL_SOCKET "control_socket"
#define PROTO_KEY_STATE_DIR      "state_dir"
#define PROTO_KEY_TOKEN_EXPIRY   "token_expiry"
#define PROTO_KEY_PROXY          "proxy"           /* scheme://host:port, never credentials */
#define PROTO_KEY_UP             "up"
#define PROTO_KEY_FAILED         "failed"
#define PROTO_MODE_API           "api"
#define PROTO_MODE_DIRECT        "direct"

/* ---- the binding object (and add's binding spec) ----------------------------------------- */
#define PROTO_KEY_NAME           "name"
#define PROTO_KEY_SOURCE         "source"
#define PROTO_KEY_TYPE           "type"
#define PROTO_KEY_HOST           "host"
#define PROTO_KEY_PORT           "port"
#define PROTO_KEY_STATE          "state"
#define PROTO_KEY_PUBLIC_URL     "public_url"
#define PROTO_KEY_SOCKET_ID      "socket_id"       /* also an argument, and the API's field */
#define PROTO_KEY_TUNNEL_ID      "tunnel_id"       /* likewise */
#define PROTO_KEY_RELAY_PORT     "relay_port"
#define PROTO_KEY_CONNECTED_SINCE "connected_since"
#define PROTO_KEY_RECONNECTS     "reconnects"
#define PROTO_KEY_CONNECTIONS_ACTIVE "connections_active"
#define PROTO_KEY_CONNECTIONS_TOTAL "connections_total"
#define PROTO_KEY_CONNECTIONS_REFUSED "connections_refused"
#define PROTO_KEY_MAX_CONNECTIONS "max_connections"  /* also an argument of add */
#define PROTO_KEY_BYTES_IN       "bytes_in"
#define PROTO_KEY_BYTES_OUT      "bytes_out"
#define PROTO_KEY_LAST_ERROR     "last_error"
#define PROTO_KEY_LOCAL_ERRORS   "local_errors"    /* connections the local service refused or dropped */
#define PROTO_KEY_LAST_LOCAL_ERROR "last_local_error"
#define PROTO_KEY_LOCAL_FAILING  "local_failing"   /* no local connect succeeded since last_local_error */
#define PROTO_KEY_STATES         "states"          /* status: bindings per state */
#define PROTO_KEY_CIPHER         "cipher"
#define PROTO_KEY_MAC            "mac"
#define PROTO_KEY_NEXT_ATTEMPT   "next_attempt"
#define PROTO_KEY_DISPLAY_NAME   "display_name"
#define PROTO_KEY_PROTECTED      "protected"
#define PROTO_KEY_USERNAME       "username"
#define PROTO_KEY_PASSWORD       "password"        /* add and login only: never sent back */
#define PROTO_KEY_REMOTE_PORT    "remote_port"
#define PROTO_KEY_REMOTE_HOST    "remote_host"     /* also an argument of add */
#define PROTO_KEY_EDGE_LOG       "edge_log"        /* add: auto | yes | no */
#define PROTO_KEY_DEFINED_AT     "defined_at"
#define PROTO_KEY_TUNNELS_UP     "tunnels_up"      /* and PROTO_KEY_TUNNELS: how many tunnels */
#define PROTO_KEY_RELAYS         "relays"          /* one object per tunnel: */
#define PROTO_KEY_SERVER         "server"          /* and state, last_error, connected_since,
                                                    * tunnel_id, relay_port */

/* A binding's "source" and "state". */
#define PROTO_SOURCE_CONFIG      "config"
#define PROTO_SOURCE_RUNTIME     "runtime"
#define PROTO_STATE_RESOLVING    "resolving"
#define PROTO_STATE_CONNECTING   "connecting"
#define PROTO_STATE_UP           "up"
#define PROTO_STATE_BACKOFF      "backoff"
#define PROTO_STATE_FAILED       "failed"
#define PROTO_STATE_REMOVING     "removing"

/* ---- the forward object (forward_add's spec is name, listen, target) ----------------------
 * and name, source, state, connected_since, reconnects, connections_active,
 * connections_total, connections_refused (channels the relay refused), bytes_in (relay ->
 * local client), bytes_out, last_error, next_attempt, defined_at as in a binding. */
#define PROTO_KEY_FORWARD        "forward"         /* forward_add's argument and result */
#define PROTO_KEY_FORWARDS       "forwards"        /* forward_list */
#define PROTO_KEY_LISTEN         "listen"
#define PROTO_KEY_TARGET         "target"
#define PROTO_KEY_CONNECTIONS_UNSERVED "connections_unserved"  /* closed at once: relay not up */
#define PROTO_KEY_LAST_REFUSAL   "last_refusal"    /* why the relay last refused a channel */

/* ---- the event object ------------------------------------------------------------------- */
#define PROTO_KEY_TIME           "time"
#define PROTO_KEY_PRIORITY       "priority"
#define PROTO_KEY_MESSAGE        "message"
/* and PROTO_KEY_BINDING, PROTO_KEY_EVENT; the "up" event word is PROTO_EVENT_UP, the one a
 * stream gets in place of lines it was too slow to read PROTO_EVENT_DROPPED */
#define PROTO_EVENT_UP           "up"
#define PROTO_EVENT_DROPPED      "dropped"

/* ---- the API's objects, relayed as the daemon received them (SPEC §8) --------------------
 * account, sockets/socket, tunnels/tunnel carry the API's own field names; these are the
 * ones mysocketctl reads (besides name, socket_id, tunnel_id, tunnels above). */
#define PROTO_API_KEY_DNSNAME          "dnsname"
#define PROTO_API_KEY_SOCKET_TYPE      "socket_type"
#define PROTO_API_KEY_SOCKET_TCP_PORTS "socket_tcp_ports"
#define PROTO_API_KEY_PROTECTED_SOCKET "protected_socket"
#define PROTO_API_KEY_LOCAL_PORT       "local_port"
#define PROTO_API_KEY_TUNNEL_SERVER    "tunnel_server"
#define PROTO_API_KEY_SSHKEY           "sshkey"
