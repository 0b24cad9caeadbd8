/* The control socket from the client's side. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"
#include "util.h"

int client_open(struct client *c, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        *c = (struct client) { .fd = -1, .path = path };
        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "mysocketctl: socket path too long: %s\n", path);
                return CTL_EXIT_USAGE;
        }
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "mysocketctl: socket: %s\n", strerror(errno));
                return CTL_EXIT_UNAVAILABLE;
        }
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int e = errno;

                close(fd);
                if (e == EACCES || e == EPERM) {
                        fprintf(stderr, "mysocketctl: permission denied on %s: only root and members of "
                                "the daemon's control group may use mysocketctl\n", path);
                        return CTL_EXIT_NOPERM;
                }
                fprintf(stderr, "mysocketctl: cannot connect to mysocketd at %s: %s\n"
                        "Is the daemon running? Try 'systemctl status mysocketd' "
                        "(or pass the socket with -s or $MYSOCKETD_SOCKET).\n", path, strerror(e));
                return CTL_EXIT_UNAVAILABLE;
        }
        c->fd = fd;
        c->cap = 64 * 1024;
        c->buf = xmalloc(c->cap);
        return 0;
}

void client_close(struct client *c) {
        if (c->fd >= 0)
                close(c->fd);
        free(c->buf);
        *c = (struct client) { .fd = -1 };
}

int client_send(struct client *c, const cJSON *request) {
        _cleanup_(freep) char *line = NULL;
        size_t len, done = 0;

        line = proto_encode_line(request, &len);
        if (!line || len > PROTO_LINE_MAX) {
                fprintf(stderr, "mysocketctl: request too long (the limit is %d bytes)\n", PROTO_LINE_MAX);
                return CTL_EXIT_USAGE;
        }
        while (done < len) {
                /* MSG_NOSIGNAL: a daemon that went away is an error message, not SIGPIPE. */
                ssize_t n = send(c->fd, line + done, len - done, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "mysocketctl: sending to mysocketd at %s: %s\n", c->path, strerror(errno));
                        return CTL_EXIT_FAILURE;
                }
                done += (size_t) n;
        }
        return 0;
}

int client_read(struct client *c, int timeout_ms, cJSON **ret) {
        uint64_t deadline = timeout_ms < 0 ? 0 : now_monotonic_usec() + (uint64_t) timeout_ms * 1000;

        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                if (nl) {
                        size_t n = (size_t) (nl - c->buf);
                        char *error = NULL;
                        int r = proto_reply_parse(c->buf, n, ret, &error);

                        memmove(c->buf, nl + 1, c->len - n - 1);
                        c->len -= n + 1;
                        if (r < 0) {
                                fprintf(stderr, "mysocketctl: malformed reply from mysocketd: %s\n", error);
                                free(error);
                                return CTL_EXIT_FAILURE;
                        }
                        return 0;
                }
                if (c->len >= PROTO_REPLY_MAX) {
                        fprintf(stderr, "mysocketctl: reply from mysocketd longer than %d bytes\n", PROTO_REPLY_MAX);
                        return CTL_EXIT_FAILURE;
                }
                if (c->len == c->cap) {
                        c->cap = c->cap * 2 > PROTO_REPLY_MAX ? PROTO_REPLY_MAX : c->cap * 2;
                        c->buf = xrealloc(c->buf, c->cap);
                }

                int wait_ms = -1;
                if (timeout_ms >= 0) {
                        uint64_t now = now_monotonic_usec();
                        if (now >= deadline) {
                                fprintf(stderr, "mysocketctl: no reply from mysocketd at %s within %d s\n",
                                        c->path, timeout_ms / 1000);
                                return CTL_EXIT_FAILURE;
                        }
                        wait_ms = (int) ((deadline - now + 999) / 1000);
                }
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = poll(&p, 1, wait_ms);
                if (r < 0 && errno != EINTR) {
                        fprintf(stderr, "mysocketctl: poll: %s\n", strerror(errno));
                        return CTL_EXIT_FAILURE;
                }
                if (r <= 0)
                        continue;

                ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        fprintf(stderr, "mysocketctl: reading from mysocketd at %s: %s\n", c->path, strerror(errno));
                        return CTL_EXIT_FAILURE;
                }
                if (n == 0) {
                        if (c->len > 0) {
                                fprintf(stderr, "mysocketctl: mysocketd closed the connection in the middle of a reply\n");
                                return CTL_EXIT_FAILURE;
                        }
                        *ret = NULL;
                        return 0;
                }
                c->len += (size_t) n;
        }
}

static void print_error_text(const char *prefix, const char *s) {
        _cleanup_(freep) char *clean = sanitize_text(s, PROTO_LINE_MAX);

        fprintf(stderr, "%s%s\n", prefix, clean);
}

int client_report_error(const cJSON *reply) {
        enum proto_code code;
        const char *message;
        const cJSON *errors, *e;

        if (proto_reply_is_ok(reply, &code, &message))
                return 0;
        print_error_text("mysocketctl: ", message);
        errors = cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_ERRORS);
        if (!cJSON_IsArray(errors))
                errors = NULL;
        cJSON_ArrayForEach(e, errors)
                if (cJSON_IsString(e))
                        print_error_text("  ", e->valuestring);
        return code == PROTO_CODE_PERMISSION ? CTL_EXIT_NOPERM : CTL_EXIT_FAILURE;
}

int client_call(const char *path, const cJSON *request, cJSON **ret) {
        struct client c;
        cJSON *reply = NULL;
        int r;

        r = client_open(&c, path);
        if (r != 0)
                return r;
        r = client_send(&c, request);
        if (r != 0)
                goto out;
        r = client_read(&c, CTL_REPLY_TIMEOUT_MS, &reply);
        if (r != 0)
                goto out;
        if (!reply) {
                fprintf(stderr, "mysocketctl: mysocketd closed the connection without replying\n");
                r = CTL_EXIT_FAILURE;
                goto out;
        }
        if (cJSON_GetObjectItemCaseSensitive(reply, PROTO_KEY_EVENT)) {
                fprintf(stderr, "mysocketctl: malformed reply from mysocketd: an event where a reply was expected\n");
                r = CTL_EXIT_FAILURE;
                goto out;
        }
        r = client_report_error(reply);
        if (r != 0)
                goto out;
        *ret = reply;
        reply = NULL;
out:
        cJSON_Delete(reply);
        client_close(&c);
        return r;
}
