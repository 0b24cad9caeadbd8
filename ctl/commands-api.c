/* The original mysocketctl's commands (SPEC §6), answered by the daemon, which holds the
 * API token: login, account, socket, tunnel, and connect (a temporary binding whose events
 * stream here until Ctrl-C). The wire shapes are in docs/PROTOCOL.md. */
#include "commands-api.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "util.h"

#define PASSWORD_MAX 1024

/* ---- small helpers ------------------------------------------------------------------- */

static const char *str_of(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *number_text(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? xasprintf("%.0f", v->valuedouble) : NULL;
}

/* "https://dnsname" for http/https sockets, "dnsname:port" for tcp/tls (SPEC §8). */
static char *socket_url(const cJSON *s) {
        const char *dns = str_of(s, "dnsname"), *type = str_of(s, "socket_type");
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(s, "socket_tcp_ports");
        const cJSON *p0 = cJSON_GetArrayItem(ports, 0);

        if (!dns)
                return NULL;
        if (type && (streq(type, "tcp") || streq(type, "tls")))
                return cJSON_IsNumber(p0) ? xasprintf("%s:%.0f", dns, p0->valuedouble) : xstrdup(dns);
        return xasprintf("https://%s", dns);
}

/* One request, then the reply member `key` (of the given cJSON type check) or an error. */
static int call_for(const struct ctl_context *ctx, const cJSON *req, const char *key,
                    cJSON_bool (*is)(const cJSON *), cJSON **reply, const cJSON **ret) {
        int r = client_call(ctx->socket_path, req, reply);
        if (r != 0)
                return r;
        if (!key)
                return 0;
        *ret = cJSON_GetObjectItemCaseSensitive(*reply, key);
        if (!is(*ret)) {
                _cleanup_(freep) char *what = xasprintf("\"%s\" is missing or of the wrong type", key);
                cJSON_Delete(*reply);
                *reply = NULL;
                return ctl_malformed(what);
        }
        return 0;
}

/* Parses the options every API command shares (--help, --json) and none other. */
static int parse_common(struct ctl_context *ctx, int argc, char **argv) {
        static const struct option opts[] = { COMMON_OPTIONS, {} };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        return -1;
}

/* ---- login ------------------------------------------------------------------------------ */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) {
        got_signal = sig;
}

/* Like OpenSSH with a private key: a password file others may read is refused. */
static int read_password_file(const char *path, char **ret) {
        _cleanup_(freep) char *buf = xmalloc(PASSWORD_MAX + 1);
        struct stat st;
        size_t len = 0;
        int fd, r = CTL_EXIT_FAILURE;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "mysocketctl login: cannot open %s: %s\n", path, strerror(errno));
                return errno == EACCES ? CTL_EXIT_NOPERM : CTL_EXIT_FAILURE;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                fprintf(stderr, "mysocketctl login: %s is not a regular file\n", path);
                goto out;
        }
        if (st.st_mode & 077) {
                fprintf(stderr, "mysocketctl login: permissions %04o for %s are too open: a password file must "
                        "not be readable by group or others (chmod 600 %s); refusing it\n",
                        (unsigned) (st.st_mode & 07777), path, path);
                goto out;
        }
        for (;;) {
                ssize_t n = read(fd, buf + len, PASSWORD_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "mysocketctl login: reading %s: %s\n", path, strerror(errno));
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len == PASSWORD_MAX) {
                        fprintf(stderr, "mysocketctl login: %s is longer than %d bytes\n", path, PASSWORD_MAX);
                        goto out;
                }
        }
        /* One line end is the file's, not the password's. */
        if (len > 0 && buf[len - 1] == '\n')
                len--;
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        buf[len] = '\0';
        if (len == 0 || strlen(buf) != len) {
                fprintf(stderr, "mysocketctl login: %s holds no password (empty, or a NUL byte)\n", path);
                goto out;
        }
        *ret = buf;
        buf = NULL;
        r = 0;
out:
        if (buf)
                explicit_bzero(buf, PASSWORD_MAX + 1);
        close(fd);
        return r;
}

/* "Password: " without echo on a terminal; a plain line from stdin otherwise. A signal
 * while echo is off restores the terminal before it takes effect. */
static int read_password_prompt(char **ret) {
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
        struct sigaction sa = { .sa_handler = on_signal }, old_sa[ELEMENTSOF(sigs)];
        struct termios old, noecho;
        char *buf = xmalloc(PASSWORD_MAX + 1);
        bool tty = isatty(STDIN_FILENO), restore = false;
        size_t len = 0;
        int r = 0;

        /* No SA_RESTART: read() must return so the terminal gets its echo back. */
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaction(sigs[i], &sa, &old_sa[i]);
        if (tty) {
                fputs("Password: ", stderr);
                fflush(stderr);
                if (tcgetattr(STDIN_FILENO, &old) == 0) {
                        noecho = old;
                        noecho.c_lflag &= ~(tcflag_t) ECHO;
                        noecho.c_lflag |= ECHONL;
                        restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == 0;
                }
        }
        while (!got_signal) {
                char c;
                ssize_t n = read(STDIN_FILENO, &c, 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "mysocketctl login: reading the password: %s\n", strerror(errno));
                        r = CTL_EXIT_FAILURE;
                        break;
                }
                if (n == 0 || c == '\n')
                        break;
                if (len == PASSWORD_MAX) {
                        fprintf(stderr, "mysocketctl login: the password is longer than %d bytes\n", PASSWORD_MAX);
                        r = CTL_EXIT_FAILURE;
                        break;
                }
                buf[len++] = c;
        }
        if (restore)
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaction(sigs[i], &old_sa[i], NULL);
        if (got_signal) {
                explicit_bzero(buf, PASSWORD_MAX + 1);
                free(buf);
                raise(got_signal);
                return CTL_EXIT_FAILURE;
        }
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        buf[len] = '\0';
        if (r == 0 && (len == 0 || strlen(buf) != len)) {
                fprintf(stderr, "mysocketctl login: no password given\n");
                r = CTL_EXIT_FAILURE;
        }
        if (r != 0) {
                explicit_bzero(buf, PASSWORD_MAX + 1);
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

int ctl_cmd_login(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_EMAIL = 0x200, OPT_PASSWORD_FILE };
        static const struct option opts[] = {
                { "email", required_argument, NULL, OPT_EMAIL },
                { "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
                COMMON_OPTIONS,
                {}
        };
        const char *email = NULL, *file = NULL;
        char *password = NULL;
        cJSON *req = NULL, *reply = NULL;
        cJSON *pw;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == OPT_EMAIL)
                        email = optarg;
                else if (c == OPT_PASSWORD_FILE)
                        file = optarg;
                else if ((r = ctl_common_option(ctx, c)) >= 0)
                        return r;
        }
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                return r;
        if (!email || !*email)
                return ctl_usage_error(ctx, "missing --email E");

        r = file ? read_password_file(file, &password) : read_password_prompt(&password);
        if (r != 0)
                return r;
        req = proto_request_new("login");
        cJSON_AddStringToObject(req, "email", email);
        pw = cJSON_AddStringToObject(req, "password", password);
        explicit_bzero(password, strlen(password));
        free(password);

        r = client_call(ctx->socket_path, req, &reply);
        if (pw && pw->valuestring)
                explicit_bzero(pw->valuestring, strlen(pw->valuestring));
        cJSON_Delete(req);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_print_result_json(reply);
        else {
                _cleanup_(freep) char *e = sanitize_text(email, 256);
                printf("Logged in as %s; the daemon now uses this account.\n", e);
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- account ---------------------------------------------------------------------------- */

int ctl_cmd_account(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *account;
        int r;

        if ((r = parse_common(ctx, argc, argv)) >= 0 || (r = ctl_check_args(ctx, argc, argv, 0, 1, "")) >= 0)
                return r;
        if (optind < argc && !streq(argv[optind], "show"))
                return ctl_usage_error(ctx, "unknown action \"%s\" (show)", argv[optind]);

        req = proto_request_new("account");
        if ((r = call_for(ctx, req, "account", cJSON_IsObject, &reply, &account)) != 0)
                return r;
        if (ctx->json)
                output_json(account);
        else {
                /* The ssh key is long and not what people look for here. */
                cJSON *copy = cJSON_Duplicate(account, true);
                cJSON_DeleteItemFromObjectCaseSensitive(copy, "sshkey");
                output_object(copy, stdout);
                cJSON_Delete(copy);
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- socket ----------------------------------------------------------------------------- */

static char *ports_text(const cJSON *s) {
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(s, "socket_tcp_ports"), *p;
        char *out = NULL;

        cJSON_ArrayForEach(p, ports) {
                char *next;
                if (!cJSON_IsNumber(p))
                        continue;
                next = xasprintf("%s%s%.0f", out ?: "", out ? "," : "", p->valuedouble);
                free(out);
                out = next;
        }
        return out;
}

static const char *yes_no(const cJSON *o, const char *key) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)) ? "yes" : "no";
}

static void socket_ls_print(const cJSON *sockets) {
        static const char *const headers[] = {
                "SOCKET_ID", "DNSNAME", "TYPE", "NAME", "PORTS", "PROTECTED", "TUNNELS" };
        struct table *t;
        const cJSON *s;

        if (cJSON_GetArraySize(sockets) == 0) {
                printf("No sockets.\n");
                return;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(s, sockets) {
                _cleanup_(freep) char *ports = ports_text(s);
                _cleanup_(freep) char *tunnels =
                        xasprintf("%d", cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "tunnels")));
                table_add_row(t, (const char *const[]) {
                        str_of(s, "socket_id"), str_of(s, "dnsname"), str_of(s, "socket_type"),
                        str_of(s, "name"), ports, yes_no(s, "protected_socket"), tunnels });
        }
        table_print(t, stdout, false);
        table_free(t);
}

/* key: value lines of what people want from a new socket; the API's names otherwise. */
static void socket_print(const cJSON *s) {
        _cleanup_(freep) char *ports = ports_text(s), *url = socket_url(s), *tunnels = NULL;
        cJSON *o = cJSON_CreateObject();
        const cJSON *t;

        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(s, "tunnels")) {
                const char *id = str_of(t, "tunnel_id");
                char *next = xasprintf("%s%s%s", tunnels ?: "", tunnels ? ", " : "", id ?: "?");
                free(tunnels);
                tunnels = next;
        }
        cJSON_AddStringToObject(o, "socket_id", str_of(s, "socket_id") ?: "-");
        cJSON_AddStringToObject(o, "dnsname", str_of(s, "dnsname") ?: "-");
        cJSON_AddStringToObject(o, "public_url", url ?: "-");
        cJSON_AddStringToObject(o, "name", str_of(s, "name") ?: "-");
        cJSON_AddStringToObject(o, "type", str_of(s, "socket_type") ?: "-");
        cJSON_AddStringToObject(o, "ports", ports ?: "-");
        cJSON_AddStringToObject(o, "protected", yes_no(s, "protected_socket"));
        cJSON_AddStringToObject(o, "tunnels", tunnels ?: "-");
        output_object(o, stdout);
        cJSON_Delete(o);
}

static int socket_create(struct ctl_context *ctx, cJSON *req, const char *name, const char *type,
                         bool protected_, const char *username, const char *password) {
        cJSON *reply = NULL;
        const cJSON *s;
        int r;

        if (!name || !*name)
                return ctl_usage_error(ctx, "create: missing --name N");
        if (protected_ && (!username || !password))
                return ctl_usage_error(ctx, "create: --protected needs --username U and --password P");
        if (!protected_ && (username || password))
                return ctl_usage_error(ctx, "create: --username and --password need --protected");
        cJSON_AddStringToObject(req, "action", "create");
        cJSON_AddStringToObject(req, "name", name);
        cJSON_AddStringToObject(req, "type", type ?: "http");
        cJSON_AddBoolToObject(req, "protected", protected_);
        if (username)
                cJSON_AddStringToObject(req, "username", username);
        if (password)
                cJSON_AddStringToObject(req, "password", password);
        if ((r = call_for(ctx, req, "socket", cJSON_IsObject, &reply, &s)) != 0)
                return r;
        if (ctx->json)
                output_json(s);
        else
                socket_print(s);
        cJSON_Delete(reply);
        return 0;
}

int ctl_cmd_socket(struct ctl_context *ctx, int argc, char **argv) {
        enum { OPT_NAME = 0x200, OPT_TYPE, OPT_PROTECTED, OPT_USERNAME, OPT_PASSWORD };
        static const struct option opts[] = {
                { "name", required_argument, NULL, OPT_NAME },
                { "type", required_argument, NULL, OPT_TYPE },
                { "protected", no_argument, NULL, OPT_PROTECTED },
                { "username", required_argument, NULL, OPT_USERNAME },
                { "password", required_argument, NULL, OPT_PASSWORD },
                COMMON_OPTIONS,
                {}
        };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        const char *name = NULL, *type = NULL, *username = NULL, *password = NULL, *action;
        bool protected_ = false, create_opts = false;
        cJSON *reply = NULL;
        const cJSON *sockets;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case OPT_NAME:
                        name = optarg;
                        break;
                case OPT_TYPE:
                        if (!proto_type_valid(optarg))
                                return ctl_usage_error(ctx, "--type: \"%s\" is not one of http, https, tcp, tls", optarg);
                        type = optarg;
                        break;
                case OPT_PROTECTED:
                        protected_ = true;
                        break;
                case OPT_USERNAME:
                        username = optarg;
                        break;
                case OPT_PASSWORD:
                        password = optarg;
                        break;
                default:
                        if ((r = ctl_common_option(ctx, c)) >= 0)
                                return r;
                        continue;
                }
                create_opts = true;
        }
        if (optind >= argc)
                return ctl_usage_error(ctx, "missing action (ls, create, delete)");
        action = argv[optind];
        if (!streq(action, "create") && create_opts)
                return ctl_usage_error(ctx, "--name, --type, --protected, --username and --password are for 'create'");

        req = proto_request_new("socket");
        if (streq(action, "create")) {
                if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "")) >= 0)
                        return r;
                return socket_create(ctx, req, name, type, protected_, username, password);
        }
        if (streq(action, "delete")) {
                if ((r = ctl_check_args(ctx, argc, argv, 2, 2, "SOCKET_ID")) >= 0)
                        return r;
                cJSON_AddStringToObject(req, "action", "delete");
                cJSON_AddStringToObject(req, "socket_id", argv[optind + 1]);
                if ((r = call_for(ctx, req, NULL, NULL, &reply, NULL)) != 0)
                        return r;
                if (ctx->json)
                        ctl_print_result_json(reply);
                else {
                        _cleanup_(freep) char *id = sanitize_text(argv[optind + 1], 256);
                        printf("Deleted socket %s.\n", id);
                }
                cJSON_Delete(reply);
                return 0;
        }
        if (!streq(action, "ls"))
                return ctl_usage_error(ctx, "unknown action \"%s\" (ls, create, delete)", action);
        if ((r = ctl_check_args(ctx, argc, argv, 1, 1, "")) >= 0)
                return r;
        cJSON_AddStringToObject(req, "action", "ls");
        if ((r = call_for(ctx, req, "sockets", cJSON_IsArray, &reply, &sockets)) != 0)
                return r;
        if (ctx->json)
                output_json(sockets);
        else
                socket_ls_print(sockets);
        cJSON_Delete(reply);
        return 0;
}

/* ---- tunnel ----------------------------------------------------------------------------- */

static void tunnel_print(const cJSON *t) {
        _cleanup_(freep) char *port = number_text(t, "local_port");
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "tunnel_id", str_of(t, "tunnel_id") ?: "-");
        cJSON_AddStringToObject(o, "relay_port", port ?: "-");
        cJSON_AddStringToObject(o, "server", str_of(t, "tunnel_server") ?: "-");
        output_object(o, stdout);
        cJSON_Delete(o);
}

static void tunnel_ls_print(const cJSON *tunnels) {
        static const char *const headers[] = { "TUNNEL_ID", "RELAY_PORT", "SERVER" };
        struct table *tb;
        const cJSON *t;

        if (cJSON_GetArraySize(tunnels) == 0) {
                printf("No tunnels.\n");
                return;
        }
        tb = table_new(ELEMENTSOF(headers), headers);
        cJSON_ArrayForEach(t, tunnels) {
                _cleanup_(freep) char *port = number_text(t, "local_port");
                table_add_row(tb, (const char *const[]) { str_of(t, "tunnel_id"), port, str_of(t, "tunnel_server") });
        }
        table_print(tb, stdout, false);
        table_free(tb);
}

int ctl_cmd_tunnel(struct ctl_context *ctx, int argc, char **argv) {
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *result = NULL;
        const char *action;
        int r;

        if ((r = parse_common(ctx, argc, argv)) >= 0)
                return r;
        if (optind >= argc)
                return ctl_usage_error(ctx, "missing action (ls, create, delete)");
        action = argv[optind];
        req = proto_request_new("tunnel");
        if (streq(action, "ls") || streq(action, "create")) {
                if ((r = ctl_check_args(ctx, argc, argv, 2, 2, "SOCKET_ID")) >= 0)
                        return r;
        } else if (streq(action, "delete")) {
                if ((r = ctl_check_args(ctx, argc, argv, 3, 3, "SOCKET_ID and TUNNEL_ID")) >= 0)
                        return r;
                cJSON_AddStringToObject(req, "tunnel_id", argv[optind + 2]);
        } else
                return ctl_usage_error(ctx, "unknown action \"%s\" (ls, create, delete)", action);
        cJSON_AddStringToObject(req, "action", action);
        cJSON_AddStringToObject(req, "socket_id", argv[optind + 1]);

        if (streq(action, "ls"))
                r = call_for(ctx, req, "tunnels", cJSON_IsArray, &reply, &result);
        else if (streq(action, "create"))
                r = call_for(ctx, req, "tunnel", cJSON_IsObject, &reply, &result);
        else
                r = call_for(ctx, req, NULL, NULL, &reply, NULL);
        if (r != 0)
                return r;
        if (ctx->json && result)
                output_json(result);
        else if (ctx->json)
                ctl_print_result_json(reply);
        else if (streq(action, "ls"))
                tunnel_ls_print(result);
        else if (streq(action, "create"))
                tunnel_print(result);
        else {
                _cleanup_(freep) char *id = sanitize_text(argv[optind + 2], 256);
                printf("Deleted tunnel %s.\n", id);
        }
        cJSON_Delete(reply);
        return 0;
}

/* ---- connect ---------------------------------------------------------------------------- */

/* The public address of a binding that just came up: asked with `show` on a connection of
 * its own; failing that, taken from the "up" message ("..., public at URL"). */
static char *public_url_of(const struct ctl_context *ctx, const char *name, const char *message) {
        _cleanup_(proto_json_freep) cJSON *req = proto_request_new("show");
        cJSON *reply = NULL;
        const char *at;
        char *url = NULL;

        cJSON_AddStringToObject(req, "name", name);
        if (client_call(ctx->socket_path, req, &reply) == 0) {
                const char *u = str_of(cJSON_GetObjectItemCaseSensitive(reply, "binding"), "public_url");
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
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(line, "event");
        const char *what, *binding;
        int r;

        if (!ev) {
                r = client_report_error(line);
                return r ? r : ctl_malformed("expected an event line");
        }
        if ((r = ctl_print_event(ctx, ev)) != 0)
                return r;
        what = str_of(ev, "event");
        binding = str_of(ev, "binding");
        if (!ctx->json && what && binding && streq(what, "up") && streq(binding, name)) {
                _cleanup_(freep) char *url = public_url_of(ctx, name, str_of(ev, "message"));
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
        enum { OPT_PORT = 0x200, OPT_HOST, OPT_TYPE, OPT_NAME, OPT_PROTECTED, OPT_USERNAME,
               OPT_PASSWORD, OPT_REMOTE_PORT };
        static const struct option opts[] = {
                { "port", required_argument, NULL, OPT_PORT },
                { "host", required_argument, NULL, OPT_HOST },
                { "type", required_argument, NULL, OPT_TYPE },
                { "name", required_argument, NULL, OPT_NAME },
                { "protected", no_argument, NULL, OPT_PROTECTED },
                { "username", required_argument, NULL, OPT_USERNAME },
                { "password", required_argument, NULL, OPT_PASSWORD },
                { "remote-port", required_argument, NULL, OPT_REMOTE_PORT },
                COMMON_OPTIONS,
                {}
        };
        struct proto_add a = {};
        struct client cl = { .fd = -1 };
        _cleanup_(proto_json_freep) cJSON *req = NULL;
        cJSON *reply = NULL;
        const cJSON *b;
        _cleanup_(freep) char *name = NULL;
        sigset_t mask, old_mask;
        int c, r, sfd = -1;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case OPT_PORT:
                        if (parse_port(optarg, &a.port) < 0) {
                                r = ctl_usage_error(ctx, "--port: \"%s\" is not a port (1-65535)", optarg);
                                goto out;
                        }
                        break;
                case OPT_HOST:
                        free(a.host);
                        a.host = xstrdup(optarg);
                        break;
                case OPT_TYPE:
                        if (!proto_type_valid(optarg)) {
                                r = ctl_usage_error(ctx, "--type: \"%s\" is not one of http, https, tcp, tls", optarg);
                                goto out;
                        }
                        free(a.type);
                        a.type = xstrdup(optarg);
                        break;
                case OPT_NAME:
                        free(a.display_name);
                        a.display_name = xstrdup(optarg);
                        break;
                case OPT_PROTECTED:
                        a.protected_ = true;
                        break;
                case OPT_USERNAME:
                        free(a.username);
                        a.username = xstrdup(optarg);
                        break;
                case OPT_PASSWORD:
                        free(a.password);
                        a.password = xstrdup(optarg);
                        break;
                case OPT_REMOTE_PORT:
                        if (parse_port(optarg, &a.remote_port) < 0) {
                                r = ctl_usage_error(ctx, "--remote-port: \"%s\" is not a port (1-65535)", optarg);
                                goto out;
                        }
                        break;
                default:
                        if ((r = ctl_common_option(ctx, c)) >= 0)
                                goto out;
                }
        }
        if ((r = ctl_check_args(ctx, argc, argv, 0, 0, "")) >= 0)
                goto out;
        if (a.port == 0) {
                r = ctl_usage_error(ctx, "missing --port PORT");
                goto out;
        }

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

        req = proto_request_new("connect");
        cJSON_AddItemToObject(req, "binding", proto_add_to_json(&a));
        if ((r = client_open(&cl, ctx->socket_path)) != 0)
                goto out;
        if ((r = client_send(&cl, req)) != 0 || (r = client_read(&cl, CTL_REPLY_TIMEOUT_MS, &reply)) != 0)
                goto out;
        if (!reply) {
                fprintf(stderr, "mysocketctl: mysocketd closed the connection without replying\n");
                r = CTL_EXIT_FAILURE;
                goto out;
        }
        if ((r = client_report_error(reply)) != 0)
                goto out;
        b = cJSON_GetObjectItemCaseSensitive(reply, "binding");
        if (!cJSON_IsObject(b) || !str_of(b, "name")) {
                r = ctl_malformed("\"binding\" is not an object with a name");
                goto out;
        }
        name = sanitize_text(str_of(b, "name"), 256);
        {
                _cleanup_(freep) char *host = sanitize_text(str_of(b, "host") ?: a.host ?: "127.0.0.1", 256);
                bool v6 = strchr(host, ':');
                /* With --json stdout holds only JSON lines. */
                fprintf(ctx->json ? stderr : stdout, "Connecting %s (local %s%s%s:%u)... Ctrl-C ends it.\n",
                        name, v6 ? "[" : "", host, v6 ? "]" : "", a.port);
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
