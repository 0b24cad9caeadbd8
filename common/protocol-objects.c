/* The control protocol's objects: a binding, an add request's binding spec, an event.
 * Their field names live here and nowhere else; framing, requests and replies are in
 * protocol.c. */
#include "protocol.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol-internal.h"
#include "util.h"

bool proto_type_valid(const char *type) {
        return type && socket_type_from_string(type) >= 0;
}

/* ---- getters of the objects' fields ------------------------------------------------- */

/* A port that may be absent or null (0). */
static int get_port(const cJSON *o, const char *key, bool required, uint16_t *ret, char **error) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
        uint64_t v;
        int r;

        if (required && (!i || cJSON_IsNull(i))) {
                *error = xasprintf("missing \"%s\"", key);
                return -EINVAL;
        }
        r = proto_get_uint_range(o, key, 1, 65535, 0, &v, error);
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

        /* Printed here, as decimal digits, exact: cJSON prints a number with 15 significant
         * digits when that reads back within an epsilon (off by a few units for counters of
         * 10^15 and more), and finds that out with a printf("%1.15g") and an sscanf per
         * number, which were a fifth of the daemon's time for a `list` of 1000 bindings. */
        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        cJSON_AddRawToObject(o, key, buf);
}

static void add_port_or_null(cJSON *o, const char *key, uint16_t port) {
        if (port)
                add_uint(o, key, port);
        else
                cJSON_AddNullToObject(o, key);
}

void proto_add_time_or_null(cJSON *o, const char *key, uint64_t usec) {
        char buf[32];

        if (usec)
                cJSON_AddStringToObject(o, key, format_rfc3339(usec, buf));
        else
                cJSON_AddNullToObject(o, key);
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
        free(b->remote_host);
        free(b->socket_id);
        free(b->tunnel_id);
        free(b->last_error);
        free(b->last_local_error);
        free(b->cipher);
        free(b->mac);
        free(b->defined_at);
        for (size_t i = 0; i < b->n_relays; i++) {
                free(b->relays[i].server);
                free(b->relays[i].state);
                free(b->relays[i].last_error);
                free(b->relays[i].tunnel_id);
        }
        free(b->relays);
        *b = (struct proto_binding) {};
}

cJSON *proto_binding_to_json(const struct proto_binding *b) {
        cJSON *o = proto_new_object();

        add_string_or_null(o, PROTO_KEY_NAME, b->name);
        add_string_or_null(o, PROTO_KEY_SOURCE, b->source);
        add_string_or_null(o, PROTO_KEY_TYPE, b->type);
        add_string_or_null(o, PROTO_KEY_HOST, b->host);
        add_uint(o, PROTO_KEY_PORT, b->port);
        add_string_or_null(o, PROTO_KEY_STATE, b->state);
        add_string_or_null(o, PROTO_KEY_PUBLIC_URL, b->public_url);
        add_string_or_null(o, PROTO_KEY_SOCKET_ID, b->socket_id);
        add_string_or_null(o, PROTO_KEY_TUNNEL_ID, b->tunnel_id);
        add_port_or_null(o, PROTO_KEY_RELAY_PORT, b->relay_port);
        proto_add_time_or_null(o, PROTO_KEY_CONNECTED_SINCE, b->connected_since);
        add_uint(o, PROTO_KEY_RECONNECTS, b->reconnects);
        add_uint(o, PROTO_KEY_CONNECTIONS_ACTIVE, b->connections_active);
        add_uint(o, PROTO_KEY_CONNECTIONS_TOTAL, b->connections_total);
        add_uint(o, PROTO_KEY_CONNECTIONS_REFUSED, b->connections_refused);
        add_uint(o, PROTO_KEY_MAX_CONNECTIONS, b->max_connections);
        add_uint(o, PROTO_KEY_BYTES_IN, b->bytes_in);
        add_uint(o, PROTO_KEY_BYTES_OUT, b->bytes_out);
        add_string_or_null(o, PROTO_KEY_LAST_ERROR, b->last_error);
        add_uint(o, PROTO_KEY_LOCAL_ERRORS, b->local_errors);
        add_string_or_null(o, PROTO_KEY_LAST_LOCAL_ERROR, b->last_local_error);
        cJSON_AddBoolToObject(o, PROTO_KEY_LOCAL_FAILING, b->local_failing);
        add_string_or_null(o, PROTO_KEY_CIPHER, b->cipher);
        add_string_or_null(o, PROTO_KEY_MAC, b->mac);
        proto_add_time_or_null(o, PROTO_KEY_NEXT_ATTEMPT, b->next_attempt);
        add_string_or_null(o, PROTO_KEY_DISPLAY_NAME, b->display_name);
        cJSON_AddBoolToObject(o, PROTO_KEY_PROTECTED, b->protected_);
        add_string_or_null(o, PROTO_KEY_USERNAME, b->username);
        add_port_or_null(o, PROTO_KEY_REMOTE_PORT, b->remote_port);
        add_string_or_null(o, PROTO_KEY_REMOTE_HOST, b->remote_host);
        add_string_or_null(o, PROTO_KEY_DEFINED_AT, b->defined_at);
        add_uint(o, PROTO_KEY_TUNNELS_UP, b->tunnels_up);
        add_uint(o, PROTO_KEY_TUNNELS, b->n_relays);
        cJSON *relays = cJSON_AddArrayToObject(o, PROTO_KEY_RELAYS);
        for (size_t i = 0; i < b->n_relays; i++) {
                cJSON *r = proto_new_object();
                add_string_or_null(r, PROTO_KEY_SERVER, b->relays[i].server);
                add_string_or_null(r, PROTO_KEY_STATE, b->relays[i].state);
                add_string_or_null(r, PROTO_KEY_LAST_ERROR, b->relays[i].last_error);
                proto_add_time_or_null(r, PROTO_KEY_CONNECTED_SINCE, b->relays[i].connected_since);
                add_string_or_null(r, PROTO_KEY_TUNNEL_ID, b->relays[i].tunnel_id);
                add_port_or_null(r, PROTO_KEY_RELAY_PORT, b->relays[i].relay_port);
                cJSON_AddItemToArray(relays, r);
        }
        return o;
}

void proto_forward_clear(struct proto_forward *f) {
        char **strs[] = { &f->name, &f->source, &f->listen, &f->target, &f->state, &f->last_error,
                          &f->last_refusal, &f->defined_at };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                free(*strs[i]);
        *f = (struct proto_forward) { 0 };
}

cJSON *proto_forward_to_json(const struct proto_forward *f) {
        cJSON *o = proto_new_object();
        add_string_or_null(o, PROTO_KEY_NAME, f->name);
        add_string_or_null(o, PROTO_KEY_SOURCE, f->source);
        add_string_or_null(o, PROTO_KEY_LISTEN, f->listen);
        add_string_or_null(o, PROTO_KEY_TARGET, f->target);
        add_string_or_null(o, PROTO_KEY_STATE, f->state);
        proto_add_time_or_null(o, PROTO_KEY_CONNECTED_SINCE, f->connected_since);
        add_uint(o, PROTO_KEY_RECONNECTS, f->reconnects);
        add_uint(o, PROTO_KEY_CONNECTIONS_ACTIVE, f->connections_active);
        add_uint(o, PROTO_KEY_CONNECTIONS_TOTAL, f->connections_total);
        add_uint(o, PROTO_KEY_CONNECTIONS_REFUSED, f->connections_refused);
        add_uint(o, PROTO_KEY_CONNECTIONS_UNSERVED, f->connections_unserved);
        add_uint(o, PROTO_KEY_BYTES_IN, f->bytes_in);
        add_uint(o, PROTO_KEY_BYTES_OUT, f->bytes_out);
        add_string_or_null(o, PROTO_KEY_LAST_ERROR, f->last_error);
        add_string_or_null(o, PROTO_KEY_LAST_REFUSAL, f->last_refusal);
        proto_add_time_or_null(o, PROTO_KEY_NEXT_ATTEMPT, f->next_attempt);
        add_string_or_null(o, PROTO_KEY_DEFINED_AT, f->defined_at);
        return o;
}

/* The "relays" array of a binding (absent: none, as from an older daemon). */
static int get_relays(const cJSON *o, struct proto_binding *b, char **error) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, PROTO_KEY_RELAYS), *i;
        int r;
        if (!a || cJSON_IsNull(a))
                return 0;
        if (!cJSON_IsArray(a)) {
                *error = xasprintf("\"%s\" must be an array", PROTO_KEY_RELAYS);
                return -EINVAL;
        }
        b->relays = xcalloc((size_t) cJSON_GetArraySize(a) + 1, sizeof(*b->relays));
        cJSON_ArrayForEach(i, a) {
                struct proto_relay *x = &b->relays[b->n_relays++];
                if (!cJSON_IsObject(i)) {
                        *error = xasprintf("\"%s\" must hold objects", PROTO_KEY_RELAYS);
                        return -EINVAL;
                }
                if ((r = get_string_dup(i, PROTO_KEY_SERVER, false, &x->server, error)) < 0 ||
                    (r = get_string_dup(i, PROTO_KEY_STATE, false, &x->state, error)) < 0 ||
                    (r = get_string_dup(i, PROTO_KEY_LAST_ERROR, false, &x->last_error, error)) < 0 ||
                    (r = get_time(i, PROTO_KEY_CONNECTED_SINCE, &x->connected_since, error)) < 0 ||
                    (r = get_string_dup(i, PROTO_KEY_TUNNEL_ID, false, &x->tunnel_id, error)) < 0 ||
                    (r = get_port(i, PROTO_KEY_RELAY_PORT, false, &x->relay_port, error)) < 0)
                        return r;
        }
        return 0;
}

int proto_binding_from_json(const cJSON *o, struct proto_binding *ret, char **error) {
        struct proto_binding b = {};
        int r;

        if (!cJSON_IsObject(o)) {
                *error = xstrdup("a binding must be a JSON object");
                return -EINVAL;
        }
        if ((r = get_string_dup(o, PROTO_KEY_NAME, true, &b.name, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_SOURCE, false, &b.source, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_TYPE, false, &b.type, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_HOST, false, &b.host, error)) < 0 ||
            (r = get_port(o, PROTO_KEY_PORT, true, &b.port, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_STATE, false, &b.state, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_PUBLIC_URL, false, &b.public_url, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_SOCKET_ID, false, &b.socket_id, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_TUNNEL_ID, false, &b.tunnel_id, error)) < 0 ||
            (r = get_port(o, PROTO_KEY_RELAY_PORT, false, &b.relay_port, error)) < 0 ||
            (r = get_time(o, PROTO_KEY_CONNECTED_SINCE, &b.connected_since, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_RECONNECTS, UINT64_MAX, 0, &b.reconnects, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_CONNECTIONS_ACTIVE, UINT64_MAX, 0, &b.connections_active, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_CONNECTIONS_TOTAL, UINT64_MAX, 0, &b.connections_total, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_CONNECTIONS_REFUSED, UINT64_MAX, 0, &b.connections_refused, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_MAX_CONNECTIONS, UINT64_MAX, 0, &b.max_connections, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_BYTES_IN, UINT64_MAX, 0, &b.bytes_in, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_BYTES_OUT, UINT64_MAX, 0, &b.bytes_out, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_LAST_ERROR, false, &b.last_error, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_LOCAL_ERRORS, UINT64_MAX, 0, &b.local_errors, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_LAST_LOCAL_ERROR, false, &b.last_local_error, error)) < 0 ||
            (r = proto_get_bool(o, PROTO_KEY_LOCAL_FAILING, false, &b.local_failing, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_CIPHER, false, &b.cipher, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_MAC, false, &b.mac, error)) < 0 ||
            (r = get_time(o, PROTO_KEY_NEXT_ATTEMPT, &b.next_attempt, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_DISPLAY_NAME, false, &b.display_name, error)) < 0 ||
            (r = proto_get_bool(o, PROTO_KEY_PROTECTED, false, &b.protected_, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_USERNAME, false, &b.username, error)) < 0 ||
            (r = get_port(o, PROTO_KEY_REMOTE_PORT, false, &b.remote_port, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_REMOTE_HOST, false, &b.remote_host, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_DEFINED_AT, false, &b.defined_at, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_TUNNELS_UP, UINT64_MAX, 0, &b.tunnels_up, error)) < 0 ||
            (r = get_relays(o, &b, error)) < 0)
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
        free(a->remote_host);
        free(a->edge_log);
        *a = (struct proto_add) {};
}

static void add_string_if(cJSON *o, const char *key, const char *s) {
        if (s)
                cJSON_AddStringToObject(o, key, s);
}

cJSON *proto_add_to_json(const struct proto_add *a) {
        cJSON *o = proto_new_object();

        add_string_if(o, PROTO_KEY_NAME, a->name);
        add_uint(o, PROTO_KEY_PORT, a->port);
        add_string_if(o, PROTO_KEY_HOST, a->host);
        add_string_if(o, PROTO_KEY_TYPE, a->type);
        add_string_if(o, PROTO_KEY_DISPLAY_NAME, a->display_name);
        if (a->protected_)
                cJSON_AddTrueToObject(o, PROTO_KEY_PROTECTED);
        add_string_if(o, PROTO_KEY_USERNAME, a->username);
        add_string_if(o, PROTO_KEY_PASSWORD, a->password);
        add_string_if(o, PROTO_KEY_SOCKET_ID, a->socket_id);
        if (a->remote_port || a->remote_port_any)
                add_uint(o, PROTO_KEY_REMOTE_PORT, a->remote_port);
        if (a->max_connections)
                add_uint(o, PROTO_KEY_MAX_CONNECTIONS, a->max_connections);
        add_string_if(o, PROTO_KEY_REMOTE_HOST, a->remote_host);
        add_string_if(o, PROTO_KEY_EDGE_LOG, a->edge_log);
        if (a->tunnels)
                add_uint(o, PROTO_KEY_TUNNELS, a->tunnels);
        return o;
}

static const char *const add_keys[] = {
        PROTO_KEY_NAME, PROTO_KEY_HOST, PROTO_KEY_PORT, PROTO_KEY_TYPE, PROTO_KEY_DISPLAY_NAME, PROTO_KEY_PROTECTED,
        PROTO_KEY_USERNAME, PROTO_KEY_PASSWORD, PROTO_KEY_SOCKET_ID, PROTO_KEY_REMOTE_PORT,
        PROTO_KEY_MAX_CONNECTIONS, PROTO_KEY_REMOTE_HOST, PROTO_KEY_EDGE_LOG, PROTO_KEY_TUNNELS,
};

int proto_add_from_json(const cJSON *o, struct proto_add *ret, char **error) {
        struct proto_add a = {};
        uint64_t rport;         /* 0: the relay chooses; UINT64_MAX: absent */
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

        if ((r = get_string_dup(o, PROTO_KEY_NAME, true, &a.name, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_HOST, false, &a.host, error)) < 0 ||
            (r = get_port(o, PROTO_KEY_PORT, true, &a.port, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_TYPE, false, &a.type, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_DISPLAY_NAME, false, &a.display_name, error)) < 0 ||
            (r = proto_get_bool(o, PROTO_KEY_PROTECTED, false, &a.protected_, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_USERNAME, false, &a.username, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_PASSWORD, false, &a.password, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_SOCKET_ID, false, &a.socket_id, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_REMOTE_PORT, 65535, UINT64_MAX, &rport, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_MAX_CONNECTIONS, 1000000, 0, &a.max_connections, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_REMOTE_HOST, false, &a.remote_host, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_EDGE_LOG, false, &a.edge_log, error)) < 0 ||
            (r = proto_get_uint(o, PROTO_KEY_TUNNELS, 8, 1, &a.tunnels, error)) < 0)
                goto out;

        a.remote_port_any = rport == 0;
        a.remote_port = rport == UINT64_MAX ? 0 : (uint16_t) rport;
        r = -EINVAL;
        if (!binding_name_valid(a.name)) {
                *error = xstrdup("\"name\" is not a valid binding name (" BINDING_NAME_RULE ")");
                goto out;
        }
        if (a.type && !proto_type_valid(a.type)) {
                *error = xstrdup("\"type\" must be one of " SOCKET_TYPE_NAMES);
                goto out;
        }
        if (a.host && !*a.host) {
                *error = xstrdup("\"host\" must not be empty");
                goto out;
        }
        if (a.tunnels < 1) {
                *error = xstrdup("\"tunnels\" must be a number from 1 to 8");
                goto out;
        }
        if (a.edge_log && !streq(a.edge_log, "auto") && !streq(a.edge_log, "yes") && !streq(a.edge_log, "no")) {
                *error = xstrdup("\"edge_log\" must be auto, yes or no");
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
        cJSON *o = proto_new_object();

        proto_add_time_or_null(o, PROTO_KEY_TIME, e->time);
        add_string_or_null(o, PROTO_KEY_PRIORITY, e->priority);
        add_string_or_null(o, PROTO_KEY_BINDING, e->binding);
        add_string_or_null(o, PROTO_KEY_EVENT, e->event);
        add_string_or_null(o, PROTO_KEY_MESSAGE, e->message);
        return o;
}

int proto_event_from_json(const cJSON *o, struct proto_event *ret, char **error) {
        struct proto_event e = {};
        int r;

        if (!cJSON_IsObject(o)) {
                *error = xstrdup("an event must be a JSON object");
                return -EINVAL;
        }
        if ((r = get_time(o, PROTO_KEY_TIME, &e.time, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_PRIORITY, false, &e.priority, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_BINDING, false, &e.binding, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_EVENT, false, &e.event, error)) < 0 ||
            (r = get_string_dup(o, PROTO_KEY_MESSAGE, true, &e.message, error)) < 0) {
                proto_event_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

cJSON *proto_event_line(cJSON *event) {
        cJSON *o = proto_new_object();

        cJSON_AddNumberToObject(o, PROTO_KEY_V, PROTO_VERSION);
        cJSON_AddItemToObject(o, PROTO_KEY_EVENT, event);
        return o;
}

