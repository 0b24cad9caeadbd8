/* mysocketd: keeps a reverse SSH tunnel up for every binding, for ever. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "commands.h"
#include "conf.h"
#include "control.h"
#include "eventlog.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "notify.h"
#include "state.h"
#include "tunnel/tunnel.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: mysocketd [-c FILE] [--check-config] [--version] [--help]\n"
                "Keeps a reverse SSH tunnel to the relay up for every binding in the config.\n\n"
                "  -c, --config FILE   config file (default %s)\n"
                "  -t, --check-config  check the config files and exit: 0 if good, 78 if not\n"
                "  -V, --version       print the version\n"
                "  -h, --help          show this help\n",
                CONF_DEFAULT_PATH);
}

static void print_list(const struct strv *v, const char *prefix) {
        for (size_t i = 0; i < v->n; i++)
                fprintf(stderr, "%s%s\n", prefix, v->items[i]);
}

/* systemd's mysocketd.socket names its fd "control"; a lone unnamed fd is ours too. */
static int listen_fd_from_systemd(void) {
        char **names = NULL;
        int fd = -1;
        int n = sd_listen_fds_with_names(1, &names);
        for (int i = 0; i < n; i++) {
                if (fd < 0 && (streq(names[i], "control") || (n == 1 && streq(names[i], "unknown"))))
                        fd = SD_LISTEN_FDS_START + i;
                free(names[i]);
        }
        free(names);
        return fd;
}

/* The path a passed socket listens on, for status and the log; NULL if it has none. */
static char *socket_path(int fd) {
        struct sockaddr_un sa = { 0 };
        socklen_t len = sizeof(sa);
        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0 || sa.sun_family != AF_UNIX ||
            len <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] == '\0')
                return NULL;
        return strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct manager *m = userdata;
        struct reload_result res = { 0 };
        struct strv errors = { 0 };
        manager_reload(m, &res, &errors);
        manager_reload_result_clear(&res);
        strv_clear(&errors);
        return 0;
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("received %s; stopping", strsignal((int) si->ssi_signo));
        notify_stopping();
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/* Counts of rate-limited log lines come out even when their kind stops repeating. */
static int on_log_flush(sd_event_source *s, uint64_t usec, void *userdata) {
        log_flush_suppressed();
        if (sd_event_source_set_time(s, usec + LOG_RATELIMIT_USEC) < 0 ||
            sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) < 0)
                log_warning("cannot re-arm the log flush timer; held-back counts wait for their next line");
        return 0;
}

/* Tunnels and control clients each take a descriptor; the default soft limit of 1024 is
 * too small for a few hundred busy bindings. */
static void raise_fd_limit(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
}

static int run(struct config *config) {
        _cleanup_(freep) char *error = NULL, *control_path = NULL;
        struct manager *m = NULL;
        struct control *ctl = NULL;
        struct eventlog *events = NULL;
        struct metrics *mx = NULL;
        sd_event *e = NULL;
        sigset_t mask;
        bool tunnel_ready = false;
        int r, ret = EXIT_FAILURE;

        if (state_init(config->state_dir, &error) < 0) {
                log_error("%s", error);
                conf_free(config);
                return EXIT_FAILURE;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        raise_fd_limit();

        r = sd_event_default(&e);
        if (r < 0) {
                log_error("cannot create the event loop: %s", strerror(-r));
                conf_free(config);
                return EXIT_FAILURE;
        }
        events = eventlog_new();
        r = manager_new(e, config, &m);
        if (r < 0) {
                log_error("cannot start: %s", strerror(-r));
                conf_free(config);
                goto out;
        }
        /* Our own copy: a reload frees `config`, and a socket unit may listen elsewhere. */
        int listen_fd = listen_fd_from_systemd();
        if (listen_fd >= 0)
                control_path = socket_path(listen_fd);
        if (!control_path)
                control_path = xstrdup(config->control_socket);
        struct commands cmds = { .manager = m, .eventlog = events, .control_socket = control_path };
        r = control_new(e, listen_fd, config->control_socket, m->control_gid,
                        commands_dispatch, &cmds, &ctl, &error);
        if (r < 0) {
                log_error("%s", error);
                goto out;
        }
        /* After the control socket: a daemon that cannot listen for metrics says so and
         * stops, as for the control socket, rather than run unwatched. */
        if (config->metrics_listen) {
                r = metrics_new(e, config->metrics_listen, m, &mx, &error);
                if (r < 0) {
                        log_error("%s", error);
                        goto out;
                }
        }
        /* A daemon that cannot hear SIGTERM must not start. */
        if ((r = sd_event_add_signal(e, NULL, SIGTERM, on_stop_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(e, NULL, SIGINT, on_stop_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(e, NULL, SIGHUP, on_reload_signal, m)) < 0) {
                log_error("cannot watch signals: %s", strerror(-r));
                goto out;
        }
        if (sd_event_add_time_relative(e, NULL, CLOCK_MONOTONIC, LOG_RATELIMIT_USEC, 0, on_log_flush, NULL) < 0)
                log_warning("cannot arm the log flush timer; held-back counts wait for their next line");
        /* WATCHDOG=1 from the loop itself: if the loop stalls, systemd notices. */
        r = sd_event_set_watchdog(e, true);
        if (r < 0)
                log_warning("cannot drive the systemd watchdog: %s", strerror(-r));

        r = tunnel_global_init();
        if (r < 0) {
                log_error("cannot initialise libssh2: %s", strerror(-r));
                goto out;
        }
        tunnel_ready = true;
        manager_start(m);
        log_info("mysocketd %s started: %s mode, %zu binding%s, control socket %s%s%s%s", PACKAGE_VERSION,
                 config->api ? "API" : "direct", m->n_bindings, m->n_bindings == 1 ? "" : "s",
                 control_path, listen_fd >= 0 ? " (from systemd)" : "",
                 mx ? ", metrics on http://" : "", mx ? config->metrics_listen : "");
        /* Ready means: the control socket answers and the state is loaded, not tunnels up. */
        notify_ready();
        r = sd_event_loop(e);
        ret = r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
out:
        metrics_free(mx);
        control_free(ctl);
        manager_free(m);
        /* After the sessions are freed: libssh2_exit() tears down what they use. */
        if (tunnel_ready)
                tunnel_global_done();
        eventlog_free(events);
        sd_event_unref(e);
        return ret;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 't' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *path = CONF_DEFAULT_PATH;
        bool check = false;
        int c;
        while ((c = getopt_long(argc, argv, "c:tVh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 't':
                        check = true;
                        break;
                case 'V':
                        printf("mysocketd %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return EX_USAGE;
                }
        if (optind < argc) {
                fprintf(stderr, "mysocketd: unexpected argument \"%s\"\n", argv[optind]);
                usage(stderr);
                return EX_USAGE;
        }

        log_open("mysocketd");
        struct config *config = NULL;
        struct strv errors = { 0 }, warnings = { 0 };
        int r = conf_load(path, &config, &errors, &warnings);
        if (r < 0) {
                print_list(&warnings, "warning: ");
                print_list(&errors, "");
                fprintf(stderr, "%s: %zu error%s\n", path, errors.n, errors.n == 1 ? "" : "s");
                strv_clear(&errors);
                strv_clear(&warnings);
                return EX_CONFIG;
        }
        /* From here on every line on stderr is in the configured format (log_format = json
         * makes the warnings JSON objects too). */
        log_set_format(config->log_format);
        for (size_t i = 0; i < warnings.n; i++)
                log_warning("%s", warnings.items[i]);
        strv_clear(&warnings);
        if (check) {
                conf_free(config);
                return EXIT_SUCCESS;
        }
        log_set_max_level(config->log_level);
        return run(config);
}
