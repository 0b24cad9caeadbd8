/* The control protocol: the only place that knows the wire format's field names.
 * See protocol.h for the contracts and docs/PROTOCOL.md for the protocol itself. */
#include "protocol.h"
#include "scrub.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol-internal.h"
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

static int parse_line(const char *line, size_t len, size_t max, const char *what, cJSON **ret, char **error) {
        const char *end = NULL;
        cJSON *o;

        if (len > 0 && line[len - 1] == '\n')
                len--;
        if (len + 1 > max) {
                *error = xasprintf("%s line too long: the limit is %zu bytes", what, max);
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
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, PROTO_KEY_V);

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

const char *proto_str_of(const cJSON *o, const char *key) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(i) ? i->valuestring : NULL;
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

int proto_get_uint_range(const cJSON *o, const char *key, uint64_t min, uint64_t max, uint64_t def,
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
        return proto_get_uint_range(o, key, 0, max, def, ret, error);
}

/* ---- builders ------------------------------------------------------------------------- */

cJSON *proto_new_object(void) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                abort();        /* out of memory, the same policy as xmalloc */
        return o;
}

/* ---- requests ------------------------------------------------------------------------- */

cJSON *proto_request_new(const char *cmd) {
        cJSON *o = proto_new_object();

        cJSON_AddNumberToObject(o, PROTO_KEY_V, PROTO_VERSION);
        cJSON_AddStringToObject(o, PROTO_KEY_CMD, cmd);
        return o;
}

int proto_request_parse(const char *line, size_t len, cJSON **ret, const char **cmd, char **error) {
        cJSON *o = NULL;
        const char *c;
        int r;

        r = parse_line(line, len, PROTO_LINE_MAX, "request", &o, error);
        if (r < 0)
                return r;
        r = check_version(o, error);
        if (r < 0)
                goto out;
        r = proto_get_string(o, PROTO_KEY_CMD, true, &c, error);
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
        cJSON *o = proto_new_object();

        cJSON_AddNumberToObject(o, PROTO_KEY_V, PROTO_VERSION);
        cJSON_AddTrueToObject(o, PROTO_KEY_OK);
        return o;
}

cJSON *proto_reply_error(enum proto_code code, const char *fmt, ...) {
        cJSON *o = proto_new_object();
        va_list ap;
        char *msg;

        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);

        cJSON_AddNumberToObject(o, PROTO_KEY_V, PROTO_VERSION);
        cJSON_AddFalseToObject(o, PROTO_KEY_OK);
        cJSON_AddStringToObject(o, PROTO_KEY_ERROR, msg);
        cJSON_AddStringToObject(o, PROTO_KEY_CODE, proto_code_to_string(code == PROTO_CODE_OK ? PROTO_CODE_INTERNAL : code));
        free(msg);
        return o;
}

cJSON *proto_reply_error_take(enum proto_code code, char *message) {
        cJSON *o = proto_reply_error(code, "%s", message);

        free(message);
        return o;
}

int proto_reply_parse(const char *line, size_t len, cJSON **ret, char **error) {
        cJSON *o = NULL;
        const cJSON *ok, *event;
        int r;

        r = parse_line(line, len, PROTO_REPLY_MAX, "reply", &o, error);
        if (r < 0)
                return r;
        r = check_version(o, error);
        if (r < 0)
                goto out;

        r = -EINVAL;
        ok = cJSON_GetObjectItemCaseSensitive(o, PROTO_KEY_OK);
        event = cJSON_GetObjectItemCaseSensitive(o, PROTO_KEY_EVENT);
        if (!ok && cJSON_IsObject(event))
                goto done;      /* a streamed event line */
        if (!cJSON_IsBool(ok)) {
                *error = xstrdup(ok ? "\"ok\" must be true or false" : "missing \"ok\"");
                goto out;
        }
        if (cJSON_IsFalse(ok)) {
                const char *s;

                if (proto_get_string(o, PROTO_KEY_ERROR, true, &s, error) < 0 ||
                    proto_get_string(o, PROTO_KEY_CODE, false, &s, error) < 0)
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
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_OK);
        const cJSON *c, *m;

        if (cJSON_IsTrue(ok)) {
                if (code)
                        *code = PROTO_CODE_OK;
                if (message)
                        *message = NULL;
                return true;
        }
        c = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_CODE);
        m = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_ERROR);
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
        scrub_secrets(s);       /* the last line of defence: no secret leaves in a reply */
        n = strlen(s);
        if (n + 1 > PROTO_REPLY_MAX) {
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
