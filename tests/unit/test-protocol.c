/* Unit tests for common/protocol.c: round trips, and every malformed input we could think
 * of getting a sentence that names the problem rather than a crash or a silent default. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "util.h"

/* ---- helpers -------------------------------------------------------------------------- */

static int request(const char *line, size_t len, char **error) {
        cJSON *o = NULL;
        const char *cmd = NULL;
        int r;

        *error = NULL;
        r = proto_request_parse(line, len, &o, &cmd, error);
        if (r >= 0) {
                ck_assert_ptr_nonnull(cmd);
                ck_assert_ptr_null(*error);
        } else
                ck_assert_ptr_nonnull(*error);
        cJSON_Delete(o);
        return r;
}

/* Asserts that the request is refused with a message containing `needle`. */
static void bad_request(const char *line, size_t len, const char *needle) {
        char *error;

        ck_assert_msg(request(line, len, &error) == -EINVAL, "accepted: %.*s", (int) len, line);
        ck_assert_msg(strstr(error, needle), "\"%s\" does not contain \"%s\"", error, needle);
        free(error);
}
#define BAD_REQUEST(s, needle) bad_request((s), sizeof(s) - 1, (needle))

static void good_request(const char *line) {
        char *error;

        ck_assert_msg(request(line, strlen(line), &error) == 0, "refused: %s: %s", line, error ?: "");
}

static cJSON *parse(const char *s) {
        cJSON *o = cJSON_Parse(s);

        ck_assert_ptr_nonnull(o);
        return o;
}

/* ---- codes ---------------------------------------------------------------------------- */

START_TEST(test_codes) {
        for (int c = 0; c < _PROTO_CODE_MAX; c++)
                ck_assert_int_eq(proto_code_from_string(proto_code_to_string(c)), c);
        ck_assert_str_eq(proto_code_to_string(PROTO_CODE_NOT_FOUND), "not-found");
        ck_assert_str_eq(proto_code_to_string(PROTO_CODE_CONFIG_OWNED), "config-owned");
        ck_assert_int_eq(proto_code_from_string("bogus"), PROTO_CODE_INTERNAL);
        ck_assert_int_eq(proto_code_from_string(NULL), PROTO_CODE_INTERNAL);
        ck_assert_str_eq(proto_code_to_string(_PROTO_CODE_MAX), "internal");
}
END_TEST

/* ---- requests ------------------------------------------------------------------------- */

START_TEST(test_request_ok) {
        cJSON *o = NULL, *req;
        const char *cmd = NULL;
        char *error = NULL, *line;
        size_t len;

        req = proto_request_new("show");
        cJSON_AddStringToObject(req, "name", "web");
        line = proto_encode_line(req, &len);
        ck_assert_ptr_nonnull(line);
        ck_assert_uint_eq(len, strlen(line));
        ck_assert_str_eq(line, "{\"v\":1,\"cmd\":\"show\",\"name\":\"web\"}\n");
        /* With or without its '\n'. */
        ck_assert_int_eq(proto_request_parse(line, len, &o, &cmd, &error), 0);
        ck_assert_str_eq(cmd, "show");
        cJSON_Delete(o);
        ck_assert_int_eq(proto_request_parse(line, len - 1, &o, &cmd, &error), 0);
        ck_assert_str_eq(cmd, "show");
        cJSON_Delete(o);
        free(line);
        cJSON_Delete(req);

        good_request("{\"v\":1,\"cmd\":\"list\"}");
        good_request("  {\"v\" : 1.0, \"cmd\" : \"list\"}  ");
        good_request("{\"v\":1,\"cmd\":\"add\",\"binding\":{\"name\":\"caf\xc3\xa9\"}}");
        good_request("{\"v\":1,\"cmd\":\"x\",\"s\":\"\\\\u0000 is text here\"}");
        good_request("{\"v\":1,\"cmd\":\"x\",\"s\":\"\\ud83d\\ude00\"}");
}
END_TEST

START_TEST(test_request_malformed) {
        BAD_REQUEST("", "not valid JSON");
        BAD_REQUEST("{", "not valid JSON");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\"", "not valid JSON");
        BAD_REQUEST("nonsense", "not valid JSON");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\"} {}", "trailing data");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\"}\n{\"v\":1}", "trailing data");
        BAD_REQUEST("[1,2]", "must be a JSON object");
        BAD_REQUEST("\"list\"", "must be a JSON object");
        BAD_REQUEST("42", "must be a JSON object");
        BAD_REQUEST("null", "must be a JSON object");
}
END_TEST

START_TEST(test_request_version) {
        BAD_REQUEST("{\"cmd\":\"list\"}", "supported protocol version is 1");
        BAD_REQUEST("{\"v\":2,\"cmd\":\"list\"}", "\"v\" must be 1");
        BAD_REQUEST("{\"v\":0,\"cmd\":\"list\"}", "\"v\" must be 1");
        BAD_REQUEST("{\"v\":\"1\",\"cmd\":\"list\"}", "\"v\" must be 1");
        BAD_REQUEST("{\"v\":1.5,\"cmd\":\"list\"}", "\"v\" must be 1");
        BAD_REQUEST("{\"v\":true,\"cmd\":\"list\"}", "\"v\" must be 1");
        BAD_REQUEST("{\"v\":null,\"cmd\":\"list\"}", "\"v\" must be 1");
}
END_TEST

START_TEST(test_request_cmd) {
        BAD_REQUEST("{\"v\":1}", "missing \"cmd\"");
        BAD_REQUEST("{\"v\":1,\"cmd\":null}", "missing \"cmd\"");
        BAD_REQUEST("{\"v\":1,\"cmd\":7}", "\"cmd\" must be a string");
        BAD_REQUEST("{\"v\":1,\"cmd\":[\"list\"]}", "\"cmd\" must be a string");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"\"}", "\"cmd\" must not be empty");
}
END_TEST

START_TEST(test_request_bytes) {
        BAD_REQUEST("{\"v\":1,\"cmd\":\"li\xffst\"}", "UTF-8");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"\xc0\xaf\"}", "UTF-8");              /* overlong '/' */
        BAD_REQUEST("{\"v\":1,\"cmd\":\"\xed\xa0\x80\"}", "UTF-8");          /* surrogate */
        BAD_REQUEST("{\"v\":1,\"cmd\":\"\xf4\x90\x80\x80\"}", "UTF-8");      /* > U+10FFFF */
        BAD_REQUEST("{\"v\":1,\"cmd\":\"\xe2\x82\"}", "UTF-8");              /* truncated */
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\"}\xc3", "UTF-8");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"li\0st\"}", "NUL");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\"}\0", "NUL");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"li\\u0000st\"}", "NUL");
        BAD_REQUEST("{\"v\":1,\"cmd\":\"list\",\"name\":\"a\\\\\\u0000\"}", "NUL");
}
END_TEST

START_TEST(test_request_size) {
        const char *head = "{\"v\":1,\"cmd\":\"x\",\"pad\":\"";
        size_t n = PROTO_LINE_MAX + 16;
        char *buf = xmalloc(n), *error;

        /* Exactly PROTO_LINE_MAX bytes with the '\n' is allowed; one more is not. */
        memset(buf, 'a', n);
        memcpy(buf, head, strlen(head));
        memcpy(buf + PROTO_LINE_MAX - 3, "\"}\n", 3);
        ck_assert_int_eq(request(buf, PROTO_LINE_MAX, &error), 0);
        ck_assert_int_eq(request(buf, PROTO_LINE_MAX - 1, &error), 0);
        memcpy(buf + PROTO_LINE_MAX - 3, "a\"}", 3);
        ck_assert_int_eq(request(buf, PROTO_LINE_MAX, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "too long"));
        free(error);
        ck_assert_int_eq(request(buf, n, &error), -EINVAL);
        free(error);
        free(buf);

        /* Nesting deeper than cJSON allows is bad JSON, not a stack overflow. */
        n = 5000;
        buf = xmalloc(2 * n + 1);
        memset(buf, '[', n);
        memset(buf + n, ']', n);
        buf[2 * n] = '\0';
        ck_assert_int_eq(request(buf, 2 * n, &error), -EINVAL);
        free(error);
        free(buf);
}
END_TEST

/* ---- typed getters -------------------------------------------------------------------- */

static void bad_uint(const char *json, uint64_t max, const char *needle) {
        cJSON *o = parse(json);
        uint64_t v = 42;
        char *error = NULL;

        ck_assert_int_eq(proto_get_uint(o, "n", max, 0, &v, &error), -EINVAL);
        ck_assert_msg(strstr(error, needle), "%s: \"%s\" lacks \"%s\"", json, error, needle);
        free(error);
        cJSON_Delete(o);
}

START_TEST(test_get_uint) {
        cJSON *o = parse("{\"n\":65535,\"z\":0,\"nul\":null,\"big\":9007199254740992}");
        uint64_t v;
        char *error = NULL;

        ck_assert_int_eq(proto_get_uint(o, "n", 65535, 0, &v, &error), 0);
        ck_assert_uint_eq(v, 65535);
        ck_assert_int_eq(proto_get_uint(o, "z", 10, 7, &v, &error), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_int_eq(proto_get_uint(o, "missing", 10, 7, &v, &error), 0);
        ck_assert_uint_eq(v, 7);
        ck_assert_int_eq(proto_get_uint(o, "nul", 10, 7, &v, &error), 0);
        ck_assert_uint_eq(v, 7);
        ck_assert_int_eq(proto_get_uint(o, "big", UINT64_MAX, 0, &v, &error), 0);
        ck_assert_uint_eq(v, 9007199254740992ULL);
        cJSON_Delete(o);

        bad_uint("{\"n\":65536}", 65535, "\"n\" must be an integer 0-65535");
        bad_uint("{\"n\":-1}", 65535, "\"n\" must be an integer");
        bad_uint("{\"n\":1.5}", 65535, "\"n\" must be an integer");
        bad_uint("{\"n\":1e300}", UINT64_MAX, "\"n\" must be an integer");
        bad_uint("{\"n\":-1e300}", UINT64_MAX, "\"n\" must be an integer");
        bad_uint("{\"n\":18446744073709551616}", UINT64_MAX, "\"n\" must be an integer");
        bad_uint("{\"n\":\"5\"}", 65535, "\"n\" must be an integer");
        bad_uint("{\"n\":true}", 65535, "\"n\" must be an integer");
        bad_uint("{\"n\":[5]}", 65535, "\"n\" must be an integer");
}
END_TEST

START_TEST(test_get_string_bool) {
        cJSON *o = parse("{\"s\":\"x\",\"n\":5,\"b\":true,\"f\":false,\"nul\":null,\"bs\":\"true\",\"bi\":1}");
        const char *s;
        bool b;
        char *error = NULL;

        ck_assert_int_eq(proto_get_string(o, "s", true, &s, &error), 0);
        ck_assert_str_eq(s, "x");
        ck_assert_int_eq(proto_get_string(o, "missing", false, &s, &error), 0);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(proto_get_string(o, "nul", false, &s, &error), 0);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(proto_get_string(o, "missing", true, &s, &error), -EINVAL);
        ck_assert_str_eq(error, "missing \"missing\"");
        free(error);
        ck_assert_int_eq(proto_get_string(o, "n", false, &s, &error), -EINVAL);
        ck_assert_str_eq(error, "\"n\" must be a string");
        free(error);

        ck_assert_int_eq(proto_get_bool(o, "b", false, &b, &error), 0);
        ck_assert(b);
        ck_assert_int_eq(proto_get_bool(o, "f", true, &b, &error), 0);
        ck_assert(!b);
        ck_assert_int_eq(proto_get_bool(o, "missing", true, &b, &error), 0);
        ck_assert(b);
        ck_assert_int_eq(proto_get_bool(o, "bs", false, &b, &error), -EINVAL);
        ck_assert_str_eq(error, "\"bs\" must be true or false");
        free(error);
        ck_assert_int_eq(proto_get_bool(o, "bi", false, &b, &error), -EINVAL);
        free(error);
        cJSON_Delete(o);
}
END_TEST

/* ---- bindings ------------------------------------------------------------------------- */

static const char *const spec_keys[] = {
        "name", "source", "type", "host", "port", "state", "public_url", "socket_id", "tunnel_id",
        "relay_port", "connected_since", "reconnects", "connections_active", "connections_total",
        "connections_refused", "max_connections",
        "bytes_in", "bytes_out", "last_error", "cipher", "mac", "next_attempt", "display_name", "protected",
        "username", "remote_port", "remote_host", "defined_at", "tunnels_up", "tunnels", "relays", "local_errors", "last_local_error", "local_failing",
};

START_TEST(test_binding_round_trip) {
        struct proto_binding in = {
                .name = "web", .source = "runtime", .type = "https", .host = "::1", .port = 8443,
                .display_name = "web on pi", .protected_ = true, .username = "u", .remote_port = 2222,
                .state = "up", .public_url = "https://a.edge.example", .socket_id = "s-1", .tunnel_id = "t-1",
                .relay_port = 6054, .connected_since = 1700000000ULL * 1000000, .reconnects = 3,
                .connections_active = 2, .connections_total = 99, .bytes_in = 1000000000000001ULL,
                .bytes_out = 9007199254740992ULL, .last_error = "bad \"quote\"\nnewline",
                .cipher = "aes128-ctr", .mac = "hmac-sha2-256-etm@openssh.com",
                .next_attempt = 1700000060ULL * 1000000, .defined_at = "/etc/x.ini:4",
                .tunnels_up = 1, .n_relays = 2, .relays = (struct proto_relay[]) {
                        { .server = "relay1:22", .state = "up", .connected_since = 1700000000ULL * 1000000 },
                        { .server = "[::1]:2222", .state = "backoff", .last_error = "refused" } },
                .local_errors = 7, .last_local_error = "cannot connect to 127.0.0.1:8000: Connection refused",
                .local_failing = true,
        }, out = {};
        cJSON *j, *back;
        char *line, *error = NULL;
        size_t len;

        /* Straight from the tree too (the daemon may test that way). */
        j = proto_binding_to_json(&in);
        ck_assert_int_eq(proto_binding_from_json(j, &out, &error), 0);
        ck_assert_uint_eq(out.bytes_in, in.bytes_in);
        ck_assert_uint_eq(out.bytes_out, in.bytes_out);
        proto_binding_clear(&out);
        for (size_t i = 0; i < ELEMENTSOF(spec_keys); i++)
                ck_assert_msg(cJSON_GetObjectItemCaseSensitive(j, spec_keys[i]), "no \"%s\"", spec_keys[i]);
        ck_assert_int_eq(cJSON_GetArraySize(j), (int) ELEMENTSOF(spec_keys));
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "connected_since")->valuestring, "2023-11-14T22:13:20Z");

        line = proto_encode_line(j, &len);
        ck_assert_ptr_nonnull(line);
        ck_assert_ptr_eq(strchr(line, '\n'), line + len - 1);    /* the newline is escaped */
        back = cJSON_Parse(line);
        ck_assert_int_eq(proto_binding_from_json(back, &out, &error), 0);
        ck_assert_str_eq(out.name, in.name);
        ck_assert_str_eq(out.source, in.source);
        ck_assert_str_eq(out.type, in.type);
        ck_assert_str_eq(out.host, in.host);
        ck_assert_uint_eq(out.port, in.port);
        ck_assert_str_eq(out.display_name, in.display_name);
        ck_assert(out.protected_);
        ck_assert_str_eq(out.username, in.username);
        ck_assert_uint_eq(out.tunnels_up, 1);
        ck_assert_uint_eq(out.n_relays, 2);
        ck_assert_str_eq(out.relays[0].server, "relay1:22");
        ck_assert_str_eq(out.relays[0].state, "up");
        ck_assert_ptr_null(out.relays[0].last_error);
        ck_assert_uint_eq(out.relays[0].connected_since, 1700000000ULL * 1000000);
        ck_assert_str_eq(out.relays[1].server, "[::1]:2222");
        ck_assert_str_eq(out.relays[1].last_error, "refused");
        ck_assert_uint_eq(out.relays[1].connected_since, 0);
        ck_assert_uint_eq(out.remote_port, in.remote_port);
        ck_assert_uint_eq(out.local_errors, in.local_errors);
        ck_assert_str_eq(out.last_local_error, in.last_local_error);
        ck_assert(out.local_failing);
        ck_assert_str_eq(out.state, in.state);
        ck_assert_str_eq(out.public_url, in.public_url);
        ck_assert_str_eq(out.socket_id, in.socket_id);
        ck_assert_str_eq(out.tunnel_id, in.tunnel_id);
        ck_assert_uint_eq(out.relay_port, in.relay_port);
        ck_assert_uint_eq(out.connected_since, in.connected_since);
        ck_assert_uint_eq(out.reconnects, in.reconnects);
        ck_assert_uint_eq(out.connections_active, in.connections_active);
        ck_assert_uint_eq(out.connections_total, in.connections_total);
        ck_assert_uint_eq(out.bytes_in, in.bytes_in);
        ck_assert_uint_eq(out.bytes_out, in.bytes_out);
        ck_assert_str_eq(out.last_error, in.last_error);
        ck_assert_str_eq(out.cipher, in.cipher);
        ck_assert_str_eq(out.mac, in.mac);
        ck_assert_uint_eq(out.next_attempt, in.next_attempt);
        ck_assert_str_eq(out.defined_at, in.defined_at);
        proto_binding_clear(&out);
        proto_binding_clear(NULL);
        cJSON_Delete(back);
        cJSON_Delete(j);
        free(line);
}
END_TEST

START_TEST(test_binding_nulls) {
        struct proto_binding in = { .name = "db", .port = 5432 }, out = {};
        char *error = NULL;
        cJSON *j = proto_binding_to_json(&in);

        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "public_url")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "relay_port")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "remote_port")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "connected_since")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "next_attempt")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "last_error")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "cipher")));
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "mac")));
        ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "protected")));
        ck_assert_int_eq(proto_binding_from_json(j, &out, &error), 0);
        ck_assert_ptr_null(out.public_url);
        ck_assert_uint_eq(out.relay_port, 0);
        ck_assert_uint_eq(out.connected_since, 0);
        proto_binding_clear(&out);
        cJSON_Delete(j);
}
END_TEST

static void bad_binding(const char *json, const char *message) {
        struct proto_binding b = {};
        cJSON *o = parse(json);
        char *error = NULL;

        ck_assert_int_eq(proto_binding_from_json(o, &b, &error), -EINVAL);
        ck_assert_msg(streq(error, message), "%s: got \"%s\"", json, error);
        ck_assert_ptr_null(b.name);
        free(error);
        cJSON_Delete(o);
}

START_TEST(test_binding_malformed) {
        bad_binding("[]", "a binding must be a JSON object");
        bad_binding("{\"port\":80}", "missing \"name\"");
        bad_binding("{\"name\":\"a\"}", "missing \"port\"");
        bad_binding("{\"name\":\"a\",\"port\":-80}", "\"port\" must be an integer 1-65535");
        bad_binding("{\"name\":\"a\",\"port\":0}", "\"port\" must be an integer 1-65535");
        bad_binding("{\"name\":\"a\",\"port\":65536}", "\"port\" must be an integer 1-65535");
        bad_binding("{\"name\":\"a\",\"port\":\"80\"}", "\"port\" must be an integer 1-65535");
        bad_binding("{\"name\":\"a\",\"port\":80,\"relay_port\":1e10}", "\"relay_port\" must be an integer 1-65535");
        bad_binding("{\"name\":\"a\",\"port\":80,\"state\":1}", "\"state\" must be a string");
        bad_binding("{\"name\":\"a\",\"port\":80,\"protected\":\"no\"}", "\"protected\" must be true or false");
        bad_binding("{\"name\":\"a\",\"port\":80,\"bytes_in\":-1}",
                    "\"bytes_in\" must be an integer 0-18446744073709551615");
        bad_binding("{\"name\":\"a\",\"port\":80,\"connected_since\":\"yesterday\"}",
                    "\"connected_since\" must be an RFC 3339 time or null");
        bad_binding("{\"name\":\"a\",\"port\":80,\"next_attempt\":12}", "\"next_attempt\" must be a string");
}
END_TEST

/* ---- add ------------------------------------------------------------------------------ */

START_TEST(test_add_round_trip) {
        struct proto_add in = {
                .name = "web", .host = "localhost", .port = 80, .type = "http", .display_name = "Web",
                .protected_ = true, .username = "u", .password = "p w", .socket_id = "sid", .remote_port = 9000,
                .edge_log = "no",
        }, out = {}, minimal = { .name = "m", .port = 1 };
        char *line, *error = NULL;
        cJSON *j, *back;

        j = proto_add_to_json(&in);
        line = proto_encode_line(j, NULL);
        back = cJSON_Parse(line);
        ck_assert_int_eq(proto_add_from_json(back, &out, &error), 0);
        ck_assert_str_eq(out.name, "web");
        ck_assert_str_eq(out.host, "localhost");
        ck_assert_uint_eq(out.port, 80);
        ck_assert_str_eq(out.type, "http");
        ck_assert_str_eq(out.display_name, "Web");
        ck_assert(out.protected_);
        ck_assert_str_eq(out.username, "u");
        ck_assert_str_eq(out.password, "p w");
        ck_assert_str_eq(out.socket_id, "sid");
        ck_assert_uint_eq(out.remote_port, 9000);
        ck_assert_str_eq(out.edge_log, "no");
        proto_add_clear(&out);
        cJSON_Delete(back);
        cJSON_Delete(j);
        free(line);

        /* Unset settings are left out, so the daemon applies its defaults. */
        j = proto_add_to_json(&minimal);
        line = proto_encode_line(j, NULL);
        ck_assert_str_eq(line, "{\"name\":\"m\",\"port\":1}\n");
        ck_assert_int_eq(proto_add_from_json(j, &out, &error), 0);
        ck_assert_ptr_null(out.host);
        ck_assert_ptr_null(out.type);
        ck_assert(!out.protected_);
        ck_assert_uint_eq(out.remote_port, 0);
        ck_assert(!out.remote_port_any);
        ck_assert_ptr_null(out.edge_log);
        proto_add_clear(&out);
        proto_add_clear(NULL);
        cJSON_Delete(j);
        j = parse("{\"name\":\"m\",\"port\":1,\"remote_port\":0,\"remote_host\":\"0.0.0.0\",\"max_connections\":7}");
        ck_assert_int_eq(proto_add_from_json(j, &out, &error), 0);
        ck_assert(out.remote_port_any);
        ck_assert_uint_eq(out.remote_port, 0);
        ck_assert_str_eq(out.remote_host, "0.0.0.0");
        ck_assert_uint_eq(out.max_connections, 7);
        proto_add_clear(&out);
        cJSON_Delete(j);
        free(line);
}
END_TEST

static void bad_add(const char *json, const char *message) {
        struct proto_add a = {};
        cJSON *o = parse(json);
        char *error = NULL;

        ck_assert_int_eq(proto_add_from_json(o, &a, &error), -EINVAL);
        ck_assert_msg(streq(error, message), "%s: got \"%s\"", json, error);
        ck_assert_ptr_null(a.name);
        free(error);
        cJSON_Delete(o);
}

START_TEST(test_add_malformed) {
        bad_add("\"web\"", "\"binding\" must be a JSON object");
        bad_add("{\"port\":80}", "missing \"name\"");
        bad_add("{\"name\":\"web\"}", "missing \"port\"");
        bad_add("{\"name\":\"web\",\"port\":-1}", "\"port\" must be an integer 1-65535");
        bad_add("{\"name\":\"web\",\"port\":99999999999999999999}", "\"port\" must be an integer 1-65535");
        bad_add("{\"name\":\"web\",\"port\":80.5}", "\"port\" must be an integer 1-65535");
        /* 0 asks the relay to choose (remote_port_any); 65536 is no port. */
        bad_add("{\"name\":\"web\",\"port\":80,\"remote_port\":65536}", "\"remote_port\" must be an integer 0-65535");
        bad_add("{\"name\":5,\"port\":80}", "\"name\" must be a string");
        bad_add("{\"name\":\"web\",\"port\":80,\"host\":[]}", "\"host\" must be a string");
        bad_add("{\"name\":\"web\",\"port\":80,\"host\":\"\"}", "\"host\" must not be empty");
        bad_add("{\"name\":\"web\",\"port\":80,\"password\":1234}", "\"password\" must be a string");
        bad_add("{\"name\":\"web\",\"port\":80,\"protected\":1}", "\"protected\" must be true or false");
        bad_add("{\"name\":\"web\",\"port\":80,\"edge_log\":\"maybe\"}", "\"edge_log\" must be auto, yes or no");
        bad_add("{\"name\":\"web\",\"port\":80,\"type\":\"ftp\"}", "\"type\" must be one of http, https, tcp, tls");
        bad_add("{\"name\":\"web\",\"port\":80,\"remoteport\":80}", "unknown key \"remoteport\" in \"binding\"");
        bad_add("{\"name\":\"-web\",\"port\":80}",
                "\"name\" is not a valid binding name (up to 63 letters, digits, '_', '.' and '-', starting with a letter or digit)");
        bad_add("{\"name\":\"a/b\",\"port\":80}",
                "\"name\" is not a valid binding name (up to 63 letters, digits, '_', '.' and '-', starting with a letter or digit)");
        bad_add("{\"name\":\"\",\"port\":80}",
                "\"name\" is not a valid binding name (up to 63 letters, digits, '_', '.' and '-', starting with a letter or digit)");
}
END_TEST

/* ---- replies and events --------------------------------------------------------------- */

static int reply(const char *line, cJSON **ret, char **error) {
        *ret = NULL;
        *error = NULL;
        return proto_reply_parse(line, strlen(line), ret, error);
}

START_TEST(test_reply_ok_and_error) {
        cJSON *r, *o;
        char *line, *error;
        enum proto_code code;
        const char *msg;

        o = proto_reply_ok();
        cJSON_AddStringToObject(o, "removed", "web");
        line = proto_encode_line(o, NULL);
        ck_assert_str_eq(line, "{\"v\":1,\"ok\":true,\"removed\":\"web\"}\n");
        ck_assert_int_eq(reply(line, &r, &error), 0);
        ck_assert(proto_reply_is_ok(r, &code, &msg));
        ck_assert_int_eq(code, PROTO_CODE_OK);
        ck_assert_ptr_null(msg);
        cJSON_Delete(r);
        cJSON_Delete(o);
        free(line);

        o = proto_reply_error(PROTO_CODE_CONFIG_OWNED, "%s is defined in %s:%d", "web", "/etc/m.ini", 12);
        line = proto_encode_line(o, NULL);
        ck_assert_str_eq(line, "{\"v\":1,\"ok\":false,\"error\":\"web is defined in /etc/m.ini:12\","
                               "\"code\":\"config-owned\"}\n");
        ck_assert_int_eq(reply(line, &r, &error), 0);
        ck_assert(!proto_reply_is_ok(r, &code, &msg));
        ck_assert_int_eq(code, PROTO_CODE_CONFIG_OWNED);
        ck_assert_str_eq(msg, "web is defined in /etc/m.ini:12");
        cJSON_Delete(r);
        cJSON_Delete(o);
        free(line);

        /* An error with a list of errors, and a code this client does not know yet. */
        ck_assert_int_eq(reply("{\"v\":1,\"ok\":false,\"error\":\"2 errors\",\"code\":\"shiny-new\","
                               "\"errors\":[\"a.ini:1: x\",\"a.ini:2: y\"]}", &r, &error), 0);
        ck_assert(!proto_reply_is_ok(r, &code, &msg));
        ck_assert_int_eq(code, PROTO_CODE_INTERNAL);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "errors")), 2);
        cJSON_Delete(r);

        /* No code at all: still an error, reported as internal. */
        ck_assert_int_eq(reply("{\"v\":1,\"ok\":false,\"error\":\"boom\"}", &r, &error), 0);
        ck_assert(!proto_reply_is_ok(r, &code, NULL));
        ck_assert_int_eq(code, PROTO_CODE_INTERNAL);
        cJSON_Delete(r);

        /* PROTO_CODE_OK makes no sense for an error; it goes out as internal. */
        o = proto_reply_error(PROTO_CODE_OK, "x");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "code")->valuestring, "internal");
        cJSON_Delete(o);
}
END_TEST

static void bad_reply(const char *line, const char *needle) {
        cJSON *r;
        char *error;

        ck_assert_msg(reply(line, &r, &error) == -EINVAL, "accepted: %s", line);
        ck_assert_ptr_null(r);
        ck_assert_msg(strstr(error, needle), "%s: \"%s\" lacks \"%s\"", line, error, needle);
        free(error);
}

START_TEST(test_reply_malformed) {
        bad_reply("", "not valid JSON");
        bad_reply("[true]", "must be a JSON object");
        bad_reply("{\"ok\":true}", "supported protocol version");
        bad_reply("{\"v\":3,\"ok\":true}", "\"v\" must be 1");
        bad_reply("{\"v\":1}", "missing \"ok\"");
        bad_reply("{\"v\":1,\"ok\":\"true\"}", "\"ok\" must be true or false");
        bad_reply("{\"v\":1,\"ok\":false}", "missing \"error\"");
        bad_reply("{\"v\":1,\"ok\":false,\"error\":5}", "\"error\" must be a string");
        bad_reply("{\"v\":1,\"ok\":false,\"error\":\"x\",\"code\":5}", "\"code\" must be a string");
        bad_reply("{\"v\":1,\"event\":\"up\"}", "missing \"ok\"");
        bad_reply("{\"v\":1,\"ok\":true,\"x\":\"\xff\"}", "UTF-8");
}
END_TEST

START_TEST(test_event) {
        struct proto_event in = { .time = 1700000000ULL * 1000000, .priority = "warning", .binding = "web",
                                  .event = "backoff", .message = "web: relay refused; retrying in 8 s" },
                           out = {};
        cJSON *line_obj, *r;
        char *line, *error = NULL;

        line_obj = proto_event_line(proto_event_to_json(&in));
        line = proto_encode_line(line_obj, NULL);
        ck_assert_str_eq(line, "{\"v\":1,\"event\":{\"time\":\"2023-11-14T22:13:20Z\",\"priority\":\"warning\","
                               "\"binding\":\"web\",\"event\":\"backoff\","
                               "\"message\":\"web: relay refused; retrying in 8 s\"}}\n");
        ck_assert_int_eq(reply(line, &r, &error), 0);
        ck_assert_int_eq(proto_event_from_json(cJSON_GetObjectItemCaseSensitive(r, "event"), &out, &error), 0);
        ck_assert_uint_eq(out.time, in.time);
        ck_assert_str_eq(out.priority, "warning");
        ck_assert_str_eq(out.binding, "web");
        ck_assert_str_eq(out.event, "backoff");
        ck_assert_str_eq(out.message, in.message);
        proto_event_clear(&out);
        cJSON_Delete(r);
        cJSON_Delete(line_obj);
        free(line);

        /* binding and event may be null; the message may not be missing. */
        r = parse("{\"time\":\"2023-11-14T22:13:20Z\",\"priority\":\"info\",\"binding\":null,\"event\":null,"
                  "\"message\":\"started\"}");
        ck_assert_int_eq(proto_event_from_json(r, &out, &error), 0);
        ck_assert_ptr_null(out.binding);
        proto_event_clear(&out);
        cJSON_Delete(r);
        r = parse("{\"time\":\"2023-11-14T22:13:20Z\"}");
        ck_assert_int_eq(proto_event_from_json(r, &out, &error), -EINVAL);
        ck_assert_str_eq(error, "missing \"message\"");
        free(error);
        cJSON_Delete(r);
}
END_TEST

START_TEST(test_encode_limit) {
        size_t n = PROTO_REPLY_MAX, len;
        char *big = xmalloc(n + 1), *line;
        cJSON *o = proto_reply_ok();
        cJSON *r;
        char *error = NULL;

        memset(big, 'x', n);
        big[n] = '\0';
        cJSON_AddStringToObject(o, "pad", big);
        ck_assert_ptr_null(proto_encode_line(o, NULL));
        cJSON_Delete(o);

        /* A reply past the 64 KiB request limit (a list of 200 bindings) is still one line,
         * and parses as a reply but not as a request. */
        big[PROTO_LINE_MAX] = '\0';
        o = proto_reply_ok();
        cJSON_AddStringToObject(o, "pad", big);
        line = proto_encode_line(o, &len);
        ck_assert_ptr_nonnull(line);
        ck_assert_int_eq(proto_reply_parse(line, len, &r, &error), 0);
        cJSON_Delete(r);
        const char *cmd;
        ck_assert_int_eq(proto_request_parse(line, len, &r, &cmd, &error), -EINVAL);
        ck_assert_str_eq(error, "request line too long: the limit is 65536 bytes");
        free(error);
        free(line);
        cJSON_Delete(o);

        /* Control characters and quotes are escaped: one line stays one line. */
        o = proto_reply_ok();
        cJSON_AddStringToObject(o, "s", "a\nb\r\"c\"\t");
        line = proto_encode_line(o, NULL);
        ck_assert_str_eq(line, "{\"v\":1,\"ok\":true,\"s\":\"a\\nb\\r\\\"c\\\"\\t\"}\n");
        free(line);
        cJSON_Delete(o);
        free(big);
}
END_TEST

static char *slurp(const char *rel) {
        char *path = xasprintf("%s/%s", TEST_SRCDIR, rel);
        FILE *f = fopen(path, "r");
        ck_assert_msg(f, "cannot open %s", path);
        char *buf = xmalloc(1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = '\0';
        fclose(f);
        free(path);
        return buf;
}

/* Every word protocol-keys.h names (the only spelling both sides use) is documented in
 * docs/PROTOCOL.md, as "word" (JSON) or `word` (prose): the two cannot drift apart. */
START_TEST(test_keys_documented) {
        char *keys = slurp("common/protocol-keys.h"), *doc = slurp("docs/PROTOCOL.md");
        unsigned n = 0;
        for (char *line = strtok(keys, "\n"); line; line = strtok(NULL, "\n")) {
                char name[64], value[64];
                if (sscanf(line, "#define %63[A-Z_] \"%63[^\"]\"", name, value) != 2)
                        continue;
                char *quoted = xasprintf("\"%s\"", value), *ticked = xasprintf("`%s`", value);
                ck_assert_msg(strstr(doc, quoted) || strstr(doc, ticked), "%s (%s) is not in docs/PROTOCOL.md", name, value);
                free(quoted);
                free(ticked);
                n++;
        }
        ck_assert_uint_ge(n, 90);       /* the parse found them */
        free(keys);
        free(doc);
}
END_TEST

static Suite *protocol_suite(void) {
        Suite *s = suite_create("protocol");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_codes);
        tcase_add_test(tc, test_request_ok);
        tcase_add_test(tc, test_request_malformed);
        tcase_add_test(tc, test_request_version);
        tcase_add_test(tc, test_request_cmd);
        tcase_add_test(tc, test_request_bytes);
        tcase_add_test(tc, test_request_size);
        tcase_add_test(tc, test_get_uint);
        tcase_add_test(tc, test_get_string_bool);
        tcase_add_test(tc, test_binding_round_trip);
        tcase_add_test(tc, test_binding_nulls);
        tcase_add_test(tc, test_binding_malformed);
        tcase_add_test(tc, test_add_round_trip);
        tcase_add_test(tc, test_add_malformed);
        tcase_add_test(tc, test_reply_ok_and_error);
        tcase_add_test(tc, test_reply_malformed);
        tcase_add_test(tc, test_event);
        tcase_add_test(tc, test_encode_limit);
        tcase_add_test(tc, test_keys_documented);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(protocol_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
