/* libFuzzer target for the mysocket API decoders (agent/api/json.c).
 *
 * The input is a reply body as the API (or anything posing as it) might send. It is
 * parsed with cJSON, as api.c does, and every decoder runs on the document and on each
 * object or array inside it. Beyond "no crash, no leak" it checks the contract of api/json.h:
 * a refusal says why and leaves the output cleared; an acceptance holds every required
 * field, with identifiers in the safe character set (they end up in URLs, file names and
 * the SSH login). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "util.h"

#define CHECK(cond, ...)                                                        \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "fuzz-api-json: " __VA_ARGS__);         \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

static bool safe(const char *s, const char *extra, size_t max) {
        static const char base[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if (!strchr(base, *p) && !strchr(extra, *p))
                        return false;
        return true;
}

static bool id_ok(const char *s) {
        return s && safe(s, "_-", REMOTE_ID_MAX);
}

static void refused(int r, char *error, const char *what) {
        CHECK(r == -EBADMSG, "%s: refused with %d, not -EBADMSG", what, r);
        CHECK(error && *error, "%s: refused without a reason", what);
        free(error);
}

static void check_tunnel(const struct api_tunnel *t) {
        CHECK(id_ok(t->tunnel_id), "tunnel accepted with tunnel_id \"%s\"", t->tunnel_id);
        CHECK(t->local_port > 0, "tunnel accepted without local_port");
        CHECK(!t->tunnel_server || (safe(t->tunnel_server, ".-:", 253) && t->tunnel_server[0] != '.' &&
                                    t->tunnel_server[0] != '-'),
              "tunnel accepted with tunnel_server \"%s\"", t->tunnel_server);
}

static void decode_all(const cJSON *j) {
        char *error = NULL;
        int r;

        struct api_tunnel t;
        memset(&t, 0x5a, sizeof(t));            /* garbage: the decoder must set every field */
        r = apijson_tunnel(j, &t, &error);
        if (r == 0) {
                CHECK(!error, "tunnel accepted with an error");
                check_tunnel(&t);
        } else {
                refused(r, error, "tunnel");
                CHECK(!t.tunnel_id && !t.tunnel_server && !t.local_port, "refused tunnel not cleared");
        }
        apijson_tunnel_clear(&t);
        error = NULL;

        struct api_socket s;
        memset(&s, 0x5a, sizeof(s));
        r = apijson_socket(j, &s, &error);
        if (r == 0) {
                CHECK(!error, "socket accepted with an error");
                CHECK(id_ok(s.socket_id), "socket accepted with socket_id \"%s\"", s.socket_id);
                CHECK(s.dnsname && safe(s.dnsname, ".-", 253), "socket accepted with dnsname \"%s\"", s.dnsname);
                CHECK(s.socket_type, "socket accepted without socket_type");
                CHECK(!s.user_name || safe(s.user_name, "._-", 64), "socket accepted with user_name \"%s\"",
                      s.user_name);
                const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "tunnels");
                CHECK(s.n_tunnels == (size_t) cJSON_GetArraySize(ts), "socket: %zu of %d tunnels decoded",
                      s.n_tunnels, cJSON_GetArraySize(ts));
                for (size_t i = 0; i < s.n_tunnels; i++)
                        check_tunnel(&s.tunnels[i]);
        } else {
                refused(r, error, "socket");
                CHECK(!s.socket_id && !s.dnsname && !s.name && !s.socket_type && !s.tunnels && !s.n_tunnels &&
                      !s.user_name, "refused socket not cleared");
        }
        apijson_socket_clear(&s);
        error = NULL;

        struct api_user u;
        memset(&u, 0x5a, sizeof(u));
        r = apijson_user(j, &u, &error);
        if (r == 0) {
                CHECK(!error, "user accepted with an error");
                CHECK(id_ok(u.user_id), "user accepted with user_id \"%s\"", u.user_id);
                CHECK(u.user_name && safe(u.user_name, "._-", 64) && u.user_name[0] != '-',
                      "user accepted with user_name \"%s\"", u.user_name);
        } else {
                refused(r, error, "user");
                CHECK(!u.user_id && !u.user_name && !u.name && !u.email, "refused user not cleared");
        }
        apijson_user_clear(&u);
        error = NULL;

        char *token = NULL;
        r = apijson_token(j, &token, &error);
        if (r == 0) {
                CHECK(!error && token && *token && strlen(token) <= 8192, "token accepted badly");
                for (const char *p = token; *p; p++)
                        CHECK(*p > ' ' && *p < 127, "token accepted with byte 0x%02x", (unsigned char) *p);
                free(token);
        } else {
                refused(r, error, "token");
                CHECK(!token, "refused token returned");
        }
        error = NULL;

        r = apijson_socket_list(j, &error);
        if (r < 0)
                refused(r, error, "socket list");
        else
                CHECK(!error, "socket list accepted with an error");
        error = NULL;
        r = apijson_tunnel_list(j, &error);
        if (r < 0)
                refused(r, error, "tunnel list");
        else
                CHECK(!error, "tunnel list accepted with an error");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        cJSON *j = cJSON_ParseWithLength((const char *) data, size);
        if (!j)
                return 0;
        decode_all(j);
        const cJSON *i;
        cJSON_ArrayForEach(i, j)
                if (cJSON_IsObject(i) || cJSON_IsArray(i))
                        decode_all(i);
        cJSON_Delete(j);
        return 0;
}
