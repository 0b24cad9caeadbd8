/* The JSON of the mysocket API's replies: the objects the daemon uses, the JWT claims, and
 * what an HTTP reply means (status, body) as an errno and a sentence safe to show.
 * Pure functions: no I/O, unit-tested and fuzzed apart from the transport. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define API_MESSAGE_MAX 200            /* the most of an API's own message that is quoted */

/* ---- decoded API objects (strings owned by the struct) --------------------------------- */

struct api_tunnel {
        char *tunnel_id;
        uint16_t local_port;           /* the relay port */
        char *tunnel_server;           /* informational: NULL unless a host name or address */
};

struct api_socket {
        char *socket_id;
        char *dnsname;
        char *name;                    /* informational, may be NULL */
        char *socket_type;             /* http|https|tcp|tls (others are kept as given) */
        uint16_t tcp_port;             /* socket_tcp_ports[0], 0 when none */
        bool protected_;
        bool cloud_auth;               /* informational */
        struct api_tunnel *tunnels;
        size_t n_tunnels;
        char *user_name;               /* informational (POST /connect only), may be NULL */
};

struct api_user {
        char *user_id;
        char *user_name;               /* the SSH login user */
        char *name;                    /* informational, may be NULL */
        char *email;                   /* informational, may be NULL */
};

struct api_jwt_claims {
        uint64_t exp;                  /* realtime usec */
        uint64_t iat;                  /* realtime usec, 0 when absent */
        char *user_id;                 /* NULL when absent; numbers are turned into strings */
        char *email;                   /* NULL when absent */
};

/* Each decoder validates what the daemon uses (types, shapes, a safe character set for
 * identifiers, since they end up in URLs, file names and SSH) and returns 0, or -EBADMSG
 * with *error set to a sentence naming the field ("socket: field \"dnsname\" is missing";
 * caller frees). Informational fields (marked above) are taken when they are a usable
 * string and left NULL/false when empty, null, missing or of another shape. On failure
 * the output struct is left cleared. */
int apijson_tunnel(const cJSON *j, struct api_tunnel *ret, char **error);
int apijson_socket(const cJSON *j, struct api_socket *ret, char **error);
int apijson_user(const cJSON *j, struct api_user *ret, char **error);
int apijson_token(const cJSON *j, char **ret, char **error);          /* {token} */
int apijson_socket_list(const cJSON *j, char **error);                 /* validates only */
int apijson_tunnel_list(const cJSON *j, char **error);                 /* validates only */
void apijson_tunnel_clear(struct api_tunnel *t);
void apijson_socket_clear(struct api_socket *s);
void apijson_user_clear(struct api_user *u);

/* Reads the claims of a JWT without verifying its signature (we hold no key): base64url of
 * the middle segment, a JSON object with a numeric `exp`. Returns 0, -EINVAL (not a JWT,
 * bad base64, not JSON) or -EBADMSG (no/bad exp). Fuzzed; accepts any input. */
int apijson_jwt_claims(const char *token, struct api_jwt_claims *ret);
void apijson_jwt_claims_clear(struct api_jwt_claims *c);
/* When a token with these claims ends by our clock (`now`, realtime usec). A token carries
 * its lifetime (exp - iat): when iat is more than `tolerance` from now the clocks differ,
 * and that lifetime counted from now is what the API will honour (*skew is then iat - now,
 * else 0). Returns 0 and *ret, or -EKEYEXPIRED when it lasts no longer than `margin` (from
 * iat, or from now without iat). */
int apijson_jwt_end(const struct api_jwt_claims *c, uint64_t now, uint64_t margin, uint64_t tolerance,
                    uint64_t *ret, int64_t *skew);

/* What an HTTP reply to `what` ("POST /socket") means. For a 2xx: returns 0 and *json (the
 * parsed body, NULL when empty; caller frees), or -EBADMSG for a body that is not JSON.
 * Otherwise the errno of api.h's table (401 -EACCES, 403 -EPERM, 404 -ENOENT, 5xx
 * -EREMOTEIO, other -EINVAL). On failure *message (caller frees) holds the status, `what`
 * and at most API_MESSAGE_MAX printable bytes of the API's own "message"/"error" field,
 * dropped when it quotes any string of `sent` (the request body we sent, may be NULL) or
 * a stretch of `sent` itself: an API that echoes our request must not put our password
 * into a log. Known secrets are scrubbed as well. */
int apijson_reply(const char *what, long status, const char *body, size_t len, const char *ctype,
                  const char *sent, cJSON **json, char **message);
