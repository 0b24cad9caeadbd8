/* connect: a temporary binding whose events stream here until Ctrl-C; closing the
 * connection is what makes the daemon remove the binding and its socket at the API. */
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

/* The public address of a binding that just came up: asked with `show` on a connection of
 * its own; failing that, taken from the "up" message ("..., public at URL"). */
static char *public_url_of(const struct ctl_context *ctx, const char *name, const char *message) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new(PROTO_CMD_SHOW);
        cJSON *reply = NULL;
        const char *at;
        char *url = NULL;

        cJSON_AddStringToObject(req, PROTO_KEY_NAME, name);
        if (client_call(ctx->socket_path, req, &reply) == 0) {
                const char *u = proto_str_of(cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_BINDING), PROTO_KEY_PUBLIC_URL);
                url = xstrdup(u);
                cJSON_Delete(reply);
        }
        if (!url && message && (at = strstr(message, "public at "))) {
                at += strlen("public at ");
                url = xasprintf("%.*s", (int) strcspn(at, " \t"), at);
        }
        return url;
}

/* One line of the stream: an event (printed; "up" also prints the public URL), or a
 * refusal. Returns 0 to go on, else the exit status. */
static int connect_line(const struct ctl_context *ctx, const char *name, const cJSON *line) {
        const cJSON *ev = NULL;
        const char *what, *binding;
        int r;

        if ((r = ctl_print_event_line(ctx, line, &ev)) != 0)
                return r;
        what = proto_str_of(ev, PROTO_KEY_EVENT);
        binding = proto_str_of(ev, PROTO_KEY_BINDING);
        if (!ctx->json && what && binding && streq(what, PROTO_EVENT_UP) && streq(binding, name)) {
                _cleanup_(freep) char *url = public_url_of(ctx, name, proto_str_of(ev, PROTO_KEY_MESSAGE));
                _cleanup_(freep) char *u = url ? sanitize_text(url, 1024) : NULL;
                if (u)
                        printf("\n    %s is public at %s\n\n", name, u);
                else
                        printf("\n    %s is up (no public address known)\n\n", name);
                fflush(stdout);
        }
        return 0;
}

static int connect_stream(const struct ctl_context *ctx, struct client *cl, const char *name, int sfd) {
        for (;;) {
                cJSON *line = NULL;
                int r;

                /* Lines already buffered first: poll() would not wake for them. */
                if (!memchr(cl->buf, '\n', cl->len)) {
                        struct pollfd p[2] = { { .fd = cl->fd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
                        if (poll(p, 2, -1) < 0) {
                                if (errno == EINTR)
                                        continue;
                                fprintf(stderr, "mysocketctl: poll: %s\n", strerror(errno));
                                return CTL_EXIT_FAILURE;
                        }
                        if (p[1].revents & POLLIN) {
                                struct signalfd_siginfo si;
                                if (read(sfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
                                        return -(int) si.ssi_signo;
                        }
                        if (!p[0].revents)
                                continue;
                }
                if ((r = client_read(cl, CTL_REPLY_TIMEOUT_MS, &line)) != 0)
                        return r;
                if (!line) {
                        fprintf(stderr, "mysocketctl: mysocketd closed the connection; %s is gone\n", name);
                        return CTL_EXIT_FAILURE;
                }
                r = connect_line(ctx, name, line);
                cJSON_Delete(line);
                if (r != 0)
                        return r;
        }
}

int ctl_cmd_connect(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { BINDING_OPTIONS, COMMON_OPTIONS, {} };
        struct proto_add a = {};
        struct client cl = { .fd = -1 };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *b;
        _cleanup_(freep) char *name = NULL;
        sigset_t mask, old_mask;
        int c, r, sfd = -1;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_binding_option(ctx, c, &a)) >= 0)
                        goto out;
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                goto out;
        if (a.port == 0) {
                r = ctl_usage_error(ctx, "missing --port PORT");
                goto out;
        }

        if ((r = ctl_check_remote_port(ctx, &a)) >= 0)
                goto out;
        /* Signals become lines to read, so Ctrl-C closes the connection in order. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, &old_mask);
        sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0) {
                fprintf(stderr, "mysocketctl: signalfd: %s\n", strerror(errno));
                r = CTL_EXIT_FAILURE;
                goto out;
        }

        req = proto_request_new(PROTO_CMD_CONNECT);
        cJSON_AddItemToObject(req, PROTO_KEY_BINDING, proto_add_to_json(&a));
        if ((r = ctl_stream_open(ctx, &cl, req, &reply)) != 0)
                goto out;
        b = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_BINDING);
        if (!cJSON_IsObject(b) || !proto_str_of(b, PROTO_KEY_NAME)) {
                r = ctl_malformed("\"binding\" is not an object with a name");
                goto out;
        }
        name = sanitize_text(proto_str_of(b, PROTO_KEY_NAME), 256);
        {
                _cleanup_(freep) char *host = sanitize_text(proto_str_of(b, PROTO_KEY_HOST) ?: a.host ?: BINDING_DEFAULT_HOST, 256);
                _cleanup_(freep) char *local = format_host_port(host, a.port);
                /* With --json stdout holds only JSON lines. */
                fprintf(ctx->json ? stderr : stdout, "Connecting %s (local %s)... Ctrl-C ends it.\n", name, local);
                fflush(ctx->json ? stderr : stdout);
        }
        if (ctx->json)
                output_json_line(b);

        r = connect_stream(ctx, &cl, name, sfd);
        if (r < 0) {
                /* A signal: closing the connection is what makes the daemon remove the binding. */
                client_close(&cl);
                fprintf(stderr, "mysocketctl: %s; %s disconnected (the daemon removes it and its socket)\n",
                        strsignal(-r), name);
                r = 0;
        }
out:
        cJSON_Delete(reply);
        client_close(&cl);
        if (sfd >= 0) {
                close(sfd);
                sigprocmask(SIG_SETMASK, &old_mask, NULL);
        }
        proto_add_clear(&a);
        return r;
}
