/* The tunnel engine, setting up the session once TCP is connected: identity file checks,
 * handshake, host key, public key auth, the tcpip-forward request, then the log shell. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "log.h"
#include "tunnel-internal.h"

/* ---- SSH setup ------------------------------------------------------------------------- */

int check_identity(struct tunnel *t) {
        struct stat st;
        const char *f = t->p.identity_file;
        if (!f || !*f) {
                tunnel_fail(t, -ENOKEY, true, "no identity_file configured");
                return -ENOKEY;
        }
        if (stat(f, &st) < 0) {
                int e = errno;
                tunnel_fail(t, -e, true, e == ENOENT ? "identity file %s does not exist" :
                            "cannot access identity file %s: %s", f, strerror(e));
                return -e;
        }
        if (!S_ISREG(st.st_mode)) {
                tunnel_fail(t, -EINVAL, true, "identity file %s is not a regular file", f);
                return -EINVAL;
        }
        if (st.st_mode & 077) {
                tunnel_fail(t, -EPERM, true, "identity file %s is readable by others (mode %04o); chmod 600 %s", f,
                            (unsigned) (st.st_mode & 07777), f);
                return -EPERM;
        }
        if (access(f, R_OK) < 0) {
                int e = errno;
                tunnel_fail(t, -e, true, "cannot read identity file %s: %s", f, strerror(e));
                return -e;
        }
        return 0;
}

/* Runs handshake, host key check, authentication and the forward request as far as the
 * socket allows. Each step is retried with the same arguments until it stops saying EAGAIN;
 * nothing else touches the session meanwhile. */
void setup_step(struct tunnel *t) {
        const char *m;
        int rc;

        for (;;) {
                switch (t->state) {
                case TUNNEL_HANDSHAKE:
                        rc = libssh2_session_handshake(t->session, t->fd);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return;
                        if (rc) {
                                int e = ssh_errno(t, rc, &m);
                                tunnel_fail(t, e, false, "SSH handshake with %s:%u failed: %s", t->p.server,
                                            t->p.server_port, t->sock_broken ? strerror(-e) : m);
                                return;
                        }
                        {
                                _cleanup_(freep) char *msg = NULL;
                                int r = hostkey_verify(t->session, &t->p, &msg);
                                if (r < 0) {
                                        tunnel_fail(t, r, r == -EPERM, "%s", msg);
                                        return;
                                }
                        }
                        t->state = TUNNEL_AUTH;
                        break;

                case TUNNEL_AUTH: {
                        _cleanup_(freep) char *pub = xasprintf("%s.pub", t->p.identity_file);
                        rc = libssh2_userauth_publickey_fromfile_ex(t->session, t->p.user,
                                                                    (unsigned) strlen(t->p.user),
                                                                    access(pub, R_OK) == 0 ? pub : NULL,
                                                                    t->p.identity_file, NULL);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return;
                        /* A relay that dies in mid-auth (restart) makes 1.10 report a failed
                         * authentication too; only a live connection's "no" is a real refusal. */
                        if ((rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) &&
                            !t->sock_broken) {
                                tunnel_fail(t, -EACCES, true, "relay %s:%u rejected the key %s for user %s",
                                            t->p.server, t->p.server_port, t->p.identity_file, t->p.user);
                                return;
                        }
                        if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_KEYFILE_AUTH_FAILED) {
                                ssh_errno(t, rc, &m);
                                tunnel_fail(t, -ENOKEY, true, "cannot use identity file %s: %s (an unencrypted "
                                            "ed25519 key in OpenSSH format is expected)", t->p.identity_file, m);
                                return;
                        }
                        if (rc) {
                                fail_lost(t, rc);
                                return;
                        }
                        /* want_reply=0: with want_reply=1 the relay's REQUEST_FAILURE answers get
                         * taken by 1.10 as the answer to a later tcpip-forward request. */
                        libssh2_keepalive_config(t->session, 0, t->p.keepalive_interval);
                        t->state = TUNNEL_FORWARD;
                        break;
                }

                case TUNNEL_FORWARD:
                        t->listener = libssh2_channel_forward_listen_ex(t->session, t->p.bind_host,
                                                                        t->p.remote_port, &t->bound_port,
                                                                        LISTEN_QUEUE);
                        if (!t->listener) {
                                rc = libssh2_session_last_errno(t->session);
                                if (rc == LIBSSH2_ERROR_EAGAIN)
                                        return;
                                if (rc == LIBSSH2_ERROR_REQUEST_DENIED && !t->sock_broken) {
                                        tunnel_fail(t, -EADDRINUSE, false, "relay refused forward on port %u "
                                                    "(still held by an old session?)", t->p.remote_port);
                                        return;
                                }
                                fail_lost(t, rc);
                                return;
                        }
                        t->state = TUNNEL_UP;
                        t->log_phase = LOG_OPEN;
                        t->next_probe = now_mono(t) + t->p.keepalive_interval * USEC_PER_SEC;
                        arm_timer(t, t->next_probe);
                        log_binding(LOG_DEBUG, t->p.name, "forward", "relay %s:%u listens on %s:%d for us",
                                    t->p.server, t->p.server_port, t->p.bind_host, t->bound_port);
                        if (t->cb.on_up)
                                t->cb.on_up(t, t->userdata);
                        return;

                default:
                        return;
                }
        }
}

/* Opens the log shell after the forward is granted. A relay that refuses the shell still
 * gets a working tunnel; the channel then only carries keepalive probes. Returns true when
 * done (either way). */
bool log_setup_step(struct tunnel *t) {
        const char *m;
        int rc;

        if (t->log_phase == LOG_OPEN) {
                LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(t->session);
                if (!ch) {
                        rc = libssh2_session_last_errno(t->session);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return false;
                        if (ssh_fatal(t, rc)) {
                                fail_lost(t, rc);
                                return false;
                        }
                        ssh_errno(t, rc, &m);
                        log_binding(LOG_DEBUG, t->p.name, "edge-log", "relay refused a session channel (%s); "
                                    "no edge log, keepalives get no reply", m);
                        t->log_phase = LOG_NONE;
                        return true;
                }
                libssh2_channel_handle_extended_data2(ch, LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE);
                t->log = conn_new(t, ch, true);
                t->log_phase = t->log_shell_tried ? LOG_RUNNING : LOG_SHELL;
                t->log_shell_tried = true;
        }
        if (t->log_phase == LOG_SHELL) {
                rc = libssh2_channel_shell(t->log->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        return false;
                if (rc && ssh_fatal(t, rc)) {
                        fail_lost(t, rc);
                        return false;
                }
                if (rc) {
                        ssh_errno(t, rc, &m);
                        log_binding(LOG_DEBUG, t->p.name, "edge-log", "relay refused the shell (%s); "
                                    "the tunnel works without the relay's log", m);
                }
                t->log_phase = LOG_RUNNING;
        }
        return true;
}

