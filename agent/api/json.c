/* The JSON of the mysocket API's replies: the objects, the JWT claims, and the meaning of
 * an HTTP reply (status and body) as an errno and a sentence that is safe to show. */
#include <errno.h>
#include <limits.h>
#include <math.h>   /* isfinite: a macro, no -lm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "scrub.h"
#include "util.h"

#define JWT_MAX 8192

static bool hostname_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 253 && s[0] != '.' && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n;
}

/* The SSH login user: what OpenSSH and the relay accept without quoting surprises. */
static bool user_name_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 64 && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool integral(double d) {
        return d > -1e15 && d < 1e15 && d == (double) (long long) d;
}

enum field_check { CHECK_NONE, CHECK_ID, CHECK_HOSTNAME, CHECK_HOST, CHECK_USER };

/* A host name or an address (IPv6 too): what a tunnel_server may hold once connected. */
static bool host_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 253 && s[0] != '-' && s[0] != '.' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") == n;
}

/* A string field the daemon uses: missing, null or not passing `check` is an error. */
static int get_string(const cJSON *obj, const char *what, const char *key,
                      enum field_check check, char **ret, char **error) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                *error = xasprintf("%s: field \"%s\" is missing", what, key);
                return -EBADMSG;
        }
        if (!cJSON_IsString(v) || !v->valuestring) {
                *error = xasprintf("%s: field \"%s\" is not a string", what, key);
                return -EBADMSG;
        }
        const char *s = v->valuestring;
        if ((check == CHECK_ID && !remote_id_valid(s)) || (check == CHECK_HOSTNAME && !hostname_valid(s)) ||
            (check == CHECK_HOST && !host_valid(s)) || (check == CHECK_USER && !user_name_valid(s)) ||
            strlen(s) > 4096) {
                *error = xasprintf("%s: field \"%s\" has an unexpected value", what, key);
                return -EBADMSG;
        }
        *ret = xstrdup(s);
        return 0;
}

static int get_bool(const cJSON *obj, const char *what, const char *key, bool *ret, char **error) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                *ret = false;
                return 0;
        }
        if (!cJSON_IsBool(v)) {
                *error = xasprintf("%s: field \"%s\" is not a boolean", what, key);
                return -EBADMSG;
        }
        *ret = cJSON_IsTrue(v);
        return 0;
}

/* An informational field: taken when it is a string that passes `check`, else left NULL
 * (empty, null, missing, another shape: the API's informational fields vary, SPEC §8). */
static void get_info_string(const cJSON *obj, const char *key, enum field_check check, char **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
        *ret = NULL;
        if (!s || !s[0] || strlen(s) > 4096 || (check == CHECK_HOSTNAME && !hostname_valid(s)) ||
            (check == CHECK_HOST && !host_valid(s)) || (check == CHECK_USER && !user_name_valid(s)))
                return;
        *ret = xstrdup(s);
}

static bool get_info_bool(const cJSON *obj, const char *key) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static bool port_value(const cJSON *v, uint16_t *ret) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535 ||
            !integral(v->valuedouble))
                return false;
        *ret = (uint16_t) v->valuedouble;
        return true;
}

static int need_object(const cJSON *j, const char *what, char **error) {
        if (cJSON_IsObject(j))
                return 0;
        *error = xasprintf("%s: expected a JSON object", what);
        return -EBADMSG;
}

void apijson_tunnel_clear(struct api_tunnel *t) {
        if (!t)
                return;
        free(t->tunnel_id);
        free(t->tunnel_server);
        *t = (struct api_tunnel) {};
}

int apijson_tunnel(const cJSON *j, struct api_tunnel *ret, char **error) {
        struct api_tunnel t = {};
        int r = need_object(j, "tunnel", error);
        if (r < 0)
                goto out;
        r = get_string(j, "tunnel", "tunnel_id", CHECK_ID, &t.tunnel_id, error);
        if (r < 0)
                goto out;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "local_port");
        if (!port_value(p, &t.local_port)) {
                *error = xasprintf("tunnel: field \"local_port\" is %s", p ? "not a port (1-65535)" : "missing");
                r = -EBADMSG;
                goto out;
        }
        /* Informational: empty on a new tunnel, an address once it has connected. */
        get_info_string(j, "tunnel_server", CHECK_HOST, &t.tunnel_server);
out:
        if (r < 0)
                apijson_tunnel_clear(&t);
        *ret = t;
        return r;
}

void apijson_socket_clear(struct api_socket *s) {
        if (!s)
                return;
        free(s->socket_id);
        free(s->dnsname);
        free(s->name);
        free(s->socket_type);
        free(s->user_name);
        for (size_t i = 0; i < s->n_tunnels; i++)
                apijson_tunnel_clear(&s->tunnels[i]);
        free(s->tunnels);
        *s = (struct api_socket) {};
}

int apijson_socket(const cJSON *j, struct api_socket *ret, char **error) {
        struct api_socket s = {};
        const char *what = "socket";
        int r = need_object(j, what, error);
        if (r < 0)
                goto out;
        if ((r = get_string(j, what, "socket_id", CHECK_ID, &s.socket_id, error)) < 0 ||
            (r = get_string(j, what, "dnsname", CHECK_HOSTNAME, &s.dnsname, error)) < 0 ||
            (r = get_string(j, what, "socket_type", CHECK_NONE, &s.socket_type, error)) < 0 ||
            (r = get_bool(j, what, "protected_socket", &s.protected_, error)) < 0)
                goto out;
        get_info_string(j, "name", CHECK_NONE, &s.name);
        get_info_string(j, "user_name", CHECK_USER, &s.user_name);
        s.cloud_auth = get_info_bool(j, "cloud_authentication_enabled");

        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(j, "socket_tcp_ports"), *p;
        if (ports && !cJSON_IsNull(ports)) {
                if (!cJSON_IsArray(ports)) {
                        *error = xstrdup("socket: field \"socket_tcp_ports\" is not an array");
                        r = -EBADMSG;
                        goto out;
                }
                cJSON_ArrayForEach(p, ports) {
                        uint16_t port;
                        if (!port_value(p, &port)) {
                                *error = xstrdup("socket: field \"socket_tcp_ports\" holds something that is not a port");
                                r = -EBADMSG;
                                goto out;
                        }
                        if (s.tcp_port == 0)
                                s.tcp_port = port;
                }
        }

        const cJSON *tunnels = cJSON_GetObjectItemCaseSensitive(j, "tunnels"), *t;
        if (tunnels && !cJSON_IsNull(tunnels)) {
                if (!cJSON_IsArray(tunnels)) {
                        *error = xstrdup("socket: field \"tunnels\" is not an array");
                        r = -EBADMSG;
                        goto out;
                }
                s.tunnels = xcalloc((size_t) cJSON_GetArraySize(tunnels) + 1, sizeof(*s.tunnels));
                cJSON_ArrayForEach(t, tunnels) {
                        char *e = NULL;
                        r = apijson_tunnel(t, &s.tunnels[s.n_tunnels], &e);
                        if (r < 0) {
                                *error = xasprintf("socket: tunnels[%zu]: %s", s.n_tunnels, e);
                                free(e);
                                goto out;
                        }
                        s.n_tunnels++;
                }
        }
out:
        if (r < 0)
                apijson_socket_clear(&s);
        *ret = s;
        return r;
}

void apijson_user_clear(struct api_user *u) {
        if (!u)
                return;
        free(u->user_id);
        free(u->user_name);
        free(u->name);
        free(u->email);
        *u = (struct api_user) {};
}

int apijson_user(const cJSON *j, struct api_user *ret, char **error) {
        struct api_user u = {};
        int r = need_object(j, "user", error);
        if (r < 0)
                goto out;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "user_id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 1e15 &&
            integral(id->valuedouble))
                u.user_id = xasprintf("%.0f", id->valuedouble);
        else if ((r = get_string(j, "user", "user_id", CHECK_ID, &u.user_id, error)) < 0)
                goto out;
        if ((r = get_string(j, "user", "user_name", CHECK_USER, &u.user_name, error)) < 0)
                goto out;
        get_info_string(j, "name", CHECK_NONE, &u.name);
        get_info_string(j, "email", CHECK_NONE, &u.email);
out:
        if (r < 0)
                apijson_user_clear(&u);
        *ret = u;
        return r;
}

int apijson_token(const cJSON *j, char **ret, char **error) {
        char *token = NULL;
        int r = need_object(j, "login reply", error);
        if (r < 0)
                return r;
        r = get_string(j, "login reply", "token", CHECK_NONE, &token, error);
        if (r < 0)
                return r;
        /* A token goes into an HTTP header and a file: printable ASCII only. */
        size_t n = strlen(token);
        for (size_t i = 0; i < n; i++)
                if (token[i] <= ' ' || token[i] >= 127)
                        n = 0;
        if (n == 0 || n > JWT_MAX) {
                free(token);
                *error = xstrdup("login reply: field \"token\" is not a token");
                return -EBADMSG;
        }
        *ret = token;
        return 0;
}

static int decode_list(const cJSON *j, const char *what, bool sockets, char **error) {
        if (!cJSON_IsArray(j)) {
                *error = xasprintf("%s: expected a JSON array", what);
                return -EBADMSG;
        }
        const cJSON *item;
        size_t i = 0;
        cJSON_ArrayForEach(item, j) {
                char *e = NULL;
                int r;
                if (sockets) {
                        struct api_socket s;
                        r = apijson_socket(item, &s, &e);
                        apijson_socket_clear(&s);
                } else {
                        struct api_tunnel t;
                        r = apijson_tunnel(item, &t, &e);
                        apijson_tunnel_clear(&t);
                }
                if (r < 0) {
                        *error = xasprintf("%s[%zu]: %s", what, i, e);
                        free(e);
                        return r;
                }
                i++;
        }
        return 0;
}

int apijson_socket_list(const cJSON *j, char **error) {
        return decode_list(j, "socket list", true, error);
}

int apijson_tunnel_list(const cJSON *j, char **error) {
        return decode_list(j, "tunnel list", false, error);
}

/* ---- JWT ------------------------------------------------------------------------------ */

static int claim_time(const cJSON *v, uint64_t *ret) {
        /* Up to the year 9999: beyond that it is garbage, and usec would overflow. From
         * 1 s on: a tiny positive exp (1e-80) would become 0 usec, which reads as "no
         * token" (found by tests/fuzz/fuzz-jwt). */
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > 253402300799.0)
                return -EBADMSG;
        *ret = (uint64_t) (v->valuedouble * 1000000.0);
        return 0;
}

void apijson_jwt_claims_clear(struct api_jwt_claims *c) {
        if (!c)
                return;
        free(c->user_id);
        free(c->email);
        *c = (struct api_jwt_claims) {};
}

int apijson_jwt_claims(const char *token, struct api_jwt_claims *ret) {
        struct api_jwt_claims c = {};
        _cleanup_(freep) unsigned char *payload = NULL;
        cJSON *j = NULL;
        ssize_t len;
        int r = -EINVAL;

        *ret = c;
        if (!token || strnlen(token, JWT_MAX + 1) > JWT_MAX)
                return -EINVAL;
        const char *dot1 = strchr(token, '.');
        const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (!dot1 || !dot2 || strchr(dot2 + 1, '.') || dot1 == token || dot2 == dot1 + 1)
                return -EINVAL;
        /* base64url without padding (RFC 7515 §2); trailing '=' tolerated. */
        if ((len = base64_decode(dot1 + 1, (size_t) (dot2 - dot1 - 1), true, &payload)) < 0)
                return -EINVAL;
        if (strlen((char *) payload) != (size_t) len)       /* embedded NUL */
                return -EINVAL;
        j = cJSON_ParseWithLength((char *) payload, (size_t) len);
        if (!cJSON_IsObject(j))
                goto out;
        r = -EBADMSG;
        if (claim_time(cJSON_GetObjectItemCaseSensitive(j, "exp"), &c.exp) < 0)
                goto out;
        const cJSON *iat = cJSON_GetObjectItemCaseSensitive(j, "iat");
        if (iat && claim_time(iat, &c.iat) < 0)
                goto out;
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(j, "user_id");
        if (cJSON_IsString(uid) && remote_id_valid(uid->valuestring))
                c.user_id = xstrdup(uid->valuestring);
        else if (cJSON_IsNumber(uid) && uid->valuedouble >= 0 && uid->valuedouble < 1e15 &&
                 integral(uid->valuedouble))
                c.user_id = xasprintf("%.0f", uid->valuedouble);
        else if (uid && !cJSON_IsNull(uid))
                goto out;
        const cJSON *email = cJSON_GetObjectItemCaseSensitive(j, "email");
        if (cJSON_IsString(email) && strlen(email->valuestring) < 256)
                c.email = xstrdup(email->valuestring);
        r = 0;
        *ret = c;
out:
        if (r < 0)
                apijson_jwt_claims_clear(&c);
        cJSON_Delete(j);
        return r;
}

int apijson_jwt_end(const struct api_jwt_claims *c, uint64_t now, uint64_t margin, uint64_t tolerance,
                    uint64_t *ret, int64_t *skew) {
        bool skewed = c->iat && (c->iat > now + tolerance || now > c->iat + tolerance);
        *skew = skewed ? (int64_t) (c->iat - now) : 0;
        if (c->iat ? c->exp <= c->iat + margin : c->exp <= now + margin)
                return -EKEYEXPIRED;
        *ret = skewed ? now + (c->exp - c->iat) : c->exp;
        return 0;
}

/* ---- the meaning of a reply --------------------------------------------------------------- */

#define QUOTE_MIN 6            /* a sent string this long found in a message: it quotes us */
#define QUOTE_WINDOW 16        /* ... or this many bytes of the body we sent */

static bool quotes_value(const cJSON *j, const char *msg) {
        const cJSON *i;
        if (cJSON_IsString(j) && j->valuestring && strlen(j->valuestring) >= QUOTE_MIN &&
            strstr(msg, j->valuestring))
                return true;
        cJSON_ArrayForEach(i, j)
                if (quotes_value(i, msg))
                        return true;
        return false;
}

/* Whether msg holds any part of `sent` worth hiding: one of its string values, or a
 * stretch of its text (an API that echoes the raw body, escaped or not). */
static bool quotes_sent(const char *msg, const char *sent) {
        if (!sent)
                return false;
        size_t n = strlen(msg), sn = strlen(sent);
        for (size_t i = 0; i + QUOTE_WINDOW <= n; i++)
                if (memmem(sent, sn, msg + i, QUOTE_WINDOW))
                        return true;
        cJSON *j = cJSON_Parse(sent);
        bool r = quotes_value(j, msg);
        cJSON_Delete(j);
        return r;
}

static const char *json_message(const cJSON *j) {
        static const char *const keys[] = { "message", "error" };
        for (size_t i = 0; cJSON_IsObject(j) && i < ELEMENTSOF(keys); i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
                if (cJSON_IsString(v) && v->valuestring[0])
                        return v->valuestring;
        }
        return NULL;
}

static int map_status(long status) {
        if (status == 401)
                return -EACCES;
        if (status == 403)
                return -EPERM;
        if (status == 404)
                return -ENOENT;
        if (status >= 500)
                return -EREMOTEIO;
        return -EINVAL;
}

int apijson_reply(const char *what, long status, const char *body, size_t len, const char *ctype,
                  const char *sent, cJSON **json, char **message) {
        cJSON *j = len > 0 ? cJSON_ParseWithLengthOpts(body, len + 1, NULL, true) : NULL;
        _cleanup_(freep) char *ctype_safe = sanitize_text(ctype ? ctype : "no content type", 64);

        *json = NULL;
        *message = NULL;
        if (len > 0 && !j) {
                *message = xasprintf("API returned HTTP %ld with a non-JSON body (%s) for %s",
                                     status, ctype_safe, what);
                return status >= 200 && status < 300 ? -EBADMSG : map_status(status);
        }
        if (status >= 200 && status < 300) {
                *json = j;
                return 0;
        }
        const char *m = json_message(j);
        /* Scrubbed whole, then cut: a secret cut in half would no longer be found. */
        _cleanup_(freep) char *whole = m ? scrub_secrets(xstrdup(m)) : NULL;
        _cleanup_(freep) char *safe = whole ? sanitize_text(whole, API_MESSAGE_MAX) : NULL;
        if (safe && quotes_sent(safe, sent))
                *message = xasprintf("API returned HTTP %ld for %s (its message quoted our request, "
                                     "so it is not shown)", status, what);
        else if (safe)
                *message = xasprintf("API returned HTTP %ld for %s: %s", status, what, safe);
        else
                *message = xasprintf("API returned HTTP %ld for %s", status, what);
        if (whole)
                explicit_bzero(whole, strlen(whole));
        cJSON_Delete(j);
        return map_status(status);
}
