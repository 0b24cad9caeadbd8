/* The shapes of the mysocket API objects, the JWT claims and the per-binding ids file.
 * Pure functions (no I/O but the ids file), so they can be unit-tested and fuzzed apart
 * from the HTTP machinery in api.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>   /* isfinite: a macro, no -lm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "util.h"

#define JWT_MAX 8192

/* Ids end up in URL paths and file names: no '/', '.', '%' or spaces. */
static bool id_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > API_ID_MAX)
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

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

enum field_check { CHECK_NONE, CHECK_ID, CHECK_HOSTNAME, CHECK_USER };

/* A string field. required: missing/null is an error; otherwise *ret stays NULL. */
static int get_string(const cJSON *obj, const char *what, const char *key, bool required,
                      enum field_check check, char **ret, char **error) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
                if (!required)
                        return 0;
                *error = xasprintf("%s: field \"%s\" is missing", what, key);
                return -EBADMSG;
        }
        if (!cJSON_IsString(v) || !v->valuestring) {
                *error = xasprintf("%s: field \"%s\" is not a string", what, key);
                return -EBADMSG;
        }
        const char *s = v->valuestring;
        if ((check == CHECK_ID && !id_valid(s)) || (check == CHECK_HOSTNAME && !hostname_valid(s)) ||
            (check == CHECK_USER && !user_name_valid(s)) || strlen(s) > 4096) {
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

void api_tunnel_clear(struct api_tunnel *t) {
        if (!t)
                return;
        free(t->tunnel_id);
        free(t->tunnel_server);
        *t = (struct api_tunnel) {};
}

int api_decode_tunnel(const cJSON *j, struct api_tunnel *ret, char **error) {
        struct api_tunnel t = {};
        int r = need_object(j, "tunnel", error);
        if (r < 0)
                goto out;
        r = get_string(j, "tunnel", "tunnel_id", true, CHECK_ID, &t.tunnel_id, error);
        if (r < 0)
                goto out;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "local_port");
        if (!port_value(p, &t.local_port)) {
                *error = xasprintf("tunnel: field \"local_port\" is %s", p ? "not a port (1-65535)" : "missing");
                r = -EBADMSG;
                goto out;
        }
        r = get_string(j, "tunnel", "tunnel_server", false, CHECK_HOSTNAME, &t.tunnel_server, error);
out:
        if (r < 0)
                api_tunnel_clear(&t);
        *ret = t;
        return r;
}

void api_socket_clear(struct api_socket *s) {
        if (!s)
                return;
        free(s->socket_id);
        free(s->dnsname);
        free(s->name);
        free(s->socket_type);
        free(s->user_name);
        for (size_t i = 0; i < s->n_tunnels; i++)
                api_tunnel_clear(&s->tunnels[i]);
        free(s->tunnels);
        *s = (struct api_socket) {};
}

int api_decode_socket(const cJSON *j, struct api_socket *ret, char **error) {
        struct api_socket s = {};
        const char *what = "socket";
        int r = need_object(j, what, error);
        if (r < 0)
                goto out;
        if ((r = get_string(j, what, "socket_id", true, CHECK_ID, &s.socket_id, error)) < 0 ||
            (r = get_string(j, what, "dnsname", true, CHECK_HOSTNAME, &s.dnsname, error)) < 0 ||
            (r = get_string(j, what, "socket_type", true, CHECK_NONE, &s.socket_type, error)) < 0 ||
            (r = get_string(j, what, "name", false, CHECK_NONE, &s.name, error)) < 0 ||
            (r = get_string(j, what, "user_name", false, CHECK_USER, &s.user_name, error)) < 0 ||
            (r = get_bool(j, what, "protected_socket", &s.protected_, error)) < 0 ||
            (r = get_bool(j, what, "cloud_authentication_enabled", &s.cloud_auth, error)) < 0)
                goto out;

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
                        r = api_decode_tunnel(t, &s.tunnels[s.n_tunnels], &e);
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
                api_socket_clear(&s);
        *ret = s;
        return r;
}

void api_user_clear(struct api_user *u) {
        if (!u)
                return;
        free(u->user_id);
        free(u->user_name);
        free(u->name);
        free(u->email);
        *u = (struct api_user) {};
}

int api_decode_user(const cJSON *j, struct api_user *ret, char **error) {
        struct api_user u = {};
        int r = need_object(j, "user", error);
        if (r < 0)
                goto out;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "user_id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 1e15 &&
            integral(id->valuedouble))
                u.user_id = xasprintf("%.0f", id->valuedouble);
        else if ((r = get_string(j, "user", "user_id", true, CHECK_ID, &u.user_id, error)) < 0)
                goto out;
        if ((r = get_string(j, "user", "user_name", true, CHECK_USER, &u.user_name, error)) < 0 ||
            (r = get_string(j, "user", "name", false, CHECK_NONE, &u.name, error)) < 0 ||
            (r = get_string(j, "user", "email", false, CHECK_NONE, &u.email, error)) < 0)
                goto out;
out:
        if (r < 0)
                api_user_clear(&u);
        *ret = u;
        return r;
}

int api_decode_token(const cJSON *j, char **ret, char **error) {
        char *token = NULL;
        int r = need_object(j, "login reply", error);
        if (r < 0)
                return r;
        r = get_string(j, "login reply", "token", true, CHECK_NONE, &token, error);
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
                        r = api_decode_socket(item, &s, &e);
                        api_socket_clear(&s);
                } else {
                        struct api_tunnel t;
                        r = api_decode_tunnel(item, &t, &e);
                        api_tunnel_clear(&t);
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

int api_decode_socket_list(const cJSON *j, char **error) {
        return decode_list(j, "socket list", true, error);
}

int api_decode_tunnel_list(const cJSON *j, char **error) {
        return decode_list(j, "tunnel list", false, error);
}

/* ---- JWT ------------------------------------------------------------------------------ */

static int b64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-' || c == '+')
                return 62;
        if (c == '_' || c == '/')
                return 63;
        return -1;
}

/* base64url without padding (RFC 7515 §2); trailing '=' tolerated. NUL-terminates. */
static int b64url_decode(const char *s, size_t n, char **ret, size_t *ret_len) {
        while (n > 0 && s[n - 1] == '=')
                n--;
        if (n % 4 == 1)
                return -EINVAL;
        char *out = xmalloc(n * 3 / 4 + 1);
        size_t len = 0;
        uint32_t acc = 0;
        unsigned bits = 0;
        for (size_t i = 0; i < n; i++) {
                int v = b64url_value(s[i]);
                if (v < 0) {
                        free(out);
                        return -EINVAL;
                }
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[len++] = (char) ((acc >> bits) & 0xff);
                }
        }
        out[len] = '\0';
        *ret = out;
        *ret_len = len;
        return 0;
}

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

void api_jwt_claims_clear(struct api_jwt_claims *c) {
        if (!c)
                return;
        free(c->user_id);
        free(c->email);
        *c = (struct api_jwt_claims) {};
}

int api_jwt_claims(const char *token, struct api_jwt_claims *ret) {
        struct api_jwt_claims c = {};
        _cleanup_(freep) char *payload = NULL;
        cJSON *j = NULL;
        size_t len;
        int r = -EINVAL;

        *ret = c;
        if (!token || strnlen(token, JWT_MAX + 1) > JWT_MAX)
                return -EINVAL;
        const char *dot1 = strchr(token, '.');
        const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (!dot1 || !dot2 || strchr(dot2 + 1, '.') || dot1 == token || dot2 == dot1 + 1)
                return -EINVAL;
        if (b64url_decode(dot1 + 1, (size_t) (dot2 - dot1 - 1), &payload, &len) < 0)
                return -EINVAL;
        if (strlen(payload) != len)                 /* embedded NUL */
                return -EINVAL;
        j = cJSON_ParseWithLength(payload, len);
        if (!cJSON_IsObject(j))
                goto out;
        r = -EBADMSG;
        if (claim_time(cJSON_GetObjectItemCaseSensitive(j, "exp"), &c.exp) < 0)
                goto out;
        const cJSON *iat = cJSON_GetObjectItemCaseSensitive(j, "iat");
        if (iat && claim_time(iat, &c.iat) < 0)
                goto out;
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(j, "user_id");
        if (cJSON_IsString(uid) && id_valid(uid->valuestring))
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
                api_jwt_claims_clear(&c);
        cJSON_Delete(j);
        return r;
}

/* ---- STATE_DIR/ids/NAME.json ---------------------------------------------------------- */

static char *ids_path(const char *state_dir, const char *name) {
        return xasprintf("%s/ids/%s.json", state_dir, name);
}

int api_ids_load(const char *state_dir, const char *name, char **socket_id, char **tunnel_id,
                 bool *created) {
        if (!binding_name_valid(name))
                return -EINVAL;
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        char buf[4096];
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);   /* a FIFO must not block */
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        int saved = errno;
        close(fd);
        if (n < 0)
                return -saved;
        buf[n] = '\0';

        cJSON *j = cJSON_ParseWithLength(buf, (size_t) n);
        char *sid = NULL, *tid = NULL, *e = NULL;
        bool c = false;
        int r = -EBADMSG;
        if (!cJSON_IsObject(j) ||
            get_string(j, "ids", "socket_id", true, CHECK_ID, &sid, &e) < 0 ||
            get_string(j, "ids", "tunnel_id", false, CHECK_ID, &tid, &e) < 0 ||
            get_bool(j, "ids", "created", &c, &e) < 0)
                goto out;
        *socket_id = sid;
        *tunnel_id = tid;
        *created = c;
        sid = tid = NULL;
        r = 0;
out:
        free(e);
        free(sid);
        free(tid);
        cJSON_Delete(j);
        return r;
}

int api_ids_save(const char *state_dir, const char *name, const char *socket_id,
                 const char *tunnel_id, bool created) {
        if (!binding_name_valid(name) || !socket_id || !id_valid(socket_id) ||
            (tunnel_id && !id_valid(tunnel_id)))
                return -EINVAL;
        _cleanup_(freep) char *dir = xasprintf("%s/ids", state_dir);
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "socket_id", socket_id);
        if (tunnel_id)
                cJSON_AddStringToObject(j, "tunnel_id", tunnel_id);
        else
                cJSON_AddNullToObject(j, "tunnel_id");
        cJSON_AddBoolToObject(j, "created", created);
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        if (!text)
                abort();
        _cleanup_(freep) char *data = xasprintf("%s\n", text);
        cJSON_free(text);
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        return write_file_atomic(path, data, strlen(data), 0600);
}

int api_ids_remove(const char *state_dir, const char *name) {
        if (!binding_name_valid(name))
                return -EINVAL;
        _cleanup_(freep) char *path = ids_path(state_dir, name);
        return unlink_durable(path);
}
