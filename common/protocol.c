/* The control protocol: the only place that knows the wire format's field names.
 * See protocol.h for the contracts and docs/PROTOCOL.md for the protocol itself. */
#include "protocol.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const code_names[_PROTO_CODE_MAX] = {
        [PROTO_CODE_OK] = "ok",
        [PROTO_CODE_EXISTS] = "exists",
        [PROTO_CODE_NOT_FOUND] = "not-found",
        [PROTO_CODE_INVALID] = "invalid",
        [PROTO_CODE_CONFIG_OWNED] = "config-owned",
        [PROTO_CODE_PERMISSION] = "permission",
        [PROTO_CODE_UNAVAILABLE] = "unavailable",
        [PROTO_CODE_INTERNAL] = "internal",
};

const char *proto_code_to_string(enum proto_code c) {
        if ((unsigned) c >= _PROTO_CODE_MAX)
                return "internal";
        return code_names[c];
}

enum proto_code proto_code_from_string(const char *s) {
        for (size_t i = 0; i < _PROTO_CODE_MAX; i++)
                if (streq(code_names[i], s))
                        return (enum proto_code) i;
        return PROTO_CODE_INTERNAL;
}

static const char *const binding_types[] = { "http", "https", "tcp", "tls" };

bool proto_type_valid(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(binding_types); i++)
                if (streq(binding_types[i], type))
                        return true;
        return false;
}

/* ---- raw-byte checks cJSON does not do ------------------------------------------------ */

/* cJSON decodes "\u0000" into a C string and silently truncates it there; a name that
 * means one thing to us and another to the sender is worse than an error. */
static bool has_escaped_nul(const char *s, size_t len) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                if (!in_string) {
                        if (s[i] == '"')
                                in_string = true;
                        continue;
                }
                if (s[i] == '"')
                        in_string = false;
                else if (s[i] == '\\') {
                        if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
                                return true;
                        i++;    /* skip the escaped character */
                }
        }
        return false;
}

static int parse_line(const char *line, size_t len, const char *what, cJSON **ret, char **error) {
        const char *end = NULL;
        cJSON *o;

        if (len > 0 && line[len - 1] == '\n')
                len--;
        if (len + 1 > PROTO_LINE_MAX) {
                *error = xasprintf("%s line too long: the limit is %d bytes", what, PROTO_LINE_MAX);
                return -EINVAL;
        }
        if (!utf8_valid(line, len)) {
                *error = xasprintf("%s is not valid UTF-8 text (or contains a NUL byte)", what);
                return -EINVAL;
        }
        if (has_escaped_nul(line, len)) {
                *error = xasprintf("%s contains an escaped NUL character (\\u0000)", what);
                return -EINVAL;
        }
        o = cJSON_ParseWithLengthOpts(line, len, &end, false);
        if (!o) {
                *error = xasprintf("%s is not valid JSON", what);
                return -EINVAL;
        }
        while (end && end < line + len && strchr(" \t\r", *end))
                end++;
        if (end != line + len) {
                cJSON_Delete(o);
                *error = xasprintf("%s has trailing data after the JSON object", what);
                return -EINVAL;
        }
        if (!cJSON_IsObject(o)) {
                cJSON_Delete(o);
                *error = xasprintf("%s must be a JSON object", what);
                return -EINVAL;
        }
        *ret = o;
        return 0;
}

static int check_version(const cJSON *o, char **error) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");

        if (!v) {
                *error = xasprintf("missing \"v\": the supported protocol version is %d", PROTO_VERSION);
                return -EINVAL;
        }
        if (!cJSON_IsNumber(v) || v->valuedouble != PROTO_VERSION) {
                *error = xasprintf("unsupported protocol version: \"v\" must be %d", PROTO_VERSION);
                return -EINVAL;
        }
        return 0;
}

/* ---- typed getters -------------------------------------------------------------------- */

int proto_get_string(const cJSON *o, const char *key, bool required, const char **ret, char **error) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!i || cJSON_IsNull(i)) {
                if (required) {
                        *error = xasprintf("missing \"%s\"", key);
                        return -EINVAL;
                }
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsString(i) || !i->valuestring) {
                *error = xasprintf("\"%s\" must be a string", key);
                return -EINVAL;
        }
        *ret = i->valuestring;
        return 0;
}

int proto_get_bool(const cJSON *o, const char *key, bool def, bool *ret, char **error) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!i || cJSON_IsNull(i)) {
                *ret = def;
                return 0;
        }
        if (!cJSON_IsBool(i)) {
                *error = xasprintf("\"%s\" must be true or false", key);
                return -EINVAL;
        }
        *ret = cJSON_IsTrue(i);
        return 0;
}

/* An exact non-negative integer in [min, max]; cJSON keeps numbers as doubles. */
static bool number_in_range(const cJSON *i, uint64_t min, uint64_t max, uint64_t *ret) {
        double d;

        if (cJSON_IsRaw(i) && i->valuestring) {
                /* Our own add_uint() output, when a tree is read back without printing it. */
                char *end;

                errno = 0;
                unsigned long long v = strtoull(i->valuestring, &end, 10);
                if (errno || *end || !*i->valuestring || *i->valuestring == '-' || v < min || v > max)
                        return false;
                *ret = v;
                return true;
        }
        if (!cJSON_IsNumber(i))
                return false;
        d = i->valuedouble;
        /* 18446744073709551616.0 is 2^64: every double below it fits a uint64_t. */
        if (!isfinite(d) || d < 0 || d != floor(d) || d >= 18446744073709551616.0)
                return false;
        if ((uint64_t) d < min || (uint64_t) d > max)
                return false;
        *ret = (uint64_t) d;
        return true;
}

static int get_uint_range(const cJSON *o, const char *key, uint64_t min, uint64_t max, uint64_t def,
                          uint64_t *ret, char **error) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!i || cJSON_IsNull(i)) {
                *ret = def;
                return 0;
        }
        if (!number_in_range(i, min, max, ret)) {
                *error = xasprintf("\"%s\" must be an integer %" PRIu64 "-%" PRIu64, key, min, max);
                return -EINVAL;
        }
        return 0;
}

int proto_get_uint(const cJSON *o, const char *key, uint64_t max, uint64_t def, uint64_t *ret, char **error) {
        return get_uint_range(o, key, 0, max, def, ret, error);
}

/* A port that may be absent or null (0). */
static int get_port(const cJSON *o, const char *key, bool required, uint16_t *ret, char **error) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
        uint64_t v;
        int r;

        if (required && (!i || cJSON_IsNull(i))) {
                *error = xasprintf("missing \"%s\"", key);
                return -EINVAL;
        }
        r = get_uint_range(o, key, 1, 65535, 0, &v, error);
        if (r < 0)
                return r;
        *ret = (uint16_t) v;
        return 0;
}

static int get_string_dup(const cJSON *o, const char *key, bool required, char **ret, char **error) {
        const char *s;
        int r;

        r = proto_get_string(o, key, required, &s, error);
        if (r < 0)
                return r;
        *ret = xstrdup(s);
        return 0;
}

static int get_time(const cJSON *o, const char *key, uint64_t *ret, char **error) {
        const char *s;
        int r;

        r = proto_get_string(o, key, false, &s, error);
        if (r < 0)
                return r;
        if (!s) {
                *ret = 0;
                return 0;
        }
        if (parse_rfc3339(s, ret) < 0) {
                *error = xasprintf("\"%s\" must be an RFC 3339 time or null", key);
                return -EINVAL;
        }
        return 0;
}

/* ---- builders ------------------------------------------------------------------------- */

static void add_string_or_null(cJSON *o, const char *key, const char *s) {
        if (s)
                cJSON_AddStringToObject(o, key, s);
        else
                cJSON_AddNullToObject(o, key);
}

static void add_uint(cJSON *o, const char *key, uint64_t v) {
        char buf[32];

        /* cJSON prints numbers with 15 significant digits when that reads back within an
         * epsilon, which is off by a few units for counters of 10^15 and more: print those
         * ourselves (exact as far as a double can hold them, 2^53). */
        if (v < UINT64_C(1000000000000000)) {
                cJSON_AddNumberToObject(o, key, (double) v);
                return;
        }
        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        cJSON_AddRawToObject(o, key, buf);
}

static void add_port_or_null(cJSON *o, const char *key, uint16_t port) {
        if (port)
                add_uint(o, key, port);
        else
                cJSON_AddNullToObject(o, key);
}

static void add_time_or_null(cJSON *o, const char *key, uint64_t usec) {
        char buf[32];

        if (usec)
                cJSON_AddStringToObject(o, key, format_rfc3339(usec, buf));
        else
                cJSON_AddNullToObject(o, key);
}

static cJSON *new_object(void) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                abort();        /* out of memory, the same policy as xmalloc */
        return o;
}

/* ---- binding -------------------------------------------------------------------------- */

void proto_binding_clear(struct proto_binding *b) {
        if (!b)
                return;
        free(b->name);
        free(b->source);
        free(b->type);
        free(b->host);
        free(b->display_name);
        free(b->username);
        free(b->state);
        free(b->public_url);
        free(b->socket_id);
        free(b->tunnel_id);
        free(b->last_error);
        free(b->defined_at);
        *b = (struct proto_binding) {};
}

cJSON *proto_binding_to_json(const struct proto_binding *b) {
        cJSON *o = new_object();

        add_string_or_null(o, "name", b->name);
        add_string_or_null(o, "source", b->source);
        add_string_or_null(o, "type", b->type);
        add_string_or_null(o, "host", b->host);
        add_uint(o, "port", b->port);
        add_string_or_null(o, "state", b->state);
        add_string_or_null(o, "public_url", b->public_url);
        add_string_or_null(o, "socket_id", b->socket_id);
        add_string_or_null(o, "tunnel_id", b->tunnel_id);
        add_port_or_null(o, "relay_port", b->relay_port);
        add_time_or_null(o, "connected_since", b->connected_since);
        add_uint(o, "reconnects", b->reconnects);
        add_uint(o, "connections_active", b->connections_active);
        add_uint(o, "connections_total", b->connections_total);
        add_uint(o, "bytes_in", b->bytes_in);
        add_uint(o, "bytes_out", b->bytes_out);
        add_string_or_null(o, "last_error", b->last_error);
        add_time_or_null(o, "next_attempt", b->next_attempt);
        add_string_or_null(o, "display_name", b->display_name);
        cJSON_AddBoolToObject(o, "protected", b->protected_);
        add_string_or_null(o, "username", b->username);
        add_port_or_null(o, "remote_port", b->remote_port);
        add_string_or_null(o, "defined_at", b->defined_at);
        return o;
}

int proto_binding_from_json(const cJSON *o, struct proto_binding *ret, char **error) {
        struct proto_binding b = {};
        int r;

        if (!cJSON_IsObject(o)) {
                *error = xstrdup("a binding must be a JSON object");
                return -EINVAL;
        }
        if ((r = get_string_dup(o, "name", true, &b.name, error)) < 0 ||
            (r = get_string_dup(o, "source", false, &b.source, error)) < 0 ||
            (r = get_string_dup(o, "type", false, &b.type, error)) < 0 ||
            (r = get_string_dup(o, "host", false, &b.host, error)) < 0 ||
            (r = get_port(o, "port", true, &b.port, error)) < 0 ||
            (r = get_string_dup(o, "state", false, &b.state, error)) < 0 ||
            (r = get_string_dup(o, "public_url", false, &b.public_url, error)) < 0 ||
            (r = get_string_dup(o, "socket_id", false, &b.socket_id, error)) < 0 ||
            (r = get_string_dup(o, "tunnel_id", false, &b.tunnel_id, error)) < 0 ||
            (r = get_port(o, "relay_port", false, &b.relay_port, error)) < 0 ||
            (r = get_time(o, "connected_since", &b.connected_since, error)) < 0 ||
            (r = proto_get_uint(o, "reconnects", UINT64_MAX, 0, &b.reconnects, error)) < 0 ||
            (r = proto_get_uint(o, "connections_active", UINT64_MAX, 0, &b.connections_active, error)) < 0 ||
            (r = proto_get_uint(o, "connections_total", UINT64_MAX, 0, &b.connections_total, error)) < 0 ||
            (r = proto_get_uint(o, "bytes_in", UINT64_MAX, 0, &b.bytes_in, error)) < 0 ||
            (r = proto_get_uint(o, "bytes_out", UINT64_MAX, 0, &b.bytes_out, error)) < 0 ||
            (r = get_string_dup(o, "last_error", false, &b.last_error, error)) < 0 ||
            (r = get_time(o, "next_attempt", &b.next_attempt, error)) < 0 ||
            (r = get_string_dup(o, "display_name", false, &b.display_name, error)) < 0 ||
            (r = proto_get_bool(o, "protected", false, &b.protected_, error)) < 0 ||
            (r = get_string_dup(o, "username", false, &b.username, error)) < 0 ||
            (r = get_port(o, "remote_port", false, &b.remote_port, error)) < 0 ||
            (r = get_string_dup(o, "defined_at", false, &b.defined_at, error)) < 0)
                goto out;

        *ret = b;
        return 0;
out:
        proto_binding_clear(&b);
        return r;
}

/* ---- add ------------------------------------------------------------------------------ */

void proto_add_clear(struct proto_add *a) {
        if (!a)
                return;
        free(a->name);
        free(a->host);
        free(a->type);
        free(a->display_name);
        free(a->username);
        free(a->password);
        free(a->socket_id);
        *a = (struct proto_add) {};
}

static void add_string_if(cJSON *o, const char *key, const char *s) {
        if (s)
                cJSON_AddStringToObject(o, key, s);
}

cJSON *proto_add_to_json(const struct proto_add *a) {
        cJSON *o = new_object();

        add_string_if(o, "name", a->name);
        add_uint(o, "port", a->port);
        add_string_if(o, "host", a->host);
        add_string_if(o, "type", a->type);
        add_string_if(o, "display_name", a->display_name);
        if (a->protected_)
                cJSON_AddTrueToObject(o, "protected");
        add_string_if(o, "username", a->username);
        add_string_if(o, "password", a->password);
        add_string_if(o, "socket_id", a->socket_id);
        if (a->remote_port)
                add_uint(o, "remote_port", a->remote_port);
        return o;
}

static const char *const add_keys[] = {
        "name", "host", "port", "type", "display_name", "protected",
        "username", "password", "socket_id", "remote_port",
};

int proto_add_from_json(const cJSON *o, struct proto_add *ret, char **error) {
        struct proto_add a = {};
        const cJSON *i;
        int r;

        if (!cJSON_IsObject(o)) {
                *error = xstrdup("\"binding\" must be a JSON object");
                return -EINVAL;
        }
        /* A misspelt key ("remoteport") silently ignored would build the wrong binding. */
        cJSON_ArrayForEach(i, o) {
                bool known = false;

                for (size_t k = 0; k < ELEMENTSOF(add_keys); k++)
                        if (streq(add_keys[k], i->string))
                                known = true;
                if (!known) {
                        *error = xasprintf("unknown key \"%s\" in \"binding\"", i->string ?: "");
                        return -EINVAL;
                }
        }

        if ((r = get_string_dup(o, "name", true, &a.name, error)) < 0 ||
            (r = get_string_dup(o, "host", false, &a.host, error)) < 0 ||
            (r = get_port(o, "port", true, &a.port, error)) < 0 ||
            (r = get_string_dup(o, "type", false, &a.type, error)) < 0 ||
            (r = get_string_dup(o, "display_name", false, &a.display_name, error)) < 0 ||
            (r = proto_get_bool(o, "protected", false, &a.protected_, error)) < 0 ||
            (r = get_string_dup(o, "username", false, &a.username, error)) < 0 ||
            (r = get_string_dup(o, "password", false, &a.password, error)) < 0 ||
            (r = get_string_dup(o, "socket_id", false, &a.socket_id, error)) < 0 ||
            (r = get_port(o, "remote_port", false, &a.remote_port, error)) < 0)
                goto out;

        r = -EINVAL;
        if (!binding_name_valid(a.name)) {
                *error = xasprintf("\"name\" must be 1-%d characters of A-Z a-z 0-9 _ . -, "
                                   "starting with a letter or digit", BINDING_NAME_MAX);
                goto out;
        }
        if (a.type && !proto_type_valid(a.type)) {
                *error = xstrdup("\"type\" must be one of http, https, tcp, tls");
                goto out;
        }
        if (a.host && !*a.host) {
                *error = xstrdup("\"host\" must not be empty");
                goto out;
        }

        *ret = a;
        return 0;
out:
        proto_add_clear(&a);
        return r;
}

/* ---- events --------------------------------------------------------------------------- */

void proto_event_clear(struct proto_event *e) {
        if (!e)
                return;
        free(e->priority);
        free(e->binding);
        free(e->event);
        free(e->message);
        *e = (struct proto_event) {};
}

cJSON *proto_event_to_json(const struct proto_event *e) {
        cJSON *o = new_object();

        add_time_or_null(o, "time", e->time);
        add_string_or_null(o, "priority", e->priority);
        add_string_or_null(o, "binding", e->binding);
        add_string_or_null(o, "event", e->event);
        add_string_or_null(o, "message", e->message);
        return o;
}

int proto_event_from_json(const cJSON *o, struct proto_event *ret, char **error) {
        struct proto_event e = {};
        int r;

        if (!cJSON_IsObject(o)) {
                *error = xstrdup("an event must be a JSON object");
                return -EINVAL;
        }
        if ((r = get_time(o, "time", &e.time, error)) < 0 ||
            (r = get_string_dup(o, "priority", false, &e.priority, error)) < 0 ||
            (r = get_string_dup(o, "binding", false, &e.binding, error)) < 0 ||
            (r = get_string_dup(o, "event", false, &e.event, error)) < 0 ||
            (r = get_string_dup(o, "message", true, &e.message, error)) < 0) {
                proto_event_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

cJSON *proto_event_line(cJSON *event) {
        cJSON *o = new_object();

        cJSON_AddNumberToObject(o, "v", PROTO_VERSION);
        cJSON_AddItemToObject(o, "event", event);
        return o;
}

/* ---- requests ------------------------------------------------------------------------- */

cJSON *proto_request_new(const char *cmd) {
        cJSON *o = new_object();

        cJSON_AddNumberToObject(o, "v", PROTO_VERSION);
        cJSON_AddStringToObject(o, "cmd", cmd);
        return o;
}

int proto_request_parse(const char *line, size_t len, cJSON **ret, const char **cmd, char **error) {
        cJSON *o = NULL;
        const char *c;
        int r;

        r = parse_line(line, len, "request", &o, error);
        if (r < 0)
                return r;
        r = check_version(o, error);
        if (r < 0)
                goto out;
        r = proto_get_string(o, "cmd", true, &c, error);
        if (r < 0)
                goto out;
        if (!*c) {
                *error = xstrdup("\"cmd\" must not be empty");
                r = -EINVAL;
                goto out;
        }
        *ret = o;
        *cmd = c;
        return 0;
out:
        cJSON_Delete(o);
        return r;
}

/* ---- replies -------------------------------------------------------------------------- */

cJSON *proto_reply_ok(void) {
        cJSON *o = new_object();

        cJSON_AddNumberToObject(o, "v", PROTO_VERSION);
        cJSON_AddTrueToObject(o, "ok");
        return o;
}

cJSON *proto_reply_error(enum proto_code code, const char *fmt, ...) {
        cJSON *o = new_object();
        va_list ap;
        char *msg;

        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);

        cJSON_AddNumberToObject(o, "v", PROTO_VERSION);
        cJSON_AddFalseToObject(o, "ok");
        cJSON_AddStringToObject(o, "error", msg);
        cJSON_AddStringToObject(o, "code", proto_code_to_string(code == PROTO_CODE_OK ? PROTO_CODE_INTERNAL : code));
        free(msg);
        return o;
}

int proto_reply_parse(const char *line, size_t len, cJSON **ret, char **error) {
        cJSON *o = NULL;
        const cJSON *ok, *event;
        int r;

        r = parse_line(line, len, "reply", &o, error);
        if (r < 0)
                return r;
        r = check_version(o, error);
        if (r < 0)
                goto out;

        r = -EINVAL;
        ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
        event = cJSON_GetObjectItemCaseSensitive(o, "event");
        if (!ok && cJSON_IsObject(event))
                goto done;      /* a streamed event line */
        if (!cJSON_IsBool(ok)) {
                *error = xstrdup(ok ? "\"ok\" must be true or false" : "missing \"ok\"");
                goto out;
        }
        if (cJSON_IsFalse(ok)) {
                const char *s;

                if (proto_get_string(o, "error", true, &s, error) < 0 ||
                    proto_get_string(o, "code", false, &s, error) < 0)
                        goto out;
        }
done:
        *ret = o;
        return 0;
out:
        cJSON_Delete(o);
        return r;
}

bool proto_reply_is_ok(const cJSON *reply, enum proto_code *code, const char **message) {
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
        const cJSON *c, *m;

        if (cJSON_IsTrue(ok)) {
                if (code)
                        *code = PROTO_CODE_OK;
                if (message)
                        *message = NULL;
                return true;
        }
        c = cJSON_GetObjectItemCaseSensitive(reply, "code");
        m = cJSON_GetObjectItemCaseSensitive(reply, "error");
        if (code)
                *code = cJSON_IsString(c) ? proto_code_from_string(c->valuestring) : PROTO_CODE_INTERNAL;
        if (message)
                *message = cJSON_IsString(m) ? m->valuestring : "unknown error";
        return false;
}

char *proto_encode_line(const cJSON *o, size_t *len) {
        char *s, *line;
        size_t n;

        s = cJSON_PrintUnformatted(o);
        if (!s)
                abort();
        n = strlen(s);
        if (n + 1 > PROTO_LINE_MAX) {
                cJSON_free(s);
                return NULL;
        }
        line = xmalloc(n + 2);
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
        cJSON_free(s);
        if (len)
                *len = n + 1;
        return line;
}
