/* libFuzzer target for the control-protocol decoder (common/protocol.c).
 *
 * The input is one line as it comes off the control socket. It goes through both line
 * parsers (request and reply); whatever parses is re-encoded with proto_encode_line(),
 * which must parse again to the same command and encode to the same bytes. The object
 * decoders (binding, add, event) run on the object itself, on every object value in it and
 * on every object in its arrays, i.e. wherever the protocol nests them ("binding",
 * "bindings", "event", "events"); what they accept must survive to_json -> line -> parse ->
 * from_json unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "util.h"

#define CHECK(cond, ...)                                                        \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "fuzz-protocol: " __VA_ARGS__);         \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

/* Encodes o as a line and parses it back as a plain JSON object. */
static cJSON *through_the_wire(cJSON *o) {
        size_t len;
        _cleanup_(freep) char *line = proto_encode_line(o, &len);
        cJSON_Delete(o);
        if (!line)
                return NULL;
        CHECK(len > 0 && line[len - 1] == '\n' && !memchr(line, '\n', len - 1),
              "an encoded line holds a raw newline");
        cJSON *back = cJSON_ParseWithLength(line, len);
        CHECK(back, "an encoded line is not JSON: %s", line);
        return back;
}

static void binding_round_trip(const struct proto_binding *b) {
        cJSON *j = through_the_wire(proto_binding_to_json(b));
        if (!j)
                return;         /* longer than a line: refused, not mangled */
        struct proto_binding c = {};
        char *error = NULL;
        CHECK(proto_binding_from_json(j, &c, &error) == 0,
              "an encoded binding does not decode: %s", error);
        CHECK(streq_ptr(b->name, c.name) && streq_ptr(b->source, c.source) && streq_ptr(b->type, c.type) &&
              streq_ptr(b->host, c.host) && b->port == c.port && streq_ptr(b->display_name, c.display_name) &&
              b->protected_ == c.protected_ && streq_ptr(b->username, c.username) &&
              b->remote_port == c.remote_port && streq_ptr(b->state, c.state) &&
              streq_ptr(b->public_url, c.public_url) && streq_ptr(b->socket_id, c.socket_id) &&
              streq_ptr(b->tunnel_id, c.tunnel_id) && b->relay_port == c.relay_port &&
              b->connected_since == c.connected_since && b->reconnects == c.reconnects &&
              b->connections_active == c.connections_active && b->connections_total == c.connections_total &&
              b->bytes_in == c.bytes_in && b->bytes_out == c.bytes_out && streq_ptr(b->last_error, c.last_error) &&
              b->next_attempt == c.next_attempt && streq_ptr(b->defined_at, c.defined_at),
              "a binding changes on its way through the wire (%s)", b->name);
        proto_binding_clear(&c);
        cJSON_Delete(j);
}

static void add_round_trip(const struct proto_add *a) {
        cJSON *j = through_the_wire(proto_add_to_json(a));
        if (!j)
                return;
        struct proto_add c = {};
        char *error = NULL;
        CHECK(proto_add_from_json(j, &c, &error) == 0, "an encoded add does not decode: %s", error);
        CHECK(streq_ptr(a->name, c.name) && streq_ptr(a->host, c.host) && a->port == c.port &&
              streq_ptr(a->type, c.type) && streq_ptr(a->display_name, c.display_name) &&
              a->protected_ == c.protected_ && streq_ptr(a->username, c.username) &&
              streq_ptr(a->password, c.password) && streq_ptr(a->socket_id, c.socket_id) &&
              a->remote_port == c.remote_port,
              "an add changes on its way through the wire (%s)", a->name);
        proto_add_clear(&c);
        cJSON_Delete(j);
}

static void event_round_trip(const struct proto_event *e) {
        cJSON *j = through_the_wire(proto_event_line(proto_event_to_json(e)));
        if (!j)
                return;
        struct proto_event c = {};
        char *error = NULL;
        CHECK(proto_event_from_json(cJSON_GetObjectItemCaseSensitive(j, "event"), &c, &error) == 0,
              "an encoded event does not decode: %s", error);
        CHECK(e->time == c.time && streq_ptr(e->priority, c.priority) && streq_ptr(e->binding, c.binding) &&
              streq_ptr(e->event, c.event) && streq_ptr(e->message, c.message),
              "an event changes on its way through the wire");
        proto_event_clear(&c);
        cJSON_Delete(j);
}

/* Every decoder on one object; a refusal must say why, an acceptance must round-trip. */
static void decode_all(const cJSON *o) {
        char *error = NULL;
        struct proto_binding b = {};
        if (proto_binding_from_json(o, &b, &error) == 0) {
                CHECK(!error && b.name && b.port, "binding decoded incompletely");
                binding_round_trip(&b);
                proto_binding_clear(&b);
        } else {
                CHECK(error, "binding refused without a reason");
                free(error);
                error = NULL;
        }

        struct proto_add a = {};
        if (proto_add_from_json(o, &a, &error) == 0) {
                CHECK(!error && binding_name_valid(a.name) && a.port, "add decoded incompletely");
                CHECK(!a.type || proto_type_valid(a.type), "add accepted type %s", a.type);
                add_round_trip(&a);
                proto_add_clear(&a);
        } else {
                CHECK(error, "add refused without a reason");
                free(error);
                error = NULL;
        }

        struct proto_event e = {};
        if (proto_event_from_json(o, &e, &error) == 0) {
                CHECK(!error && e.message, "event decoded incompletely");
                event_round_trip(&e);
                proto_event_clear(&e);
        } else {
                CHECK(error, "event refused without a reason");
                free(error);
        }
}

static void decode_nested(const cJSON *o) {
        const cJSON *i, *k;
        decode_all(o);
        cJSON_ArrayForEach(i, o) {
                if (cJSON_IsObject(i))
                        decode_all(i);
                else if (cJSON_IsArray(i))
                        cJSON_ArrayForEach(k, i)
                                if (cJSON_IsObject(k))
                                        decode_all(k);
        }
}

/* The typed getters the daemon uses on request arguments. */
static void getters(const cJSON *o) {
        static const char *const keys[] = { "name", "purge", "follow", "lines", "v", "cmd", "binding" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *s;
                bool b;
                uint64_t u;
                char *error = NULL;
                if (proto_get_string(o, keys[i], false, &s, &error) < 0)
                        free(error), error = NULL;
                if (proto_get_bool(o, keys[i], false, &b, &error) < 0)
                        free(error), error = NULL;
                if (proto_get_uint(o, keys[i], 1000, 100, &u, &error) < 0)
                        free(error), error = NULL;
                else
                        CHECK(u <= 1000, "proto_get_uint returned %llu > max", (unsigned long long) u);
        }
}

/* encode(parse(line)) parses again, to the same bytes once more. */
static void reencode(const cJSON *o, bool request, const char *cmd) {
        size_t len, len2;
        _cleanup_(freep) char *line = proto_encode_line(o, &len);
        if (!line)
                return;
        CHECK(len == strlen(line) && line[len - 1] == '\n', "proto_encode_line: bad length");
        cJSON *back = NULL;
        const char *cmd2 = NULL;
        char *error = NULL;
        int r = request ? proto_request_parse(line, len, &back, &cmd2, &error)
                        : proto_reply_parse(line, len, &back, &error);
        CHECK(r == 0, "a re-encoded %s does not parse: %s\n%s", request ? "request" : "reply", error, line);
        CHECK(!request || streq(cmd, cmd2), "re-encoding changed the command");
        _cleanup_(freep) char *line2 = proto_encode_line(back, &len2);
        CHECK(line2 && len == len2 && memcmp(line, line2, len) == 0,
              "encoding is not stable:\n%s%s", line, line2 ? line2 : "(null)\n");
        cJSON_Delete(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *line = (const char *) data;
        cJSON *o = NULL;
        const char *cmd = NULL;
        char *error = NULL;

        if (proto_request_parse(line, size, &o, &cmd, &error) == 0) {
                CHECK(!error && cmd && *cmd && cJSON_IsObject(o), "request parsed incompletely");
                getters(o);
                decode_nested(o);
                reencode(o, true, cmd);
                cJSON_Delete(o);
        } else {
                CHECK(error, "request refused without a reason");
                free(error);
        }

        o = NULL;
        error = NULL;
        if (proto_reply_parse(line, size, &o, &error) == 0) {
                enum proto_code code;
                const char *message;
                CHECK(!error && cJSON_IsObject(o), "reply parsed incompletely");
                if (!proto_reply_is_ok(o, &code, &message))
                        CHECK(message && (unsigned) code < _PROTO_CODE_MAX && code != PROTO_CODE_OK,
                              "a failed reply without message or code");
                decode_nested(o);
                reencode(o, false, NULL);
                cJSON_Delete(o);
        } else {
                CHECK(error, "reply refused without a reason");
                free(error);
        }
        return 0;
}
