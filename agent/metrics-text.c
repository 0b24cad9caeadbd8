/* The texts of metrics.h: Prometheus exposition, /health and /ready. Every figure comes
 * from binding_to_proto(), the same view `list` and `show` print, so a scrape and
 * `mysocketctl list` can never disagree. */
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "metrics.h"
#include "protocol.h"
#include "util.h"

enum family_type { GAUGE, COUNTER };

struct family {
        const char *name;
        enum family_type type;
        const char *help;
        uint64_t (*value)(const struct binding *b, const struct proto_binding *p);
};

static uint64_t up_of(const struct binding *b, const struct proto_binding *p) {
        return b->state == BINDING_STATE_UP;
}

static uint64_t tunnels_up_of(const struct binding *b, const struct proto_binding *p) {
        return binding_tunnels_up(b);
}

static uint64_t reconnects_of(const struct binding *b, const struct proto_binding *p) {
        return p->reconnects;
}

static uint64_t active_of(const struct binding *b, const struct proto_binding *p) {
        return p->connections_active;
}

static uint64_t total_of(const struct binding *b, const struct proto_binding *p) {
        return p->connections_total;
}

static uint64_t refused_of(const struct binding *b, const struct proto_binding *p) {
        return p->connections_refused;
}

static uint64_t received_of(const struct binding *b, const struct proto_binding *p) {
        return p->bytes_in;
}

static uint64_t sent_of(const struct binding *b, const struct proto_binding *p) {
        return p->bytes_out;
}

static const struct family families[] = {
        { "mysocketd_binding_up", GAUGE, "Whether the binding is up (1) or not (0).", up_of },
        { "mysocketd_binding_tunnels_up", GAUGE, "Tunnels of the binding that are up.", tunnels_up_of },
        { "mysocketd_binding_reconnects_total", COUNTER,
          "Connection attempts to the relay after the first one.", reconnects_of },
        { "mysocketd_binding_connections_active", GAUGE,
          "Connections through the tunnel open now.", active_of },
        { "mysocketd_binding_connections_total", COUNTER,
          "Connections through the tunnel since the daemon started.", total_of },
        { "mysocketd_binding_connections_refused_total", COUNTER,
          "Connections refused over max_connections.", refused_of },
        { "mysocketd_binding_received_bytes_total", COUNTER,
          "Bytes from the relay to the local service.", received_of },
        { "mysocketd_binding_sent_bytes_total", COUNTER,
          "Bytes from the local service to the relay.", sent_of },
};

static const char *type_name(enum family_type t) {
        return t == COUNTER ? "counter" : "gauge";
}

/* A label value as the text format wants it: backslash, double quote and line feed
 * escaped. Binding names cannot hold them today; a version string might. */
static void put_label_value(FILE *out, const char *s) {
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fprintf(out, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", out);
                else
                        fputc(*s, out);
        }
}

static void put_header(FILE *out, const char *name, enum family_type t, const char *help) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type_name(t));
}

char *metrics_render(const struct manager *m) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        if (!out)
                abort();        /* out of memory, as xmalloc */
        struct proto_binding *views = xcalloc(m->n_bindings ? m->n_bindings : 1, sizeof(*views));
        for (size_t i = 0; i < m->n_bindings; i++)
                binding_to_proto(m->bindings[i], &views[i]);

        for (size_t f = 0; f < ELEMENTSOF(families); f++) {
                put_header(out, families[f].name, families[f].type, families[f].help);
                for (size_t i = 0; i < m->n_bindings; i++) {
                        fprintf(out, "%s{binding=\"", families[f].name);
                        put_label_value(out, views[i].name);
                        fprintf(out, "\"} %llu\n",
                                (unsigned long long) families[f].value(m->bindings[i], &views[i]));
                }
        }
        uint64_t expiry = m->config->api && m->api ? api_token_expiry(m->api) : 0;
        if (expiry > 0) {
                put_header(out, "mysocketd_token_expiry_timestamp_seconds", GAUGE,
                           "When the API token expires, in seconds since the epoch.");
                fprintf(out, "mysocketd_token_expiry_timestamp_seconds %llu\n",
                        (unsigned long long) (expiry / USEC_PER_SEC));
        }
        put_header(out, "mysocketd_build_info", GAUGE, "The version of mysocketd running; always 1.");
        fputs("mysocketd_build_info{version=\"", out);
        put_label_value(out, PACKAGE_VERSION);
        fputs("\"} 1\n", out);

        for (size_t i = 0; i < m->n_bindings; i++)
                proto_binding_clear(&views[i]);
        free(views);
        if (fclose(out) != 0)
                abort();
        return buf;
}

char *metrics_health_json(const struct manager *m, bool *down) {
        unsigned up, failed;
        uint64_t connections = 0, max_connections = 0;
        bool unlimited = false;
        manager_count(m, &up, &failed);
        for (size_t i = 0; i < m->n_bindings; i++) {
                struct proto_binding p;
                binding_to_proto(m->bindings[i], &p);
                connections += p.connections_active;
                max_connections += p.max_connections;
                unlimited = unlimited || p.max_connections == 0;
                proto_binding_clear(&p);
        }
        /* The sum of the caps; one binding without a cap makes the whole unlimited: 0. */
        if (unlimited)
                max_connections = 0;
        unsigned percent = max_connections ? (unsigned) (connections * 100 / max_connections) : 0;
        const char *status = up == m->n_bindings ? "ok" : up > 0 ? "degraded" : "down";
        *down = up == 0 && m->n_bindings > 0;
        return xasprintf("{\"status\":\"%s\",\"bindings\":%zu,\"up\":%u,\"connections\":%llu,"
                         "\"max_connections\":%llu,\"connections_capacity_percent\":%u}\n",
                         status, m->n_bindings, up, (unsigned long long) connections,
                         (unsigned long long) max_connections, percent);
}

bool metrics_ready(const struct manager *m) {
        unsigned up, failed;
        manager_count(m, &up, &failed);
        return up == m->n_bindings;
}
