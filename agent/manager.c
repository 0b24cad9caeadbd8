/* The set of bindings: start and stop, add and remove at run time, reload as a diff, the
 * network watch, and what the API keeps for each (ids, quick-connect leftovers). */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "localfwd.h"
#include "log.h"
#include "manager.h"
#include "netwatch.h"
#include "notify.h"
#include "state.h"

static void manager_forget_remote(struct manager *m, struct binding *b, bool purge);

struct tunnel_params manager_session_params(const struct manager *m, const char *server, uint16_t port,
                                            const char *user) {
        const struct config *c = m->config;
        return (struct tunnel_params) {
                .server = server,
                .server_port = port,
                .proxy = c->ssh_proxy,
                .user = user,
                .identity_file = c->identity_file,
                .known_hosts = c->known_hosts,
                .host_key_check = c->host_key_check,
                .host_key_fingerprint = c->host_key_fingerprint,
                .keepalive_interval = c->keepalive_interval,
                .keepalive_count = c->keepalive_count,
        };
}

void manager_update_status(struct manager *m) {
        unsigned up, failed;
        if (m->status_hold)             /* a failed reload's error is being shown */
                return;
        manager_count(m, &up, &failed);
        notify_bindings(up, (unsigned) m->n_bindings, failed);
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
                if (binding_retry_now(m->bindings[i]))
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
        m->tunnels = tunnel_registry_new();
        if (gethostname(m->hostname, sizeof(m->hostname) - 1) < 0)
                strcpy(m->hostname, "localhost");
        if (config->api) {
                int r = api_new(event, config, &m->api);
                if (r < 0) {
                        tunnel_registry_free(m->tunnels);
                        sd_event_unref(m->event);
                        free(m);
                        return r;
                }
        }
        for (size_t i = 0; i < config->n_bindings; i++)
                manager_append(m, binding_new(m, conf_binding_dup(config->bindings[i])));
        m->forwards = localfwd_new(m);
        conf_scrub_secrets(config, true);
        *ret = m;
        return 0;
}

/* A `connect` binding lives only as long as its client; if the daemon died first (kill -9,
 * power cut), its socket is still at the API with its ids file here. Delete both. */
static void purge_orphaned_connects(struct manager *m) {
        struct strv names = { 0 };
        if (state_ids_names(m->config->state_dir, &names) < 0)
                return;
        for (size_t i = 0; i < names.n; i++) {
                char *name = names.items[i];
                const char *n = name + strlen(CONNECT_NAME_PREFIX);
                if (strncmp(name, CONNECT_NAME_PREFIX, strlen(CONNECT_NAME_PREFIX)) != 0 || !*n ||
                    strspn(n, "0123456789") != strlen(n))
                        continue;
                if (manager_find(m, name))
                        continue;
                struct binding tmp = { .manager = m, .conf = &(struct binding_conf) { .name = name } };
                log_binding(LOG_NOTICE, name, "purge", "quick connect binding left over from an earlier run; deleting its socket");
                manager_forget_remote(m, &tmp, true);
        }
        strv_clear(&names);
}

void manager_start(struct manager *m) {
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
        localfwd_start(m->forwards);
        manager_update_status(m);
}

void manager_free(struct manager *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_bindings; i++) {
                binding_going_down(m->bindings[i], "mysocketd is stopping");
                binding_free(m->bindings[i]);
        }
        free(m->bindings);
        localfwd_free(m->forwards);
        sd_event_source_disable_unref(m->status_hold);
        tunnel_registry_free(m->tunnels);
        api_free(m->api);
        netwatch_free(m->netwatch);
        conf_scrub_secrets(m->config, false);
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
        for (size_t i = 0; i < m->n_bindings; i++) {
                const struct binding_conf *o = m->bindings[i]->conf;
                if (!conf_remote_port_clash(&m->bindings[i]->conf, 1, bc))
                        continue;
                *code = PROTO_CODE_INVALID;
                *error = xasprintf("[binding \"%s\"] remote_port: %u is already used by binding \"%s\" (%s%s%.0u) "
                                   "on the same relay", bc->name, bc->remote_port, o->name, o->file,
                                   o->source == BINDING_SOURCE_CONFIG ? ":" : "",
                                   o->source == BINDING_SOURCE_CONFIG ? o->line : 0);
                return -EADDRINUSE;
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
        _cleanup_(freep) char *local = format_host_port(bc->host, bc->port);
        log_binding(LOG_INFO, bc->name, "add", "added: local %s", local);
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
        _cleanup_(freep) char *socket_id = NULL;
        struct state_ids ids = { 0 };
        bool created = false;
        if (!m->api)
                return;
        /* Not resolved in this run (API down since boot)? The ids file still knows. */
        if (state_ids_load(m->config->state_dir, b->conf->name, &ids) < 0) {
                socket_id = xstrdup(b->socket_id);
                created = b->created_socket;
        } else {
                socket_id = xstrdup(ids.socket_id);
                created = ids.created;
                state_ids_clear(&ids);
        }
        state_ids_remove(m->config->state_dir, b->conf->name);
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
        binding_going_down(b, "removed");
        b->state = BINDING_STATE_REMOVING;
        binding_stop(b);
        manager_forget_remote(m, b, purge);
        log_binding(LOG_INFO, name, "remove", "removed");
        manager_detach(m, b);
        binding_free(b);
        manager_update_status(m);
        return 0;
}

void manager_reload_result_clear(struct reload_result *r) {
        strv_clear(&r->added);
        strv_clear(&r->removed);
        strv_clear(&r->changed);
        strv_clear(&r->unchanged);
        strv_clear(&r->retried);
        strv_clear(&r->warnings);
}

static int on_status_hold_done(sd_event_source *s, uint64_t usec, void *userdata) {
        struct manager *m = userdata;
        m->status_hold = sd_event_source_disable_unref(m->status_hold);
        manager_update_status(m);
        return 0;
}

/* Only the number of tunnels differs: the binding resizes rather than restarts. */
static bool only_tunnels_differ(const struct binding_conf *a, const struct binding_conf *b) {
        struct binding_conf t = *b;
        t.tunnels = a->tunnels;
        return conf_binding_tunnels(a) != conf_binding_tunnels(b) && conf_binding_equal(a, &t);
}

int manager_reload(struct manager *m, struct reload_result *res, struct strv *errors) {
        struct config *nc = NULL;
        struct strv resized = { 0 };
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
                /* Shown for a while, then the status says again how the bindings are. */
                m->status_hold = sd_event_source_disable_unref(m->status_hold);
                if (sd_event_add_time_relative(m->event, &m->status_hold, CLOCK_MONOTONIC,
                                               MANAGER_RELOAD_ERROR_USEC, 0, on_status_hold_done, m) < 0)
                        m->status_hold = NULL;
                return r;
        }
        for (size_t i = 0; i < res->warnings.n; i++)
                log_warning("%s", res->warnings.items[i]);
        bool transport_same = conf_transport_equal(m->config, nc);
        if (!streq(m->config->control_socket, nc->control_socket))
                strv_pushf(&res->warnings, "control_socket changed to %s: takes effect at the next restart",
                           nc->control_socket);
        if (!streq_ptr(m->config->metrics_listen, nc->metrics_listen))
                strv_pushf(&res->warnings, "metrics_listen changed: takes effect at the next restart");

        /* Old bindings: keep, restart or stop. */
        m->status_hold = sd_event_source_disable_unref(m->status_hold);
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
                        binding_going_down(b, "removed by reload");
                        log_binding(LOG_INFO, b->conf->name, "remove", "removed by reload");
                        manager_detach(m, b);
                        binding_free(b);
                        continue;
                }
                bool same = transport_same && conf_binding_equal(b->conf, want);
                bool resize = transport_same && b->state != BINDING_STATE_FAILED && only_tunnels_differ(b->conf, want);
                conf_binding_free(b->conf);
                b->conf = conf_binding_dup(want);
                if (same && b->state != BINDING_STATE_FAILED) {
                        strv_push(&res->unchanged, xstrdup(want->name));
                        continue;
                }
                /* A failed binding is tried again by any reload; that is no change of it. */
                if (resize) {
                        strv_push(&res->changed, xstrdup(want->name));
                        strv_push(&resized, xstrdup(want->name));
                        continue;
                }
                if (same) {
                        strv_push(&res->retried, xstrdup(want->name));
                } else {
                        binding_going_down(b, "restarting with its changed settings");
                        strv_push(&res->changed, xstrdup(want->name));
                }
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
                        binding_stop(m->bindings[i]);
                api_free(m->api);
                m->api = NULL;
                if (nc->api && (r = api_new(m->event, nc, &m->api)) < 0)
                        strv_pushf(&res->warnings, "cannot start the API client: %s", strerror(-r));
                else if (m->api)
                        api_start(m->api);
        }
        gid_t gid = streq(m->config->control_group, nc->control_group) ? m->control_gid : lookup_group(nc->control_group);
        conf_scrub_secrets(nc, true);
        conf_scrub_secrets(m->config, false);
        conf_free(m->config);
        m->config = nc;
        m->control_gid = gid;
        log_set_max_level(nc->log_level);
        log_set_format(nc->log_format);

        for (size_t i = 0; i < res->changed.n; i++) {
                struct binding *b = manager_find(m, res->changed.items[i]);
                bool resize = false;
                for (size_t j = 0; j < resized.n && !resize; j++)
                        resize = streq(resized.items[j], b->conf->name);
                if (resize)
                        binding_resize(b);
                else
                        binding_attempt(b);
        }
        strv_clear(&resized);
        for (size_t i = 0; i < res->retried.n; i++)
                binding_attempt(manager_find(m, res->retried.items[i]));
        for (size_t i = 0; i < res->added.n; i++)
                binding_attempt(manager_find(m, res->added.items[i]));
        /* Forwards last: their names join the lists as "forward NAME". */
        localfwd_reload(m->forwards, transport_same, &res->added, &res->removed, &res->changed);
        log_full(LOG_INFO, &(struct log_fields) { .event = "reload" },
                 "reloaded: %zu added, %zu removed, %zu changed, %zu unchanged, %zu failed ones retried",
                 res->added.n, res->removed.n, res->changed.n, res->unchanged.n, res->retried.n);
        notify_ready();
        manager_update_status(m);
        return 0;
}
