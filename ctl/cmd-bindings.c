/* The commands on the daemon's bindings: add (with --wait), remove, list and show. */
#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

#define WAIT_DEFAULT_SEC 60
#define WAIT_POLL_MS 200

/* ---- list, show ----------------------------------------------------------------------- */

static char *remote_text(const struct proto_binding *b) {
        if (b->public_url)
                return xstrdup(b->public_url);
        if (b->relay_port)
                return xasprintf("relay:%u", b->relay_port);
        if (b->remote_port)
                return xasprintf("remote:%u", b->remote_port);
        return NULL;
}

static char *since_text(const struct proto_binding *b) {
        uint64_t now = now_realtime_usec();
        char buf[32];

        if (streq(b->state, PROTO_STATE_UP) && b->connected_since)
                return xstrdup(format_duration(now > b->connected_since ? (now - b->connected_since) / USEC_PER_SEC : 0, buf));
        if (streq(b->state, PROTO_STATE_BACKOFF) && b->next_attempt)
                return xasprintf("next in %s",
                                 format_duration(b->next_attempt > now ? (b->next_attempt - now + USEC_PER_SEC - 1) / USEC_PER_SEC : 0, buf));
        return NULL;
}

static void add_binding_row(struct table *t, const struct proto_binding *b) {
        _cleanup_(freep) char *local = NULL, *remote = NULL, *since = NULL, *conns = NULL, *reconn = NULL, *state = NULL;

        /* Several tunnels: "up 1/2", how many of them are up. */
        if (b->n_relays > 1)
                state = xasprintf("%s %" PRIu64 "/%zu", b->state ?: "?", b->tunnels_up, b->n_relays);
        local = format_host_port(b->host ?: "?", b->port);
        remote = remote_text(b);
        since = since_text(b);
        conns = xasprintf("%" PRIu64 "/%" PRIu64, b->connections_active, b->connections_total);
        reconn = xasprintf("%" PRIu64, b->reconnects);
        table_add_row(t, (const char *const[]) {
                b->name, state ?: b->state, b->type, local, remote, since, conns, reconn,
                /* A dead local service shows while no local connect succeeded since. */
                b->last_error ?: b->local_failing ? b->last_local_error : NULL });
}

int ctl_cmd_list(struct ctl_context *ctx, int argc, char **argv) {
        static const char *const headers[] = {
                "NAME", "STATE", "TYPE", "LOCAL", "REMOTE", "SINCE", "CONNS", "RECONN", "ERROR" };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *bindings, *i;
        struct table *t = NULL;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_LIST);
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_BINDINGS, cJSON_IsArray, "an array", &reply, &bindings)) != 0)
                return r;
        if (ctx->json) {
                output_json(bindings);
                goto out;
        }
        if (cJSON_GetArraySize(bindings) == 0) {
                printf("No bindings.\n");
                goto out;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(i, bindings) {
                struct proto_binding b = {};
                char *error = NULL;

                if (proto_binding_from_json(i, &b, &error) < 0) {
                        r = ctl_malformed(error);
                        free(error);
                        goto out;
                }
                add_binding_row(t, &b);
                proto_binding_clear(&b);
        }
        table_print(t, stdout, true);
out:
        table_free(t);
        cJSON_Delete(reply);
        return r;
}

/* Asks for one binding; *ret owns the whole reply, *binding points into it. */
static int fetch_binding(const struct ctl_context *ctx, const char *name, cJSON **ret, const cJSON **binding) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new(PROTO_CMD_SHOW);

        cJSON_AddStringToObject(req, PROTO_KEY_NAME, name);
        return ctl_call_for(ctx, req, PROTO_KEY_BINDING, cJSON_IsObject, "an object", ret, binding);
}

int ctl_cmd_show(struct ctl_context *ctx, int argc, char **argv) {
        cJSON *reply = NULL;
        const cJSON *b;
        int r;

        if ((r = ctl_parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                return r;

        r = fetch_binding(ctx, argv[optind], &reply, &b);
        if (r != 0)
                return r;
        if (ctx->json)
                output_json(b);
        else
                output_object(b, stdout);
        cJSON_Delete(reply);
        return 0;
}

/* ---- add ------------------------------------------------------------------------------ */

static void print_progress(const struct proto_binding *b) {
        _cleanup_(freep) char *name = sanitize_text(b->name ?: "?", 256);
        _cleanup_(freep) char *err = b->last_error ? sanitize_text(b->last_error, 1024) : NULL;
        _cleanup_(freep) char *since = since_text(b);

        if (streq(b->state, PROTO_STATE_BACKOFF))
                fprintf(stderr, "%s: backoff%s%s%s%s\n", name, err ? ": " : "", err ?: "",
                        since ? ", " : "", since ?: "");
        else
                fprintf(stderr, "%s: %s\n", name, b->state ?: "?");
}

/* Polls `show` until the binding is up, failed, or the time is over. *final owns the last
 * binding object seen (for --json). */
static int wait_until_up(const struct ctl_context *ctx, const char *name, unsigned seconds, cJSON **final) {
        uint64_t deadline = now_monotonic_usec() + (uint64_t) seconds * USEC_PER_SEC;
        _cleanup_(freep) char *last_state = NULL;
        int r;

        for (;;) {
                struct proto_binding b = {};
                cJSON *reply = NULL;
                const cJSON *o;
                char *error = NULL;

                r = fetch_binding(ctx, name, &reply, &o);
                if (r != 0)
                        return r;
                if (proto_binding_from_json(o, &b, &error) < 0) {
                        cJSON_Delete(reply);
                        r = ctl_malformed(error);
                        free(error);
                        return r;
                }
                cJSON_Delete(*final);
                *final = cJSON_Duplicate(o, true);
                cJSON_Delete(reply);

                if (!streq(b.state, last_state)) {
                        print_progress(&b);
                        free(last_state);
                        last_state = xstrdup(b.state);
                }
                if (streq(b.state, PROTO_STATE_UP)) {
                        proto_binding_clear(&b);
                        return 0;
                }
                if (streq(b.state, PROTO_STATE_FAILED)) {
                        _cleanup_(freep) char *err = sanitize_text(b.last_error ?: "no reason given", 1024);
                        fprintf(stderr, "mysocketctl: %s failed: %s\n", name, err);
                        proto_binding_clear(&b);
                        return CTL_EXIT_FAILURE;
                }
                if (now_monotonic_usec() >= deadline) {
                        _cleanup_(freep) char *err = b.last_error ? sanitize_text(b.last_error, 1024) : NULL;
                        fprintf(stderr, "mysocketctl: %s is not up after %u s (state: %s%s%s)\n", name, seconds,
                                b.state ?: "?", err ? "; last error: " : "", err ?: "");
                        proto_binding_clear(&b);
                        return CTL_EXIT_FAILURE;
                }
                proto_binding_clear(&b);
                nanosleep(&(struct timespec) { .tv_nsec = WAIT_POLL_MS * 1000000L }, NULL);
        }
}

int ctl_cmd_add(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_WAIT = _CTL_OPT_BINDING_MAX };
        static const struct option opts[] = {
                BINDING_OPTIONS,
                { "socket-id", required_argument, NULL, CTL_OPT_SOCKET_ID },
                { "wait", optional_argument, NULL, OPT_WAIT },
                COMMON_OPTIONS,
                {}
        };
        struct proto_add a = {};
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL, *final = NULL;
        const cJSON *b;
        unsigned wait = 0;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == OPT_WAIT) {
                        wait = WAIT_DEFAULT_SEC;
                        if (optarg && parse_uint(optarg, 1, 86400, &wait) < 0) {
                                r = ctl_usage_error(ctx, "--wait: \"%s\" is not a number of seconds (1-86400)", optarg);
                                goto out;
                        }
                } else if ((r = ctl_binding_option(ctx, c, &a)) >= 0)
                        goto out;
        }
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                goto out;
        if (!binding_name_valid(argv[optind])) {
                r = ctl_usage_error(ctx, "\"%s\" is not a valid binding name (" BINDING_NAME_RULE ")", argv[optind]);
                goto out;
        }
        if (a.port == 0) {
                r = ctl_usage_error(ctx, "missing --port PORT");
                goto out;
        }
        if ((r = ctl_check_remote_port(ctx, &a)) >= 0)
                goto out;
        a.name = xstrdup(argv[optind]);

        req = proto_request_new(PROTO_CMD_ADD);
        cJSON_AddItemToObject(req, PROTO_KEY_BINDING, proto_add_to_json(&a));
        if ((r = ctl_call_for(ctx, req, PROTO_KEY_BINDING, cJSON_IsObject, "an object", &reply, &b)) != 0)
                goto out;

        if (wait > 0) {
                r = wait_until_up(ctx, a.name, wait, &final);
                if (r == 0 && !ctx->json) {
                        const cJSON *url = cJSON_GetObjectItemCaseSensitive(final, PROTO_KEY_PUBLIC_URL);
                        _cleanup_(freep) char *u = cJSON_IsString(url) ? sanitize_text(url->valuestring, 1024) : NULL;
                        printf("%s is up%s%s\n", a.name, u ? ": " : ".", u ?: "");
                } else if (r == 0)
                        output_json(final);
                goto out;
        }
        if (ctx->json)
                output_json(b);
        else {
                const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, PROTO_KEY_STATE);
                printf("Added %s (state: %s). Follow it with 'mysocketctl logs %s -f'.\n", a.name,
                       cJSON_IsString(state) ? state->valuestring : "?", a.name);
        }
out:
        cJSON_Delete(final);
        cJSON_Delete(reply);
        proto_add_clear(&a);
        return r;
}

/* ---- remove ------------------------------------------------------------------------- */

int ctl_cmd_remove(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { { "purge", no_argument, NULL, 'p' }, COMMON_OPTIONS, {} };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        bool purge = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == 'p')
                        purge = true;
                else if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        }
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "NAME")) >= 0)
                return r;

        req = proto_request_new(PROTO_CMD_REMOVE);
        cJSON_AddStringToObject(req, PROTO_KEY_NAME, argv[optind]);
        cJSON_AddBoolToObject(req, PROTO_KEY_PURGE, purge);
        r = client_call(ctx->socket_path, req, &reply);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_print_result_json(reply);
        else {
                _cleanup_(freep) char *name = sanitize_text(argv[optind], 256);
                printf("Removed %s%s.\n", name, purge ? " (and its socket at the API, if the daemon created it)" : "");
        }
        cJSON_Delete(reply);
        return 0;
}
