#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "manager.h"
#include "netwatch.h"
#include "notify.h"
#include "state.h"

#define USEC_PER_SEC 1000000ull
/* Never spin: even full jitter waits at least this long between attempts. */
#define BACKOFF_MIN_USEC (100 * 1000ull)

static const char *const state_names[_BINDING_STATE_MAX] = {
        [BINDING_STATE_RESOLVING] = "resolving",
        [BINDING_STATE_CONNECTING] = "connecting",
        [BINDING_STATE_UP] = "up",
        [BINDING_STATE_BACKOFF] = "backoff",
        [BINDING_STATE_FAILED] = "failed",
        [BINDING_STATE_REMOVING] = "removing",
};

const char *binding_state_to_string(enum binding_state s) {
        return s < _BINDING_STATE_MAX ? state_names[s] : "unknown";
}

static void binding_attempt(struct binding *b);
static void manager_forget_remote(struct manager *m, struct binding *b, bool purge);

static uint64_t random_u64(void) {
        uint64_t v;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_monotonic_usec() * 6364136223846793005ull + (uint64_t) getpid();
        return v;
}

static void update_status(struct manager *m) {
        unsigned up, failed;
        manager_count(m, &up, &failed);
        notify_bindings(up, (unsigned) m->n_bindings, failed);
}

static void set_state(struct binding *b, enum binding_state s) {
        if (b->state == s)
                return;
        log_binding(LOG_DEBUG, b->conf->name, "state", "state %s -> %s",
                    binding_state_to_string(b->state), binding_state_to_string(s));
        b->state = s;
        update_status(b->manager);
}

static void set_error(struct binding *b, const char *message) {
        free(b->last_error);
        b->last_error = xstrdup(message);
}

static void stop_session(struct binding *b) {
        if (b->tunnel) {
                struct tunnel_stats st;
                tunnel_get_stats(b->tunnel, &st);
                b->past.connections_total += st.connections_total;
                b->past.bytes_in += st.bytes_in;
                b->past.bytes_out += st.bytes_out;
                tunnel_free(b->tunnel);
                b->tunnel = NULL;
        }
        api_call_cancel(b->api_call);
        b->api_call = NULL;
        b->timer = sd_event_source_disable_unref(b->timer);
        b->connected_since = 0;
        b->next_attempt = 0;
}

static int on_backoff_done(sd_event_source *s, uint64_t usec, void *userdata) {
        struct binding *b = userdata;
        b->timer = sd_event_source_disable_unref(b->timer);
        binding_attempt(b);
        return 0;
}

/* Exponential from `initial` to `max` seconds with full jitter: the wait is uniform in
 * [0, cap], so a relay restart does not see every Pi in the world come back at once. */
static uint64_t backoff_delay(const struct config *c, unsigned failures) {
        uint64_t cap = (uint64_t) c->backoff_initial * USEC_PER_SEC;
        for (unsigned i = 0; i < failures && cap < (uint64_t) c->backoff_max * USEC_PER_SEC; i++)
                cap *= 2;
        if (cap > (uint64_t) c->backoff_max * USEC_PER_SEC)
                cap = (uint64_t) c->backoff_max * USEC_PER_SEC;
        uint64_t d = random_u64() % (cap + 1);
        return d < BACKOFF_MIN_USEC ? BACKOFF_MIN_USEC : d;
}

static void schedule_retry(struct binding *b) {
        uint64_t delay = backoff_delay(b->manager->config, b->failures);
        b->failures++;
        b->next_attempt = now_realtime_usec() + delay;
        set_state(b, BINDING_STATE_BACKOFF);
        if (sd_event_add_time_relative(b->manager->event, &b->timer, CLOCK_MONOTONIC, delay, 0,
                                       on_backoff_done, b) < 0) {
                /* Cannot arm a timer: out of resources. Trying again right away is all we can do. */
                binding_attempt(b);
                return;
        }
        log_binding(LOG_NOTICE, b->conf->name, "backoff", "%s; retrying in %.1f s",
                    b->last_error ? b->last_error : "not connected", (double) delay / USEC_PER_SEC);
}

static int on_stable(sd_event_source *s, uint64_t usec, void *userdata) {
        struct binding *b = userdata;
        b->timer = sd_event_source_disable_unref(b->timer);
        /* Up long enough: the next failure starts from `initial` again. */
        b->failures = 0;
        return 0;
}

/* https://dnsname for http/https sockets, dnsname:port for tcp/tls; NULL before the API
 * told us (and always in direct mode). Caller frees. */
static char *public_url(const struct binding *b) {
        if (!b->dnsname)
                return NULL;
        if (b->conf->type == SOCKET_TYPE_HTTP || b->conf->type == SOCKET_TYPE_HTTPS)
                return xasprintf("https://%s", b->dnsname);
        return xasprintf("%s:%u", b->dnsname, b->public_port);
}

static void on_tunnel_up(struct tunnel *t, void *userdata) {
        struct binding *b = userdata;
        _cleanup_(freep) char *url = public_url(b);
        b->connected_since = now_realtime_usec();
        b->next_attempt = 0;
        free(b->last_error);
        b->last_error = NULL;
        set_state(b, BINDING_STATE_UP);
        sd_event_add_time_relative(b->manager->event, &b->timer, CLOCK_MONOTONIC,
                                   (uint64_t) b->manager->config->stable_after * USEC_PER_SEC, 0, on_stable, b);
        log_full(LOG_NOTICE, &(struct log_fields) {
                         .binding = b->conf->name, .event = "up", .message_id = LOG_MESSAGE_ID_UP,
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "up: %s:%u -> relay %s port %u%s%s", b->conf->host, b->conf->port,
                 b->manager->config->ssh_server, b->relay_port, url ? ", public at " : "", url ? url : "");
}

static void on_tunnel_down(struct tunnel *t, int error, bool permanent, const char *message, void *userdata) {
        struct binding *b = userdata;
        bool was_up = b->state == BINDING_STATE_UP;
        set_error(b, message);
        stop_session(b);
        log_full(was_up ? LOG_WARNING : LOG_NOTICE, &(struct log_fields) {
                         .binding = b->conf->name, .event = "down", .message_id = LOG_MESSAGE_ID_DOWN,
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "down: %s%s", message, permanent ? "; not retrying until the binding or config changes" : "");
        if (permanent) {
                set_state(b, BINDING_STATE_FAILED);
                return;
        }
        schedule_retry(b);
}

static void on_tunnel_log(struct tunnel *t, const char *line, void *userdata) {
        struct binding *b = userdata;
        log_full(LOG_INFO, &(struct log_fields) {
                         .binding = b->conf->name, .event = "edge-log",
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "%s", line);
}

static const struct tunnel_callbacks tunnel_callbacks = {
        .on_up = on_tunnel_up,
        .on_down = on_tunnel_down,
        .on_log = on_tunnel_log,
};

static void binding_connect(struct binding *b) {
        const struct config *c = b->manager->config;
        const struct tunnel_params p = {
                .name = b->conf->name,
                .server = c->ssh_server,
                .server_port = c->ssh_port,
                .user = c->ssh_user ? c->ssh_user : b->ssh_user,
                .identity_file = c->identity_file,
                .known_hosts = c->known_hosts,
                .host_key_check = c->host_key_check,
                .host_key_fingerprint = c->host_key_fingerprint,
                .keepalive_interval = c->keepalive_interval,
                .keepalive_count = c->keepalive_count,
                .bind_host = "localhost",
                .remote_port = b->relay_port,
                .local_host = b->conf->host,
                .local_port = b->conf->port,
        };
        set_state(b, BINDING_STATE_CONNECTING);
        int r = tunnel_new(b->manager->event, &p, &tunnel_callbacks, b, &b->tunnel);
        if (r < 0) {
                _cleanup_(freep) char *msg = xasprintf("cannot start the tunnel: %s", strerror(-r));
                set_error(b, msg);
                schedule_retry(b);
        }
}

static void replace(char **dst, const char *src) {
        free(*dst);
        *dst = xstrdup(src);
}

static void on_resolved(int error, const struct api_binding_result *r, const char *message, void *userdata) {
        struct binding *b = userdata;
        b->api_call = NULL;
        if (error < 0) {
                set_error(b, message);
                log_binding(LOG_WARNING, b->conf->name, "resolve", "API: %s", message);
                schedule_retry(b);
                return;
        }
        replace(&b->socket_id, r->socket_id);
        replace(&b->tunnel_id, r->tunnel_id);
        replace(&b->dnsname, r->dnsname);
        replace(&b->ssh_user, r->user_name);
        b->relay_port = r->relay_port;
        b->public_port = r->socket_tcp_port;
        b->created_socket = r->created;
        log_full(LOG_INFO, &(struct log_fields) {
                         .binding = b->conf->name, .event = "resolve",
                         .socket_id = b->socket_id, .tunnel_id = b->tunnel_id },
                 "API: socket %s%s, tunnel %s, relay port %u", r->socket_id,
                 r->recreated ? " (recreated)" : "", r->tunnel_id, r->relay_port);
        binding_connect(b);
}

static void binding_resolve(struct binding *b) {
        const struct binding_conf *c = b->conf;
        _cleanup_(freep) char *display = c->display_name ? NULL : xasprintf("%s on %s", c->name, b->manager->hostname);
        const struct api_binding_request req = {
                .name = c->name,
                .display_name = c->display_name ? c->display_name : display,
                .type = c->type,
                .protected_ = c->protected_,
                .username = c->username,
                .password = c->password,
                .config_socket_id = c->socket_id,
        };
        set_state(b, BINDING_STATE_RESOLVING);
        int r = api_ensure_binding(b->manager->api, &req, on_resolved, b, &b->api_call);
        if (r < 0) {
                _cleanup_(freep) char *msg = xasprintf("cannot ask the API: %s", strerror(-r));
                set_error(b, msg);
                schedule_retry(b);
        }
}

static void binding_attempt(struct binding *b) {
        stop_session(b);
        if (b->attempts++ > 0)
                b->reconnects++;
        if (b->manager->api) {
                binding_resolve(b);
                return;
        }
        b->relay_port = b->conf->remote_port;
        binding_connect(b);
}

static struct binding *binding_new(struct manager *m, struct binding_conf *bc) {
        struct binding *b = xcalloc(1, sizeof(*b));
        b->manager = m;
        b->conf = bc;
        b->state = BINDING_STATE_CONNECTING;
        return b;
}

static void binding_free(struct binding *b) {
        if (!b)
                return;
        stop_session(b);
        conf_binding_free(b->conf);
        free(b->last_error);
        free(b->socket_id);
        free(b->tunnel_id);
        free(b->dnsname);
        free(b->ssh_user);
        free(b);
}

static void manager_append(struct manager *m, struct binding *b) {
        m->bindings = xrealloc(m->bindings, (m->n_bindings + 1) * sizeof(*m->bindings));
        m->bindings[m->n_bindings++] = b;
}

static void manager_detach(struct manager *m, struct binding *b) {
        for (size_t i = 0; i < m->n_bindings; i++)
                if (m->bindings[i] == b) {
                        memmove(&m->bindings[i], &m->bindings[i + 1], (m->n_bindings - i - 1) * sizeof(*m->bindings));
                        m->n_bindings--;
                        return;
                }
}

struct binding *manager_find(struct manager *m, const char *name) {
        for (size_t i = 0; i < m->n_bindings; i++)
                if (streq(m->bindings[i]->conf->name, name))
                        return m->bindings[i];
        return NULL;
}

static void on_network_change(void *userdata) {
        struct manager *m = userdata;
        unsigned n = 0;
        for (size_t i = 0; i < m->n_bindings; i++) {
                struct binding *b = m->bindings[i];
                if (b->state != BINDING_STATE_BACKOFF)
                        continue;
                b->timer = sd_event_source_disable_unref(b->timer);
                binding_attempt(b);
                n++;
        }
        if (n > 0)
                log_full(LOG_INFO, &(struct log_fields) { .event = "network-change" },
                         "network changed: retrying %u binding%s now", n, n == 1 ? "" : "s");
}

static gid_t lookup_group(const char *name) {
        struct group *g = name ? getgrnam(name) : NULL;
        if (!g) {
                if (name)
                        log_warning("control_group \"%s\" does not exist; only root and uid %u may change bindings",
                                    name, (unsigned) geteuid());
                return (gid_t) -1;
        }
        return g->gr_gid;
}

int manager_new(sd_event *event, struct config *config, struct manager **ret) {
        struct manager *m = xcalloc(1, sizeof(*m));
        m->event = sd_event_ref(event);
        m->config = config;
        m->started = now_realtime_usec();
        m->control_gid = lookup_group(config->control_group);
        if (gethostname(m->hostname, sizeof(m->hostname) - 1) < 0)
                strcpy(m->hostname, "localhost");
        if (config->api) {
                int r = api_new(event, config, &m->api);
                if (r < 0) {
                        sd_event_unref(m->event);
                        free(m);
                        return r;
                }
        }
        for (size_t i = 0; i < config->n_bindings; i++)
                manager_append(m, binding_new(m, conf_binding_dup(config->bindings[i])));
        *ret = m;
        return 0;
}

/* A `connect` binding lives only as long as its client; if the daemon died first (kill -9,
 * power cut), its socket is still at the API with its ids file here. Delete both. */
static void purge_orphaned_connects(struct manager *m) {
        _cleanup_(freep) char *dir = xasprintf("%s/ids", m->config->state_dir);
        DIR *d = opendir(dir);
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d))) {
                char name[BINDING_NAME_MAX + 1];
                unsigned n;
                int end = 0;
                if (sscanf(de->d_name, "connect-%u.json%n", &n, &end) != 1 || de->d_name[end] != '\0')
                        continue;
                snprintf(name, sizeof(name), "connect-%u", n);
                if (manager_find(m, name))
                        continue;
                struct binding tmp = { .manager = m, .conf = &(struct binding_conf) { .name = name } };
                log_binding(LOG_NOTICE, name, "purge", "quick connect binding left over from an earlier run; deleting its socket");
                manager_forget_remote(m, &tmp, true);
        }
        closedir(d);
}

int manager_start(struct manager *m) {
        int r = netwatch_new(m->event, on_network_change, m, &m->netwatch);
        if (r < 0)
                log_warning("cannot watch network changes (%s); bindings retry on their backoff timers only",
                            strerror(-r));
        /* The API may be unreachable at boot: api_start never fails for that, and each
         * binding retries its own resolve with backoff while the control socket serves. */
        if (m->api) {
                api_start(m->api);
                purge_orphaned_connects(m);
        }
        for (size_t i = 0; i < m->n_bindings; i++)
                binding_attempt(m->bindings[i]);
        update_status(m);
        return 0;
}

void manager_free(struct manager *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_bindings; i++)
                binding_free(m->bindings[i]);
        free(m->bindings);
        api_free(m->api);
        netwatch_free(m->netwatch);
        conf_free(m->config);
        sd_event_unref(m->event);
        free(m);
}

void manager_count(const struct manager *m, unsigned *up, unsigned *failed) {
        *up = *failed = 0;
        for (size_t i = 0; i < m->n_bindings; i++) {
                *up += m->bindings[i]->state == BINDING_STATE_UP;
                *failed += m->bindings[i]->state == BINDING_STATE_FAILED;
        }
}

int manager_add(struct manager *m, struct binding_conf *bc, bool temporary, enum proto_code *code, char **error) {
        struct strv errors = { 0 };
        int r;
        const struct binding *old = manager_find(m, bc->name);
        if (old) {
                *code = PROTO_CODE_EXISTS;
                *error = old->conf->source == BINDING_SOURCE_CONFIG
                        ? xasprintf("binding \"%s\" already exists (defined at %s:%u)", bc->name, old->conf->file, old->conf->line)
                        : xasprintf("binding \"%s\" already exists (added at run time)", bc->name);
                return -EEXIST;
        }
        if (!m->config->api && !m->config->ssh_user) {
                *code = PROTO_CODE_INVALID;
                *error = xasprintf("direct mode needs [ssh] user in %s before bindings can be added", m->config->path);
                return -EINVAL;
        }
        if (conf_binding_validate(m->config, bc, &errors) < 0) {
                *code = PROTO_CODE_INVALID;
                *error = xstrdup(errors.n > 0 ? errors.items[0] : "invalid binding");
                strv_clear(&errors);
                return -EINVAL;
        }
        bc->source = BINDING_SOURCE_RUNTIME;
        free(bc->file);
        bc->file = temporary ? xstrdup("(mysocketctl connect)") : state_binding_path(m->config->state_dir, bc->name);
        bc->line = 1;
        /* Durable before we say yes: an acknowledged add survives kill -9 right after. */
        r = temporary ? 0 : state_save_binding(m->config->state_dir, bc);
        if (r < 0) {
                *code = PROTO_CODE_INTERNAL;
                *error = xasprintf("cannot save binding \"%s\" to %s: %s", bc->name, bc->file, strerror(-r));
                return r;
        }
        struct binding *b = binding_new(m, bc);
        b->temporary = temporary;
        manager_append(m, b);
        log_binding(LOG_INFO, bc->name, "add", "added: local %s:%u", bc->host, bc->port);
        binding_attempt(b);
        return 0;
}

static void on_socket_deleted(int error, const cJSON *reply, const char *message, void *userdata) {
        _cleanup_(freep) char *name = userdata;
        if (error < 0)
                log_binding(LOG_WARNING, name, "purge", "API: could not delete the socket: %s", message);
        else
                log_binding(LOG_INFO, name, "purge", "API: socket deleted");
}

/* The binding is going away for good: drop its recorded ids and, if asked and it was ours,
 * the socket at the API. The delete outlives the binding (it carries only the name). */
static void manager_forget_remote(struct manager *m, struct binding *b, bool purge) {
        _cleanup_(freep) char *socket_id = NULL, *tunnel_id = NULL;
        bool created = false;
        if (!m->api)
                return;
        /* Not resolved in this run (API down since boot)? The ids file still knows. */
        if (api_ids_load(m->config->state_dir, b->conf->name, &socket_id, &tunnel_id, &created) < 0) {
                socket_id = xstrdup(b->socket_id);
                created = b->created_socket;
        }
        api_ids_remove(m->config->state_dir, b->conf->name);
        if (!purge || !socket_id)
                return;
        if (!created) {
                log_binding(LOG_NOTICE, b->conf->name, "purge",
                            "socket %s was not created by mysocketd; not deleting it", socket_id);
                return;
        }
        struct api_call *call;
        char *name = xstrdup(b->conf->name);
        if (api_socket_delete(m->api, socket_id, on_socket_deleted, name, &call) < 0)
                free(name);
}

int manager_remove(struct manager *m, const char *name, bool purge, enum proto_code *code, char **error) {
        struct binding *b = manager_find(m, name);
        int r;
        if (!b) {
                *code = PROTO_CODE_NOT_FOUND;
                *error = xasprintf("no binding named \"%s\"", name);
                return -ENOENT;
        }
        if (b->conf->source == BINDING_SOURCE_CONFIG) {
                *code = PROTO_CODE_CONFIG_OWNED;
                *error = xasprintf("binding \"%s\" is defined in %s:%u; remove it there and run mysocketctl reload",
                                   name, b->conf->file, b->conf->line);
                return -EPERM;
        }
        r = b->temporary ? 0 : state_remove_binding(m->config->state_dir, name);
        if (r < 0) {
                *code = PROTO_CODE_INTERNAL;
                *error = xasprintf("cannot remove %s: %s; binding kept", b->conf->file, strerror(-r));
                return r;
        }
        set_state(b, BINDING_STATE_REMOVING);
        stop_session(b);
        manager_forget_remote(m, b, purge);
        log_binding(LOG_INFO, name, "remove", "removed");
        manager_detach(m, b);
        binding_free(b);
        update_status(m);
        return 0;
}

void reload_result_clear(struct reload_result *r) {
        strv_clear(&r->added);
        strv_clear(&r->removed);
        strv_clear(&r->changed);
        strv_clear(&r->unchanged);
        strv_clear(&r->warnings);
}

int manager_reload(struct manager *m, struct reload_result *res, struct strv *errors) {
        struct config *nc = NULL;
        notify_reloading();
        int r = conf_load(m->config->path, &nc, errors, &res->warnings);
        if (r < 0) {
                for (size_t i = 0; i < errors->n; i++)
                        log_error("%s", errors->items[i]);
                log_full(LOG_ERR, &(struct log_fields) { .event = "reload" },
                         "config not reloaded: %zu error%s; the running config stays in force",
                         errors->n, errors->n == 1 ? "" : "s");
                notify_ready();
                _cleanup_(freep) char *st = xasprintf("reload failed: %s", errors->n ? errors->items[0] : strerror(-r));
                notify_status(st);
                return r;
        }
        for (size_t i = 0; i < res->warnings.n; i++)
                log_warning("%s", res->warnings.items[i]);
        bool transport_same = conf_transport_equal(m->config, nc);
        if (!streq(m->config->control_socket, nc->control_socket))
                strv_pushf(&res->warnings, "control_socket changed to %s: takes effect at the next restart",
                           nc->control_socket);

        /* Old bindings: keep, restart or stop. */
        for (size_t i = m->n_bindings; i > 0; i--) {
                struct binding *b = m->bindings[i - 1];
                const struct binding_conf *want = NULL;
                if (b->temporary)       /* a quick connect belongs to its client, not to a file */
                        continue;
                for (size_t j = 0; j < nc->n_bindings && !want; j++)
                        if (streq(nc->bindings[j]->name, b->conf->name))
                                want = nc->bindings[j];
                if (!want) {
                        strv_push(&res->removed, xstrdup(b->conf->name));
                        log_binding(LOG_INFO, b->conf->name, "remove", "removed by reload");
                        manager_detach(m, b);
                        binding_free(b);
                        continue;
                }
                bool same = transport_same && conf_binding_equal(b->conf, want);
                conf_binding_free(b->conf);
                b->conf = conf_binding_dup(want);
                if (same && b->state != BINDING_STATE_FAILED) {
                        strv_push(&res->unchanged, xstrdup(want->name));
                        continue;
                }
                strv_push(&res->changed, xstrdup(want->name));
                b->failures = 0;
                b->attempts = 0;
        }
        /* New ones. */
        for (size_t j = 0; j < nc->n_bindings; j++)
                if (!manager_find(m, nc->bindings[j]->name)) {
                        manager_append(m, binding_new(m, conf_binding_dup(nc->bindings[j])));
                        strv_push(&res->added, xstrdup(nc->bindings[j]->name));
                }

        if (!transport_same) {
                /* Every binding restarts below; their API calls must end before the client. */
                for (size_t i = 0; i < m->n_bindings; i++)
                        stop_session(m->bindings[i]);
                api_free(m->api);
                m->api = NULL;
                if (nc->api && (r = api_new(m->event, nc, &m->api)) < 0)
                        strv_pushf(&res->warnings, "cannot start the API client: %s", strerror(-r));
                else if (m->api)
                        api_start(m->api);
        }
        gid_t gid = streq(m->config->control_group, nc->control_group) ? m->control_gid : lookup_group(nc->control_group);
        conf_free(m->config);
        m->config = nc;
        m->control_gid = gid;
        log_set_max_level(nc->log_level);

        for (size_t i = 0; i < res->changed.n; i++)
                binding_attempt(manager_find(m, res->changed.items[i]));
        for (size_t i = 0; i < res->added.n; i++)
                binding_attempt(manager_find(m, res->added.items[i]));
        log_full(LOG_INFO, &(struct log_fields) { .event = "reload" },
                 "reloaded: %zu added, %zu removed, %zu changed, %zu unchanged",
                 res->added.n, res->removed.n, res->changed.n, res->unchanged.n);
        notify_ready();
        update_status(m);
        return 0;
}

void manager_binding_to_proto(const struct binding *b, struct proto_binding *p) {
        const struct binding_conf *c = b->conf;
        struct tunnel_stats now = { 0 };
        if (b->tunnel)
                tunnel_get_stats(b->tunnel, &now);
        *p = (struct proto_binding) {
                .name = xstrdup(c->name),
                .source = xstrdup(c->source == BINDING_SOURCE_CONFIG ? "config" : "runtime"),
                .type = xstrdup(socket_type_to_string(c->type)),
                .host = xstrdup(c->host),
                .port = c->port,
                .display_name = xstrdup(c->display_name),
                .protected_ = c->protected_,
                .username = xstrdup(c->username),
                .remote_port = c->remote_port,
                .state = xstrdup(binding_state_to_string(b->state)),
                .socket_id = xstrdup(b->socket_id),
                .tunnel_id = xstrdup(b->tunnel_id),
                .relay_port = b->relay_port,
                .connected_since = b->connected_since,
                .reconnects = b->reconnects,
                .connections_active = now.connections_active,
                .connections_total = b->past.connections_total + now.connections_total,
                .bytes_in = b->past.bytes_in + now.bytes_in,
                .bytes_out = b->past.bytes_out + now.bytes_out,
                .last_error = xstrdup(b->last_error),
                .next_attempt = b->next_attempt,
                .defined_at = c->source == BINDING_SOURCE_CONFIG ? xasprintf("%s:%u", c->file, c->line) : xstrdup(c->file),
        };
        p->public_url = public_url(b);
}
