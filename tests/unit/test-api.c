/* Unit tests of the API client: JWT claims, object decoders, the ids file, and end-to-end
 * runs on an sd-event loop against tests/emulator/api_emulator.py on 127.0.0.1. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "api/api.h"
#include "api/json.h"
#include "state.h"
#include "util.h"

#define EMAIL "ops@example.com"
#define PASSWORD "s3cret-pw"
#define RELAY_BASE 26000

static char dir[64];

static void setup(void) {
        strcpy(dir, "/tmp/test-api-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void emu_stop(void);

static void teardown(void) {
        emu_stop();
        char *cmd = xasprintf("rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
}

static cJSON *parse(const char *s) {
        cJSON *j = cJSON_Parse(s);
        ck_assert_ptr_nonnull(j);
        return j;
}

/* ---- JWT ---------------------------------------------------------------------------------- */

static char *b64url(const char *s) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t n = strlen(s);
        char *out = xmalloc(n * 4 / 3 + 4), *p = out;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) (unsigned char) s[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t) (unsigned char) s[i + 1] << 8;
                if (i + 2 < n)
                        v |= (unsigned char) s[i + 2];
                *p++ = tab[(v >> 18) & 63];
                *p++ = tab[(v >> 12) & 63];
                if (i + 1 < n)
                        *p++ = tab[(v >> 6) & 63];
                if (i + 2 < n)
                        *p++ = tab[v & 63];
        }
        *p = '\0';
        return out;
}

static char *jwt(const char *payload) {
        char *p = b64url(payload);
        char *t = xasprintf("eyJhbGciOiJIUzI1NiJ9.%s.c2ln", p);
        free(p);
        return t;
}

START_TEST(test_jwt_good) {
        struct api_jwt_claims c;
        char *t = jwt("{\"user_id\":\"u-1\",\"email\":\"a@b.c\",\"iat\":1700000000,\"exp\":1700018000}");
        ck_assert_int_eq(apijson_jwt_claims(t, &c), 0);
        ck_assert_uint_eq(c.exp, 1700018000ULL * 1000000);
        ck_assert_uint_eq(c.iat, 1700000000ULL * 1000000);
        ck_assert_str_eq(c.user_id, "u-1");
        ck_assert_str_eq(c.email, "a@b.c");
        apijson_jwt_claims_clear(&c);
        free(t);

        /* numeric user_id, padding tolerated, no iat */
        char *p = b64url("{\"user_id\":42,\"exp\":1700018000.5}");
        t = xasprintf("h.%s==.s", p);
        ck_assert_int_eq(apijson_jwt_claims(t, &c), 0);
        ck_assert_str_eq(c.user_id, "42");
        ck_assert_uint_eq(c.iat, 0);
        ck_assert_ptr_null(c.email);
        apijson_jwt_claims_clear(&c);
        free(t);
        free(p);
}
END_TEST

START_TEST(test_jwt_bad) {
        static const char *const not_jwt[] = {
                "", "garbage", "a.b", "a.b.c.d", ".x.y", "a..c", "a.!!!.c", "a.Zm9v$.c",
                "a.A.c",                       /* 1 char mod 4: impossible length */
                "a.Zm9v.c",                    /* "foo": not JSON */
                "a.W10.c",                     /* "[]": not an object */
                "a.eyJleHAiOjF9AA.c",          /* embedded NUL after {"exp":1} */
        };
        struct api_jwt_claims c;
        for (size_t i = 0; i < ELEMENTSOF(not_jwt); i++) {
                ck_assert_msg(apijson_jwt_claims(not_jwt[i], &c) == -EINVAL, "%s", not_jwt[i]);
                ck_assert_ptr_null(c.user_id);
        }
        ck_assert_int_eq(apijson_jwt_claims(NULL, &c), -EINVAL);

        static const char *const bad_claims[] = {
                "{}", "{\"user_id\":\"u\"}", "{\"exp\":\"1700000000\"}", "{\"exp\":-5}",
                "{\"exp\":1e300}", "{\"exp\":null}", "{\"exp\":1700000000,\"iat\":\"x\"}",
                "{\"exp\":1700000000,\"user_id\":\"../etc\"}", "{\"exp\":1700000000,\"user_id\":[1]}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_claims); i++) {
                char *t = jwt(bad_claims[i]);
                ck_assert_msg(apijson_jwt_claims(t, &c) == -EBADMSG, "%s", bad_claims[i]);
                ck_assert_ptr_null(c.user_id);
                free(t);
        }

        char *huge = xmalloc(20000);
        memset(huge, 'a', 19999);
        huge[19999] = '\0';
        huge[10] = huge[20] = '.';
        ck_assert_int_eq(apijson_jwt_claims(huge, &c), -EINVAL);
        free(huge);
}
END_TEST

/* ---- decoders ----------------------------------------------------------------------------- */

#define GOOD_TUNNEL "{\"tunnel_id\":\"t-1\",\"local_port\":6054,\"tunnel_server\":\"relay.example\"}"
#define GOOD_SOCKET "{\"socket_id\":\"s-1\",\"dnsname\":\"abc.edge.mysocket.test\",\"name\":\"web\"," \
        "\"socket_type\":\"tcp\",\"socket_tcp_ports\":[31337],\"protected_socket\":false," \
        "\"cloud_authentication_enabled\":false,\"tunnels\":[" GOOD_TUNNEL "]}"

START_TEST(test_decode_socket_good) {
        struct api_socket s;
        char *err = NULL;
        cJSON *j = parse(GOOD_SOCKET);
        ck_assert_int_eq(apijson_socket(j, &s, &err), 0);
        ck_assert_str_eq(s.socket_id, "s-1");
        ck_assert_str_eq(s.dnsname, "abc.edge.mysocket.test");
        ck_assert_str_eq(s.socket_type, "tcp");
        ck_assert_uint_eq(s.tcp_port, 31337);
        ck_assert_uint_eq(s.n_tunnels, 1);
        ck_assert_str_eq(s.tunnels[0].tunnel_id, "t-1");
        ck_assert_uint_eq(s.tunnels[0].local_port, 6054);
        apijson_socket_clear(&s);
        cJSON_Delete(j);

        /* http sockets: no ports, null name, no tunnels yet; plus user_name from POST /connect */
        j = parse("{\"socket_id\":\"s\",\"dnsname\":\"d.x\",\"socket_type\":\"http\",\"name\":null,"
                  "\"socket_tcp_ports\":[],\"user_name\":\"ops\"}");
        ck_assert_int_eq(apijson_socket(j, &s, &err), 0);
        ck_assert_uint_eq(s.tcp_port, 0);
        ck_assert_uint_eq(s.n_tunnels, 0);
        ck_assert_ptr_null(s.name);
        ck_assert_str_eq(s.user_name, "ops");
        apijson_socket_clear(&s);
        cJSON_Delete(j);
}
END_TEST

static void expect_bad(int (*decode)(const cJSON *, void *, char **), const char *json, const char *needle) {
        char *err = NULL;
        union { struct api_socket s; struct api_tunnel t; struct api_user u; } out;
        cJSON *j = parse(json);
        ck_assert_msg(decode(j, &out, &err) == -EBADMSG, "accepted: %s", json);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, needle), "\"%s\" lacks \"%s\"", err, needle);
        free(err);
        cJSON_Delete(j);
}

static int dec_socket(const cJSON *j, void *o, char **e) { return apijson_socket(j, o, e); }
static int dec_tunnel(const cJSON *j, void *o, char **e) { return apijson_tunnel(j, o, e); }
static int dec_user(const cJSON *j, void *o, char **e) { return apijson_user(j, o, e); }
static int dec_token(const cJSON *j, void *o, char **e) { return apijson_token(j, o, e); }
static int dec_sockets(const cJSON *j, void *o, char **e) { return apijson_socket_list(j, e); }
static int dec_tunnels(const cJSON *j, void *o, char **e) { return apijson_tunnel_list(j, e); }

START_TEST(test_decode_socket_bad) {
        expect_bad(dec_socket, "[]", "expected a JSON object");
        expect_bad(dec_socket, "\"x\"", "expected a JSON object");
        expect_bad(dec_socket, "{\"dnsname\":\"d\",\"socket_type\":\"http\"}", "\"socket_id\" is missing");
        expect_bad(dec_socket, "{\"socket_id\":7,\"dnsname\":\"d\",\"socket_type\":\"http\"}", "\"socket_id\" is not a string");
        expect_bad(dec_socket, "{\"socket_id\":\"../../x\",\"dnsname\":\"d\",\"socket_type\":\"http\"}", "\"socket_id\" has an unexpected value");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"socket_type\":\"http\"}", "\"dnsname\" is missing");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"a b\",\"socket_type\":\"http\"}", "\"dnsname\" has an unexpected value");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\"}", "\"socket_type\" is missing");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"protected_socket\":\"no\"}",
                   "\"protected_socket\" is not a boolean");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"socket_tcp_ports\":80}",
                   "\"socket_tcp_ports\" is not an array");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"socket_tcp_ports\":[\"80\"]}",
                   "not a port");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"socket_tcp_ports\":[70000]}",
                   "not a port");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"tunnels\":{}}",
                   "\"tunnels\" is not an array");
        expect_bad(dec_socket, "{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"tunnels\":[" GOOD_TUNNEL ",{\"tunnel_id\":\"t\"}]}",
                   "tunnels[1]: tunnel: field \"local_port\" is missing");
        /* Informational fields of an unexpected value or shape are dropped, never used. */
        struct api_socket s;
        char *err = NULL;
        cJSON *j = parse("{\"socket_id\":\"s\",\"dnsname\":\"d\",\"socket_type\":\"tcp\",\"user_name\":\"-oProxyCommand=x\","
                         "\"name\":7,\"cloud_authentication_enabled\":\"maybe\"}");
        ck_assert_int_eq(apijson_socket(j, &s, &err), 0);
        ck_assert_ptr_null(s.user_name);
        ck_assert_ptr_null(s.name);
        ck_assert(!s.cloud_auth);
        apijson_socket_clear(&s);
        cJSON_Delete(j);
}
END_TEST

START_TEST(test_decode_tunnel) {
        struct api_tunnel t;
        char *err = NULL;
        cJSON *j = parse("{\"tunnel_id\":\"t\",\"local_port\":1}");
        ck_assert_int_eq(apijson_tunnel(j, &t, &err), 0);
        ck_assert_ptr_null(t.tunnel_server);
        apijson_tunnel_clear(&t);
        cJSON_Delete(j);

        expect_bad(dec_tunnel, "null", "expected a JSON object");
        expect_bad(dec_tunnel, "{\"local_port\":6054}", "\"tunnel_id\" is missing");
        expect_bad(dec_tunnel, "{\"tunnel_id\":\"t\"}", "\"local_port\" is missing");
        expect_bad(dec_tunnel, "{\"tunnel_id\":\"t\",\"local_port\":\"6054\"}", "not a port");
        expect_bad(dec_tunnel, "{\"tunnel_id\":\"t\",\"local_port\":0}", "not a port");
        expect_bad(dec_tunnel, "{\"tunnel_id\":\"t\",\"local_port\":65536}", "not a port");
        expect_bad(dec_tunnel, "{\"tunnel_id\":\"t\",\"local_port\":60.5}", "not a port");
        /* tunnel_server is informational: empty on a new tunnel (SPEC §8), an address once
         * connected; any other shape is dropped. */
        static const char *const servers[] = { "true", "\"\"", "null", "{}", "[1]", "\"a b\"" };
        for (size_t i = 0; i < ELEMENTSOF(servers); i++) {
                char *text = xasprintf("{\"tunnel_id\":\"t\",\"local_port\":6054,\"tunnel_server\":%s}", servers[i]);
                j = parse(text);
                ck_assert_msg(apijson_tunnel(j, &t, &err) == 0, "%s: %s", text, err);
                ck_assert_ptr_null(t.tunnel_server);
                apijson_tunnel_clear(&t);
                cJSON_Delete(j);
                free(text);
        }
        j = parse("{\"tunnel_id\":\"t\",\"local_port\":6054,\"tunnel_server\":\"2001:db8::1\"}");
        ck_assert_int_eq(apijson_tunnel(j, &t, &err), 0);
        ck_assert_str_eq(t.tunnel_server, "2001:db8::1");
        apijson_tunnel_clear(&t);
        cJSON_Delete(j);
}
END_TEST

START_TEST(test_decode_user_token_lists) {
        struct api_user u;
        char *err = NULL, *token = NULL;
        cJSON *j = parse("{\"user_id\":\"u-1\",\"user_name\":\"ops\",\"name\":\"Ops\",\"email\":\"o@x\",\"sshkey\":\"k\"}");
        ck_assert_int_eq(apijson_user(j, &u, &err), 0);
        ck_assert_str_eq(u.user_name, "ops");
        ck_assert_str_eq(u.email, "o@x");
        apijson_user_clear(&u);
        cJSON_Delete(j);
        expect_bad(dec_user, "{\"user_name\":\"ops\"}", "\"user_id\" is missing");
        expect_bad(dec_user, "{\"user_id\":\"u\"}", "\"user_name\" is missing");
        expect_bad(dec_user, "{\"user_id\":\"u\",\"user_name\":\"a b\"}", "\"user_name\" has an unexpected value");
        expect_bad(dec_user, "{\"user_id\":\"u\",\"user_name\":\"\"}", "\"user_name\" has an unexpected value");

        j = parse("{\"token\":\"a.b.c\"}");
        ck_assert_int_eq(apijson_token(j, &token, &err), 0);
        ck_assert_str_eq(token, "a.b.c");
        free(token);
        cJSON_Delete(j);
        expect_bad(dec_token, "{}", "\"token\" is missing");
        expect_bad(dec_token, "{\"token\":5}", "\"token\" is not a string");
        expect_bad(dec_token, "{\"token\":\"a b\"}", "not a token");
        expect_bad(dec_token, "{\"token\":\"\"}", "not a token");
        expect_bad(dec_token, "[\"a.b.c\"]", "expected a JSON object");

        j = parse("[" GOOD_SOCKET "," GOOD_SOCKET "]");
        ck_assert_int_eq(apijson_socket_list(j, &err), 0);
        cJSON_Delete(j);
        j = parse("[]");
        ck_assert_int_eq(apijson_tunnel_list(j, &err), 0);
        cJSON_Delete(j);
        expect_bad(dec_sockets, "{}", "expected a JSON array");
        expect_bad(dec_sockets, "[" GOOD_SOCKET ",{}]", "socket list[1]: socket: field \"socket_id\" is missing");
        expect_bad(dec_tunnels, "[" GOOD_TUNNEL ",3]", "tunnel list[1]: tunnel: expected a JSON object");
}
END_TEST

/* ---- ids file ----------------------------------------------------------------------------- */

START_TEST(test_ids_file) {
        struct state_ids ids = { 0 };
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), -ENOENT);
        ck_assert_int_eq(state_ids_save(dir, "web", &(struct state_ids) { .socket_id = (char *) "s-1", .created = true }), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), 0);
        ck_assert_str_eq(ids.socket_id, "s-1");
        ck_assert_uint_eq(ids.n_tunnels, 0);
        ck_assert(ids.created);
        state_ids_clear(&ids);
        struct state_ids two = { .socket_id = (char *) "s-1", .n_tunnels = 2,
                                 .tunnels = { { (char *) "t-2", false }, { (char *) "t-3", true } } };
        ck_assert_int_eq(state_ids_save(dir, "web", &two), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), 0);
        ck_assert_uint_eq(ids.n_tunnels, 2);
        ck_assert_str_eq(ids.tunnels[0].tunnel_id, "t-2");
        ck_assert(!ids.tunnels[0].created);
        ck_assert_str_eq(ids.tunnels[1].tunnel_id, "t-3");
        ck_assert(ids.tunnels[1].created);
        ck_assert(!ids.created);
        state_ids_clear(&ids);

        struct stat st;
        char *path = xasprintf("%s/ids/web.json", dir);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
        /* A file of before "tunnels": its one tunnel_id is the one tunnel, created as the socket. */
        const char *old = "{\"socket_id\":\"s-9\",\"tunnel_id\":\"t-9\",\"created\":true}";
        ck_assert_int_eq(write_file_atomic(path, old, strlen(old), 0600), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), 0);
        ck_assert_uint_eq(ids.n_tunnels, 1);
        ck_assert_str_eq(ids.tunnels[0].tunnel_id, "t-9");
        ck_assert(ids.tunnels[0].created);
        state_ids_clear(&ids);
        ck_assert_int_eq(write_file_atomic(path, "{\"socket_id\":\"../x\"}", 20, 0600), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), -EBADMSG);
        const char *bad = "{\"socket_id\":\"s\",\"tunnels\":[{\"tunnel_id\":\"a/b\"}]}";
        ck_assert_int_eq(write_file_atomic(path, bad, strlen(bad), 0600), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), -EBADMSG);
        ck_assert_int_eq(write_file_atomic(path, "garbage", 7, 0600), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), -EBADMSG);
        free(path);

        ck_assert_int_eq(state_ids_save(dir, "../evil", &(struct state_ids) { .socket_id = (char *) "s" }), -EINVAL);
        ck_assert_int_eq(state_ids_save(dir, "web", &(struct state_ids) { .socket_id = (char *) "s/1" }), -EINVAL);
        ck_assert_int_eq(state_ids_remove(dir, "web"), 0);
        ck_assert_int_eq(state_ids_remove(dir, "web"), 0);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), -ENOENT);
}
END_TEST

/* ---- end to end against the emulator ------------------------------------------------------ */

static pid_t emu_pid;
static char emu_url[64];

static void emu_start(unsigned token_lifetime) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        char *script = xasprintf("%s/tests/emulator/api_emulator.py", TEST_SRCDIR);
        char *log = xasprintf("%s/emulator.log", dir);
        char lifetime[16];
        snprintf(lifetime, sizeof(lifetime), "%u", token_lifetime);
        emu_pid = fork();
        ck_assert_int_ge(emu_pid, 0);
        if (emu_pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);   /* a failed test must not leave it behind */
                dup2(fds[1], STDOUT_FILENO);
                if (!freopen(log, "a", stderr))
                        _exit(126);
                close(fds[0]);
                close(fds[1]);
                execl("/usr/bin/python3", "python3", script, "--port", "0", "--user",
                      EMAIL ":" PASSWORD ":ops", "--token-lifetime", lifetime,
                      "--relay-port-base", "26000", (char *) NULL);
                _exit(127);
        }
        close(fds[1]);
        char line[64] = "";
        size_t n = 0;
        while (n < sizeof(line) - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
                n++;
        line[n] = '\0';
        close(fds[0]);
        unsigned port = 0;
        ck_assert_msg(sscanf(line, "LISTENING %u", &port) == 1, "emulator said \"%s\"", line);
        snprintf(emu_url, sizeof(emu_url), "http://127.0.0.1:%u", port);
        free(script);
        free(log);
}

static void emu_stop(void) {
        if (emu_pid > 0) {
                kill(emu_pid, SIGTERM);
                waitpid(emu_pid, NULL, 0);
                emu_pid = 0;
        }
}

static size_t collect(char *p, size_t s, size_t n, void *ud) {
        char **buf = ud;
        size_t old = *buf ? strlen(*buf) : 0;
        *buf = xrealloc(*buf, old + s * n + 1);
        memcpy(*buf + old, p, s * n);
        (*buf)[old + s * n] = '\0';
        return s * n;
}

/* The control plane, with a plain blocking easy handle: this is the test, not the daemon. */
static cJSON *emu(const char *method, const char *path, const char *body) {
        char *url = xasprintf("%s%s", emu_url, path), *buf = NULL;
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (body)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &buf);
        ck_assert_int_eq(curl_easy_perform(e), CURLE_OK);
        curl_easy_cleanup(e);
        free(url);
        cJSON *j = buf ? cJSON_Parse(buf) : NULL;
        free(buf);
        return j;
}

static int count(const char *key) {
        cJSON *s = emu("GET", "/_emulator/state", NULL);
        const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "counts"), key);
        int n = cJSON_IsNumber(v) ? v->valueint : 0;
        cJSON_Delete(s);
        return n;
}

static void fault(const char *path, const char *kind, int n, double delay) {
        char *b = xasprintf("{\"path\":\"%s\",\"kind\":\"%s\",\"count\":%d,\"delay\":%g}", path, kind, n, delay);
        cJSON_Delete(emu("POST", "/_emulator/fault", b));
        free(b);
}

struct outcome {
        bool done;
        int error;
        char *message;
        char socket_id[REMOTE_ID_MAX + 1], tunnel_id[REMOTE_ID_MAX + 1], dnsname[256], user_name[65];
        uint16_t relay_port, tcp_port;
        bool created, recreated;
        cJSON *json;
        size_t n_tunnels;
        char tunnel_ids[8][REMOTE_ID_MAX + 1];
        uint16_t relay_ports[8];
};

static void on_binding(int error, const struct api_binding_result *r, const char *message, void *userdata) {
        struct outcome *o = userdata;
        ck_assert(!o->done);
        o->done = true;
        o->error = error;
        o->message = xstrdup(message);
        if (error < 0) {
                ck_assert_ptr_null(r);
                ck_assert_ptr_nonnull(message);
                return;
        }
        snprintf(o->socket_id, sizeof(o->socket_id), "%s", r->socket_id);
        snprintf(o->tunnel_id, sizeof(o->tunnel_id), "%s", r->tunnel_id);
        snprintf(o->dnsname, sizeof(o->dnsname), "%s", r->dnsname);
        snprintf(o->user_name, sizeof(o->user_name), "%s", r->user_name);
        o->relay_port = r->relay_port;
        o->tcp_port = r->socket_tcp_port;
        o->created = r->created;
        o->recreated = r->recreated;
        ck_assert_uint_le(r->n_tunnels, 8);
        ck_assert_str_eq(r->tunnels[0].tunnel_id, r->tunnel_id);
        o->n_tunnels = r->n_tunnels;
        for (size_t i = 0; i < r->n_tunnels; i++) {
                snprintf(o->tunnel_ids[i], sizeof(o->tunnel_ids[i]), "%s", r->tunnels[i].tunnel_id);
                o->relay_ports[i] = r->tunnels[i].relay_port;
        }
}

static void on_json(int error, const cJSON *reply, const char *message, void *userdata) {
        struct outcome *o = userdata;
        ck_assert(!o->done);
        o->done = true;
        o->error = error;
        o->message = xstrdup(message);
        o->json = reply ? cJSON_Duplicate(reply, true) : NULL;
}

static void outcome_clear(struct outcome *o) {
        free(o->message);
        cJSON_Delete(o->json);
        *o = (struct outcome) {};
}

static void run_until(sd_event *e, bool *flag, unsigned seconds) {
        uint64_t end = now_monotonic_usec() + seconds * 1000000ULL;
        while ((!flag || !*flag) && now_monotonic_usec() < end)
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        if (flag)
                ck_assert_msg(*flag, "no callback within %u s", seconds);
}

struct fixture {
        sd_event *e;
        struct config c;
        struct api *a;
};

static char pw[128];

static void fixture_init(struct fixture *f, bool with_password) {
        snprintf(pw, sizeof(pw), "%s/password", dir);
        ck_assert_int_eq(write_file_atomic(pw, PASSWORD "\n", strlen(PASSWORD) + 1, 0600), 0);
        ck_assert_int_eq(sd_event_new(&f->e), 0);
        f->c = (struct config) {
                .api = true, .api_url = emu_url, .api_email = EMAIL,
                .api_password_file = with_password ? pw : NULL, .state_dir = dir,
        };
        ck_assert_int_eq(api_new(f->e, &f->c, &f->a), 0);
}

static void fixture_done(struct fixture *f) {
        api_free(f->a);
        sd_event_unref(f->e);
        emu_stop();
}

static void ensure_n(struct fixture *f, const char *name, enum socket_type t, const char *config_sid,
                     unsigned tunnels, struct outcome *o) {
        struct api_call *call = NULL;
        struct api_binding_request req = { .name = name, .type = t, .config_socket_id = config_sid,
                                           .tunnels = tunnels };
        outcome_clear(o);
        ck_assert_int_eq(api_ensure_binding(f->a, &req, on_binding, o, &call), 0);
        ck_assert_ptr_nonnull(call);
        ck_assert(!o->done);           /* never completes before returning */
        run_until(f->e, &o->done, 20);
}

static void ensure(struct fixture *f, const char *name, enum socket_type t, const char *config_sid,
                   struct outcome *o) {
        ensure_n(f, name, t, config_sid, 0, o);
}

/* How many tunnels the emulator's socket `sid` has. */
static int tunnels_at(const char *sid) {
        cJSON *s = emu("GET", "/_emulator/state", NULL), *i;
        int n = -1;
        cJSON_ArrayForEach(i, cJSON_GetObjectItem(s, "sockets"))
                if (streq(cJSON_GetStringValue(cJSON_GetObjectItem(i, "socket_id")), sid))
                        n = cJSON_GetArraySize(cJSON_GetObjectItem(i, "tunnels"));
        cJSON_Delete(s);
        return n;
}

START_TEST(test_e2e_several_tunnels) {
        struct fixture f;
        struct outcome o = {}, o2 = {};
        struct state_ids ids = { 0 };
        emu_start(18000);
        fixture_init(&f, true);
        api_start(f.a);

        /* Three tunnels, each its own id and relay port, all under the one socket. */
        ensure_n(&f, "web", SOCKET_TYPE_HTTP, NULL, 3, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ck_assert_uint_eq(o.n_tunnels, 3);
        ck_assert_int_eq(count("POST /socket/{id}/tunnel"), 3);
        ck_assert_int_eq(tunnels_at(o.socket_id), 3);
        ck_assert_str_ne(o.tunnel_ids[0], o.tunnel_ids[1]);
        ck_assert_str_ne(o.tunnel_ids[1], o.tunnel_ids[2]);
        ck_assert_int_ne(o.relay_ports[0], o.relay_ports[1]);
        ck_assert_int_ne(o.relay_ports[1], o.relay_ports[2]);

        /* Asked again: the same three, in the same order, nothing created. */
        ensure_n(&f, "web", SOCKET_TYPE_HTTP, NULL, 3, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_uint_eq(o2.n_tunnels, 3);
        for (size_t i = 0; i < 3; i++) {
                ck_assert_str_eq(o2.tunnel_ids[i], o.tunnel_ids[i]);
                ck_assert_int_eq(o2.relay_ports[i], o.relay_ports[i]);
        }
        ck_assert_int_eq(count("POST /socket/{id}/tunnel"), 3);

        /* Lowered to 1 while the API fails one delete: the answer does not wait for it, the
         * undeleted tunnel stays recorded, and the next call deletes it. */
        fault("DELETE /socket/{id}/tunnel/{tid}", "5xx", 1, 0);
        ensure_n(&f, "web", SOCKET_TYPE_HTTP, NULL, 1, &o2);
        ck_assert_msg(o2.error == 0, "%s", o2.message);
        ck_assert_uint_eq(o2.n_tunnels, 1);
        ck_assert_str_eq(o2.tunnel_ids[0], o.tunnel_ids[0]);
        ck_assert_int_eq(tunnels_at(o.socket_id), 2);
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), 0);
        ck_assert_uint_eq(ids.n_tunnels, 2);
        ck_assert_str_eq(ids.tunnels[1].tunnel_id, o.tunnel_ids[1]);
        state_ids_clear(&ids);
        ensure_n(&f, "web", SOCKET_TYPE_HTTP, NULL, 1, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_int_eq(tunnels_at(o.socket_id), 1);
        ck_assert_int_eq(count("DELETE /socket/{id}/tunnel/{tid}"), 3);

        /* Raised to 2: one new tunnel; the first one kept. */
        ensure_n(&f, "web", SOCKET_TYPE_HTTP, NULL, 2, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_uint_eq(o2.n_tunnels, 2);
        ck_assert_str_eq(o2.tunnel_ids[0], o.tunnel_ids[0]);
        ck_assert_str_ne(o2.tunnel_ids[1], o.tunnel_ids[1]);
        ck_assert_int_eq(count("POST /socket/{id}/tunnel"), 4);
        ck_assert_int_eq(tunnels_at(o.socket_id), 2);

        /* An attached socket (socket_id in the config) with a tunnel nobody recorded: it is
         * adopted, and lowering the count forgets it without deleting what is not ours. */
        ensure_n(&f, "att", SOCKET_TYPE_HTTP, o.socket_id, 2, &o2);
        ck_assert_msg(o2.error == 0, "%s", o2.message);
        ck_assert_int_eq(count("POST /socket/{id}/tunnel"), 4);   /* both adopted */
        ensure_n(&f, "att", SOCKET_TYPE_HTTP, o.socket_id, 1, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_int_eq(tunnels_at(o.socket_id), 2);
        ck_assert_int_eq(count("DELETE /socket/{id}/tunnel/{tid}"), 3);
        outcome_clear(&o);
        outcome_clear(&o2);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_create_then_reuse) {
        struct fixture f;
        struct outcome o = {}, o2 = {};
        emu_start(18000);
        fixture_init(&f, true);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_TCP, NULL, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ck_assert(o.created && !o.recreated);
        ck_assert_int_ge(o.relay_port, RELAY_BASE);
        ck_assert_int_ne(o.tcp_port, 0);
        ck_assert_str_eq(o.user_name, "ops");
        ck_assert_ptr_nonnull(strstr(o.dnsname, ".edge.mysocket.test"));
        ck_assert_str_eq(api_user_name(f.a), "ops");
        ck_assert_uint_gt(api_token_expiry(f.a), now_realtime_usec());

        ensure(&f, "web", SOCKET_TYPE_TCP, NULL, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_str_eq(o2.socket_id, o.socket_id);
        ck_assert_str_eq(o2.tunnel_id, o.tunnel_id);
        ck_assert_int_eq(o2.relay_port, o.relay_port);
        ck_assert(o2.created);

        /* A restart: the saved token and ids are reused, nothing is created or logged in. */
        api_free(f.a);
        ck_assert_int_eq(api_new(f.e, &f.c, &f.a), 0);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_TCP, NULL, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_str_eq(o2.socket_id, o.socket_id);
        ck_assert_str_eq(o2.tunnel_id, o.tunnel_id);

        ck_assert_int_eq(count("POST /login"), 1);
        ck_assert_int_eq(count("POST /socket"), 1);
        ck_assert_int_eq(count("POST /socket/{id}/tunnel"), 1);
        ck_assert_int_eq(count("GET /socket/{id}"), 2);

        struct stat st;
        char *tok = xasprintf("%s/token", dir);
        ck_assert_int_eq(stat(tok, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
        free(tok);

        /* A second binding gets its own socket. */
        ensure(&f, "ssh", SOCKET_TYPE_HTTP, NULL, &o2);
        ck_assert_int_eq(o2.error, 0);
        ck_assert_str_ne(o2.socket_id, o.socket_id);
        ck_assert_int_eq(o2.tcp_port, 0);
        ck_assert_int_eq(count("POST /socket"), 2);
        cJSON *state = emu("GET", "/_emulator/state", NULL);
        char *counts = cJSON_PrintUnformatted(cJSON_GetObjectItem(state, "counts"));
        fprintf(stderr, "emulator counts: %s\n", counts);
        free(counts);
        cJSON_Delete(state);
        outcome_clear(&o);
        outcome_clear(&o2);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_recreate_after_404) {
        struct fixture f;
        struct outcome o = {}, o2 = {};
        emu_start(18000);
        fixture_init(&f, true);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, 0);
        char *path = xasprintf("/_emulator/socket/%s", o.socket_id);
        cJSON_Delete(emu("DELETE", path, NULL));
        free(path);

        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o2);
        ck_assert_msg(o2.error == 0, "%s", o2.message);
        ck_assert(o2.recreated && o2.created);
        ck_assert_str_ne(o2.socket_id, o.socket_id);
        struct state_ids ids = { 0 };
        ck_assert_int_eq(state_ids_load(dir, "web", &ids), 0);
        ck_assert_str_eq(ids.socket_id, o2.socket_id);
        ck_assert_uint_eq(ids.n_tunnels, 1);
        ck_assert_str_eq(ids.tunnels[0].tunnel_id, o2.tunnel_id);
        state_ids_clear(&ids);

        /* A socket_id from the config is attached to, never recreated. */
        ensure(&f, "web", SOCKET_TYPE_HTTP, o2.socket_id, &o);
        ck_assert_int_eq(o.error, 0);
        ck_assert_str_eq(o.socket_id, o2.socket_id);
        ensure(&f, "other", SOCKET_TYPE_HTTP, "no-such-socket", &o);
        ck_assert_int_eq(o.error, -ENOENT);
        ck_assert_ptr_nonnull(strstr(o.message, "no-such-socket"));
        ck_assert_int_eq(count("POST /socket"), 2);
        outcome_clear(&o);
        outcome_clear(&o2);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_token_refresh_and_revoke) {
        struct fixture f;
        struct outcome o = {};
        emu_start(3);
        fixture_init(&f, true);
        api_start(f.a);
        run_until(f.e, NULL, 7);
        ck_assert_int_eq(count("POST /login"), 1);
        ck_assert_int_ge(count("POST /login/refresh"), 3);
        ck_assert_uint_gt(api_token_expiry(f.a), now_realtime_usec());
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, 0);

        /* Revoked: the next call gets a 401, logs in again and is retried once. */
        cJSON_Delete(emu("POST", "/_emulator/revoke", "{}"));
        cJSON_Delete(emu("POST", "/_emulator/config", "{\"token_lifetime\":600}"));
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ck_assert_int_eq(count("POST /login"), 2);
        outcome_clear(&o);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_faults) {
        struct fixture f;
        struct outcome o = {};
        emu_start(18000);
        fixture_init(&f, true);
        api_set_timeouts(f.a, 2000000, 1500000);
        api_start(f.a);

        fault("POST /socket", "5xx", 1, 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EREMOTEIO);
        ck_assert_str_eq(o.message, "API returned HTTP 503 for POST /socket: emulated server error");

        fault("POST /socket", "garbage", 1, 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EBADMSG);
        ck_assert_str_eq(o.message, "API returned HTTP 200 with a non-JSON body (application/json) for POST /socket");

        fault("POST /socket", "html", 1, 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EREMOTEIO);
        ck_assert_str_eq(o.message, "API returned HTTP 502 with a non-JSON body (text/html) for POST /socket");

        fault("POST /socket", "slow", 1, 3);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -ETIMEDOUT);
        ck_assert_ptr_nonnull(strstr(o.message, "API request POST /socket failed: "));

        /* Twice: on a reused connection libcurl itself retries once on a fresh one. */
        fault("POST /socket", "drop", 2, 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -ECONNRESET);
        ck_assert_ptr_nonnull(strstr(o.message, "API request POST /socket failed: "));
        cJSON_Delete(emu("DELETE", "/_emulator/fault", NULL));

        /* A 401 mid-way: log in again, retry once, succeed. */
        fault("POST /socket", "401", 1, 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ck_assert_int_eq(count("POST /login"), 2);

        /* 401 for ever: one retry, then a clear failure. */
        cJSON_Delete(emu("POST", "/_emulator/fault", "{\"path\":\"GET /socket/{id}\",\"kind\":\"401\",\"count\":null}"));
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EACCES);
        ck_assert_ptr_nonnull(strstr(o.message, "HTTP 401"));
        cJSON_Delete(emu("DELETE", "/_emulator/fault", NULL));

        ck_assert_int_ge(count("POST /socket"), 7);
        outcome_clear(&o);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_credentials) {
        struct fixture f;
        struct outcome o = {};
        emu_start(18000);
        fixture_init(&f, true);
        ck_assert_int_eq(chmod(pw, 0644), 0);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EPERM);
        char *want = xasprintf("password file %s is readable by others (mode 0644); chmod 600 %s", pw, pw);
        ck_assert_ptr_nonnull(strstr(o.message, want));
        free(want);

        /* Wrong password. */
        ck_assert_int_eq(write_file_atomic(pw, "nope", 4, 0600), 0);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -EACCES);
        ck_assert_ptr_null(strstr(o.message, "nope"));
        api_free(f.a);

        /* No credentials at all. */
        f.c.api_password_file = NULL;
        ck_assert_int_eq(api_new(f.e, &f.c, &f.a), 0);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_int_eq(o.error, -ENOKEY);
        ck_assert_ptr_nonnull(strstr(o.message, "mysocketctl login"));

        /* ... until mysocketctl login, whose token is then used and saved. */
        struct api_call *call;
        outcome_clear(&o);
        ck_assert_int_eq(api_login(f.a, EMAIL, PASSWORD, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);

        /* A token_file. */
        api_free(f.a);
        char *tok = xasprintf("%s/token", dir), *tf = xasprintf("%s/tokenfile", dir);
        ck_assert_int_eq(rename(tok, tf), 0);
        f.c.api_token_file = tf;
        f.c.api_email = NULL;
        ck_assert_int_eq(api_new(f.e, &f.c, &f.a), 0);
        api_start(f.a);
        ensure(&f, "web", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_msg(o.error == 0, "%s", o.message);
        ck_assert_int_eq(count("POST /login"), 2);
        free(tok);
        free(tf);
        outcome_clear(&o);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_unreachable_and_cancel) {
        struct fixture f;
        struct outcome o = {};
        emu_start(18000);
        fixture_init(&f, true);
        api_start(f.a);

        /* Cancelled: the callback never fires, and nothing leaks (ASan). */
        struct api_call *call;
        struct api_binding_request req = { .name = "web", .type = SOCKET_TYPE_HTTP };
        ck_assert_int_eq(api_ensure_binding(f.a, &req, on_binding, &o, &call), 0);
        api_call_cancel(call);
        run_until(f.e, NULL, 1);
        ck_assert(!o.done);
        ck_assert_int_eq(api_ensure_binding(f.a, &req, on_binding, &o, &call), 0);
        api_free(f.a);             /* with a call in flight */
        ck_assert(!o.done);

        /* Nobody listening, and no saved token: the login itself fails. */
        emu_stop();
        char *tok = xasprintf("%s/token", dir);
        unlink(tok);
        free(tok);
        ck_assert_int_eq(api_new(f.e, &f.c, &f.a), 0);
        api_start(f.a);
        ensure(&f, "web2", SOCKET_TYPE_HTTP, NULL, &o);
        ck_assert_msg(o.error == -ECONNREFUSED, "%d %s", o.error, o.message);
        ck_assert_ptr_nonnull(strstr(o.message, "API login as " EMAIL " failed"));
        outcome_clear(&o);
        fixture_done(&f);
}
END_TEST

START_TEST(test_e2e_passthrough) {
        struct fixture f;
        struct outcome o = {};
        struct api_call *call;
        emu_start(18000);
        fixture_init(&f, true);
        api_start(f.a);

        ck_assert_int_eq(api_account_show(f.a, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(o.error, 0);
        ck_assert_str_eq(cJSON_GetObjectItem(o.json, "user_name")->valuestring, "ops");

        struct api_binding_request spec = { .name = "x", .display_name = "my tls", .type = SOCKET_TYPE_TLS };
        outcome_clear(&o);
        ck_assert_int_eq(api_socket_create(f.a, &spec, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(o.error, 0);
        char *sid = xstrdup(cJSON_GetObjectItem(o.json, "socket_id")->valuestring);
        ck_assert_str_eq(cJSON_GetObjectItem(o.json, "name")->valuestring, "my tls");

        outcome_clear(&o);
        ck_assert_int_eq(api_tunnel_create(f.a, sid, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(o.error, 0);
        char *tid = xstrdup(cJSON_GetObjectItem(o.json, "tunnel_id")->valuestring);

        outcome_clear(&o);
        ck_assert_int_eq(api_tunnel_list(f.a, sid, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(cJSON_GetArraySize(o.json), 1);

        outcome_clear(&o);
        ck_assert_int_eq(api_socket_list(f.a, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(cJSON_GetArraySize(o.json), 1);

        outcome_clear(&o);
        ck_assert_int_eq(api_tunnel_delete(f.a, sid, tid, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(o.error, 0);
        ck_assert_ptr_null(o.json);

        for (int i = 0; i < 2; i++) {           /* the second time: 404, which is success */
                outcome_clear(&o);
                ck_assert_int_eq(api_socket_delete(f.a, sid, on_json, &o, &call), 0);
                run_until(f.e, &o.done, 10);
                ck_assert_int_eq(o.error, 0);
        }
        outcome_clear(&o);
        ck_assert_int_eq(api_tunnel_list(f.a, sid, on_json, &o, &call), 0);
        run_until(f.e, &o.done, 10);
        ck_assert_int_eq(o.error, -ENOENT);

        ck_assert_int_eq(api_socket_delete(f.a, "../x", on_json, &o, &call), -EINVAL);
        ck_assert_int_eq(count("DELETE /socket/{id}"), 2);
        free(sid);
        free(tid);
        outcome_clear(&o);
        fixture_done(&f);
}
END_TEST

/* Regression (fuzz-jwt, tests/fuzz/corpus/jwt/regress-exp-rounds-to-zero): an exp
 * above 0 but below a microsecond was accepted as exp 0 usec, the "no token" value. */
/* What a reply means, and what of the API's message is safe to say. */
START_TEST(test_reply_message) {
        cJSON *j = NULL;
        char *m = NULL;
        const char *sent = "{\"email\":\"ops@example.com\",\"password\":\"pw-123456\"}";
        const char *b = "{\"message\":\"bad request: {\\\"email\\\":\\\"ops@example.com\\\",\\\"password\\\":\\\"pw-123456\\\"}\"}";

        ck_assert_int_eq(apijson_reply("POST /login", 400, b, strlen(b), "application/json", sent, &j, &m), -EINVAL);
        ck_assert_ptr_null(j);
        ck_assert_str_eq(m, "API returned HTTP 400 for POST /login (its message quoted our request, so it is not shown)");
        free(m);
        /* A value of ours alone is enough (an API that quotes just the password). */
        b = "{\"error\":\"pw-123456 is too weak\"}";
        ck_assert_int_eq(apijson_reply("POST /login", 422, b, strlen(b), NULL, sent, &j, &m), -EINVAL);
        ck_assert_ptr_null(strstr(m, "pw-123456"));
        free(m);
        /* Its own words are kept: printable, at most 200 bytes. */
        char *longmsg = xmalloc(8000), *p = longmsg;
        p += sprintf(p, "{\"message\":\"");
        for (int i = 0; i < 500; i++)
                p += sprintf(p, "ab\\u001b");
        sprintf(p, "\"}");
        ck_assert_int_eq(apijson_reply("GET /x", 409, longmsg, strlen(longmsg), NULL, NULL, &j, &m), -EINVAL);
        const char *q = strstr(m, ": ab");
        ck_assert_ptr_nonnull(q);
        ck_assert_uint_le(strlen(q + 2), 200);
        ck_assert_ptr_null(strchr(m, 0x1b));
        free(m);
        free(longmsg);
        /* Statuses, bodies. */
        ck_assert_int_eq(apijson_reply("GET /x", 503, "<html>", 6, "text/html", NULL, &j, &m), -EREMOTEIO);
        ck_assert_ptr_nonnull(strstr(m, "non-JSON body (text/html)"));
        free(m);
        ck_assert_int_eq(apijson_reply("GET /x", 200, "nope", 4, NULL, NULL, &j, &m), -EBADMSG);
        free(m);
        ck_assert_int_eq(apijson_reply("GET /x", 404, "", 0, NULL, NULL, &j, &m), -ENOENT);
        ck_assert_str_eq(m, "API returned HTTP 404 for GET /x");
        free(m);
        ck_assert_int_eq(apijson_reply("GET /x", 200, "[1]", 3, NULL, NULL, &j, &m), 0);
        ck_assert(cJSON_IsArray(j));
        ck_assert_ptr_null(m);
        cJSON_Delete(j);
}
END_TEST

START_TEST(test_jwt_exp_below_one_second) {
        static const char *const tiny[] = { "{\"exp\":1e-80}", "{\"exp\":0.5}",
                                            "{\"exp\":1700000000,\"iat\":1e-7}" };
        struct api_jwt_claims c;
        for (size_t i = 0; i < ELEMENTSOF(tiny); i++) {
                char *t = jwt(tiny[i]);
                ck_assert_msg(apijson_jwt_claims(t, &c) == -EBADMSG, "%s", tiny[i]);
                ck_assert_uint_eq(c.exp, 0);
                free(t);
        }
        char *t = jwt("{\"exp\":1}");
        ck_assert_int_eq(apijson_jwt_claims(t, &c), 0);
        ck_assert_uint_eq(c.exp, 1000000);
        apijson_jwt_claims_clear(&c);
        free(t);
}
END_TEST

/* Where a token ends by our clock: its own exp when the clocks agree, its lifetime counted
 * from now when they do not, and nothing for one that lasts no longer than the margin. */
START_TEST(test_jwt_end) {
        const uint64_t S = 1000000, now = 1700000000ULL * S, margin = S / 2, tol = 60 * S;
        struct api_jwt_claims c = { .iat = now - 10 * S, .exp = now + 3600 * S };
        uint64_t end = 0;
        int64_t skew = 1;
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), 0);
        ck_assert_uint_eq(end, c.exp);
        ck_assert_int_eq(skew, 0);
        /* issued two hours "in the future" by our clock: an hour from now, and the skew */
        c = (struct api_jwt_claims) { .iat = now + 7200 * S, .exp = now + 10800 * S };
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), 0);
        ck_assert_uint_eq(end, now + 3600 * S);
        ck_assert_int_eq(skew, 7200 * (int64_t) S);
        /* issued an hour "ago" and already expired by our clock: its hour from now */
        c = (struct api_jwt_claims) { .iat = now - 7200 * S, .exp = now - 3600 * S };
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), 0);
        ck_assert_uint_eq(end, now + 3600 * S);
        ck_assert_int_eq(skew, -7200 * (int64_t) S);
        /* no iat: exp as it is, once it is more than the margin ahead */
        c = (struct api_jwt_claims) { .exp = now + S };
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), 0);
        ck_assert_uint_eq(end, now + S);
        c.exp = now + margin;
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), -EKEYEXPIRED);
        c.exp = now - S;
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), -EKEYEXPIRED);
        /* a lifetime within the margin, whatever the clocks */
        c = (struct api_jwt_claims) { .iat = now + 7200 * S, .exp = now + 7200 * S + margin };
        ck_assert_int_eq(apijson_jwt_end(&c, now, margin, tol, &end, &skew), -EKEYEXPIRED);
}
END_TEST

static Suite *api_suite(void) {
        Suite *s = suite_create("api");
        TCase *tc = tcase_create("decode");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_jwt_good);
        tcase_add_test(tc, test_jwt_bad);
        tcase_add_test(tc, test_decode_socket_good);
        tcase_add_test(tc, test_decode_socket_bad);
        tcase_add_test(tc, test_decode_tunnel);
        tcase_add_test(tc, test_decode_user_token_lists);
        tcase_add_test(tc, test_ids_file);
        tcase_add_test(tc, test_jwt_exp_below_one_second);
        tcase_add_test(tc, test_jwt_end);
        tcase_add_test(tc, test_reply_message);
        suite_add_tcase(s, tc);

        tc = tcase_create("e2e");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_e2e_create_then_reuse);
        tcase_add_test(tc, test_e2e_several_tunnels);
        tcase_add_test(tc, test_e2e_recreate_after_404);
        tcase_add_test(tc, test_e2e_token_refresh_and_revoke);
        tcase_add_test(tc, test_e2e_faults);
        tcase_add_test(tc, test_e2e_credentials);
        tcase_add_test(tc, test_e2e_unreachable_and_cancel);
        tcase_add_test(tc, test_e2e_passthrough);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        if (access("/usr/bin/python3", X_OK) < 0) {
                fprintf(stderr, "no /usr/bin/python3: skipping the API tests\n");
                return 77;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        SRunner *sr = srunner_create(api_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        curl_global_cleanup();
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
