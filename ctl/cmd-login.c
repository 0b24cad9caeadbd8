/* login: the daemon logs in to the API with the account's email and password. The
 * password is read here (a file only its owner may read, the terminal without echo, or
 * standard input), sent once and wiped. */
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "output.h"
#include "protocol.h"
#include "scrub.h"
#include "util.h"

#define PASSWORD_MAX 1024

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) {
        got_signal = sig;
}

/* The file's rules (owner-only, one line end at the end) are the daemon's for its
 * password_file: secret_file_read() in common/. */
static int read_password_file(const char *path, char **ret) {
        _cleanup_(freep) char *error = NULL;
        int r = secret_file_read(path, "password", PASSWORD_MAX, ret, &error);
        if (r < 0) {
                fprintf(stderr, "mysocketctl login: %s\n", error);
                return r == -EACCES ? CTL_EXIT_NOPERM : CTL_EXIT_FAILURE;
        }
        return 0;
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
        req = proto_request_new(PROTO_CMD_LOGIN);
        cJSON_AddStringToObject(req, PROTO_KEY_EMAIL, email);
        pw = cJSON_AddStringToObject(req, PROTO_KEY_PASSWORD, password);
        scrub_free(password);

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
