/* What a binding shows: its public URL (the API's name, or what the relay printed), and
 * the binding as the control protocol shows it: the sum of its tunnels' counters, the
 * newest local error, and one relays[] entry per relay (or per API tunnel). */
#include <stdlib.h>

#include "log.h"
#include "manager.h"
#include "urlmatch.h"

char *binding_public_url(const struct binding *b) {
        if (!b->dnsname)
                return NULL;
        if (b->conf->type == SOCKET_TYPE_HTTP || b->conf->type == SOCKET_TYPE_HTTPS)
                return xasprintf("https://%s", b->dnsname);
        return xasprintf("%s:%u", b->dnsname, b->public_port);
}

/* The relay printed the binding's public address in this line: remember it. */
void binding_match_public_url(struct binding *b, const char *line) {
        char *url = NULL;
        if (urlmatch_line(&b->url_matcher, b->conf->public_url_pattern, line, &url) == 0)
                return;
        if (!url) {             /* the pattern changed: what the old one found is void */
                free(b->relay_url);
                b->relay_url = NULL;
                return;
        }
        if (streq_ptr(url, b->relay_url)) {
                free(url);
                return;
        }
        free(b->relay_url);
        b->relay_url = url;
        log_binding(LOG_NOTICE, b->conf->name, "public-url", "public URL from the relay: %s", b->relay_url);
}


void binding_to_proto(const struct binding *b, struct proto_binding *p) {
        const struct binding_conf *c = b->conf;
        struct tunnel_stats now = { 0 };
        const struct tunnel *up = NULL;
        const char *cipher, *mac;
        const char *local_error = NULL;
        bool failing = false;
        for (size_t i = 0; i < b->n_slots; i++) {
                const struct binding_slot *s = &b->slots[i];
                struct tunnel_stats st;
                if (!s->tunnel)
                        continue;
                tunnel_get_stats(s->tunnel, &st);
                now.connections_active += st.connections_active;
                now.connections_total += st.connections_total;
                now.bytes_in += st.bytes_in;
                now.bytes_out += st.bytes_out;
                now.connections_refused += st.connections_refused;
                now.local_errors += st.local_errors;
                /* The newest local error of any tunnel (they share the one local service). */
                bool f;
                const char *le = tunnel_get_local_error(s->tunnel, &f);
                if (le) {
                        local_error = le;
                        failing = f;
                }
                if (!up && s->state == BINDING_STATE_UP)
                        up = s->tunnel;
        }
        tunnel_get_algorithms(b->state == BINDING_STATE_UP ? up : NULL, &cipher, &mac);
        if (!local_error) {
                local_error = b->last_local_error;
                failing = b->local_failing;
        }
        *p = (struct proto_binding) {
                .name = xstrdup(c->name),
                .source = xstrdup(c->source == BINDING_SOURCE_CONFIG ? PROTO_SOURCE_CONFIG : PROTO_SOURCE_RUNTIME),
                .type = xstrdup(socket_type_to_string(c->type)),
                .host = xstrdup(c->host),
                .port = c->port,
                .display_name = xstrdup(c->display_name),
                .protected_ = c->protected_,
                .username = xstrdup(c->username),
                .remote_port = c->remote_port,
                .remote_host = xstrdup(c->remote_host),
                .state = xstrdup(binding_state_to_string(b->state)),
                .socket_id = xstrdup(b->socket_id),
                .tunnel_id = xstrdup(b->tunnel_id),
                .relay_port = b->relay_port,
                .connected_since = b->connected_since,
                .reconnects = b->reconnects,
                .connections_active = now.connections_active,
                .connections_total = b->past.connections_total + now.connections_total,
                .connections_refused = b->past.connections_refused + now.connections_refused,
                .max_connections = c->max_connections,
                .bytes_in = b->past.bytes_in + now.bytes_in,
                .bytes_out = b->past.bytes_out + now.bytes_out,
                .last_error = xstrdup(b->last_error),
                .local_errors = b->past.local_errors + now.local_errors,
                .last_local_error = xstrdup(local_error),
                .local_failing = failing && local_error,
                .cipher = xstrdup(cipher),
                .mac = xstrdup(mac),
                .next_attempt = b->next_attempt,
                .defined_at = c->source == BINDING_SOURCE_CONFIG ? xasprintf("%s:%u", c->file, c->line) : xstrdup(c->file),
        };
        p->public_url = b->relay_url ? xstrdup(b->relay_url) : binding_public_url(b);
        p->tunnels_up = binding_tunnels_up(b);
        p->n_relays = b->n_slots ? b->n_slots
                                 : b->manager->api ? conf_binding_tunnels(c) : conf_relay_count(b->manager->config);
        p->relays = xcalloc(p->n_relays, sizeof(*p->relays));
        for (size_t i = 0; i < p->n_relays; i++) {
                /* No slot yet (before the first attempt, or the API's first answer): what the
                 * binding is. API mode: every tunnel goes to the first relay. */
                const struct binding_slot *s = i < b->n_slots ? &b->slots[i] : NULL;
                const char *host;
                uint16_t port;
                conf_relay(b->manager->config, b->manager->api ? 0 : i, &host, &port);
                p->relays[i] = (struct proto_relay) {
                        .server = format_host_port(host, port),
                        .state = xstrdup(binding_state_to_string(s ? s->state : b->state)),
                        .last_error = xstrdup(s ? s->last_error : b->last_error),
                        .connected_since = s ? s->connected_since : b->connected_since,
                        .tunnel_id = xstrdup(s ? s->tunnel_id : NULL),
                        .relay_port = s && s->relay_port ? s->relay_port : b->relay_port,
                };
        }
}
