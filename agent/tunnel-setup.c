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

int check_identity(struct session *s) {
        struct stat st;
        const char *f = s->p.identity_file;
        if (!f || !*f) {
                session_fail(s, -ENOKEY, true, "no identity_file configured");
                return -ENOKEY;
        }
        if (stat(f, &st) < 0) {
                int e = errno;
                session_fail(s, -e, true, e == ENOENT ? "identity file %s does not exist" :
                            "cannot access identity file %s: %s", f, strerror(e));
                return -e;
        }
        if (!S_ISREG(st.st_mode)) {
                session_fail(s, -EINVAL, true, "identity file %s is not a regular file", f);
                return -EINVAL;
        }
        if (st.st_mode & 077) {
                session_fail(s, -EPERM, true, "identity file %s is readable by others (mode %04o); chmod 600 %s", f,
                            (unsigned) (st.st_mode & 07777), f);
                return -EPERM;
        }
        if (access(f, R_OK) < 0) {
                int e = errno;
                session_fail(s, -e, true, "cannot read identity file %s: %s", f, strerror(e));
                return -e;
        }
        return 0;
}

/* Runs handshake, host key check, authentication and the forward request as far as the
 * socket allows. Each step is retried with the same arguments until it stops saying EAGAIN;
 * nothing else touches the session meanwhile. */
void setup_step(struct session *s) {
        const char *m;
        int rc;

        for (;;) {
                switch (s->state) {
                case SESSION_HANDSHAKE:
                        rc = libssh2_session_handshake(s->session, s->fd);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return;
                        if (rc) {
                                int e = ssh_errno(s, rc, &m);
                                session_fail(s, e, false, "SSH handshake with %s:%u failed: %s", s->p.server,
                                            s->p.server_port, s->sock_broken ? strerror(-e) : m);
                                return;
                        }
                        {
                                _cleanup_(freep) char *msg = NULL;
                                int r = hostkey_verify(s->session, &s->p, &msg);
                                if (r < 0) {
                                        session_fail(s, r, r == -EPERM, "%s", msg);
                                        return;
                                }
                        }
                        s->state = SESSION_AUTH;
                        break;

                case SESSION_AUTH: {
                        _cleanup_(freep) char *pub = xasprintf("%s.pub", s->p.identity_file);
                        rc = libssh2_userauth_publickey_fromfile_ex(s->session, s->p.user,
                                                                    (unsigned) strlen(s->p.user),
                                                                    access(pub, R_OK) == 0 ? pub : NULL,
                                                                    s->p.identity_file, NULL);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return;
                        /* A relay that dies in mid-auth (restart) makes 1.10 report a failed
                         * authentication too; only a live connection's "no" is a real refusal. */
                        if ((rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) &&
                            !s->sock_broken) {
                                session_fail(s, -EACCES, true, "relay %s:%u rejected the key %s for user %s",
                                            s->p.server, s->p.server_port, s->p.identity_file, s->p.user);
                                return;
                        }
                        if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_KEYFILE_AUTH_FAILED) {
                                ssh_errno(s, rc, &m);
                                session_fail(s, -ENOKEY, true, "cannot use identity file %s: %s (an unencrypted "
                                            "ed25519 key in OpenSSH format is expected)", s->p.identity_file, m);
                                return;
                        }
                        if (rc) {
                                fail_lost(s, rc);
                                return;
                        }
                        /* want_reply=0: with want_reply=1 the relay's REQUEST_FAILURE answers get
                         * taken by 1.10 as the answer to a later tcpip-forward request. */
                        libssh2_keepalive_config(s->session, 0, s->p.keepalive_interval);
                        s->state = SESSION_UP;
                        s->log_phase = LOG_OPEN;
                        s->next_probe = now_mono(s) + s->p.keepalive_interval * USEC_PER_SEC;
                        arm_timer(s, s->next_probe);
                        const char *cipher, *mac;
                        session_algorithms(s, &cipher, &mac);
                        log_binding(LOG_DEBUG, NULL, "session", "SSH session %s up: cipher %s%s%s", s->label,
                                    cipher ?: "?", mac ? ", MAC " : " (AEAD, no separate MAC)", mac ?: "");
                        return;
                }

                default:
                        return;
                }
        }
}

/* ---- forwards ------------------------------------------------------------------------------ */

static bool go_on(struct session *s) {
        return s->state != SESSION_DOWN && !s->freed && s->pending.kind == OP_NONE;
}

void forward_done(struct session *s, ssize_t rc) {
        if (rc == LIBSSH2_ERROR_EAGAIN)
                return;
        struct tunnel *t = s->listen_for;
        s->listening = false;
        s->listen_for = NULL;
        if (rc == 0) {
                if (t)
                        tunnel_forward_granted(t, s->listen_result, s->listen_bound);
                else {
                        /* Its binding went away meanwhile. */
                        s->cancels = xrealloc(s->cancels, (s->n_cancels + 1) * sizeof(*s->cancels));
                        s->cancels[s->n_cancels++] = s->listen_result;
                }
                s->listen_result = NULL;
                return;
        }
        if (rc == LIBSSH2_ERROR_REQUEST_DENIED && !s->sock_broken) {
                if (t) {
                        _cleanup_(freep) char *msg = xasprintf("relay refused forward on port %u (still held by an "
                                                               "old session?)", s->listen_port);
                        tunnel_forward_refused(t, -EADDRINUSE, msg);
                }
                return;
        }
        fail_lost(s, rc);
}

/* One tcpip-forward at a time: libssh2 1.10 keeps the request's state in the session. The
 * wait for the relay's answer is a pure read, so everything else goes on meanwhile. */
bool forward_step(struct session *s) {
        for (;;) {
                if (!s->listening) {
                        struct tunnel *t = s->tunnels_head;
                        while (t && t->state != FORWARD_WAITING)
                                t = t->next;
                        if (!t)
                                return true;
                        t->state = FORWARD_REQUESTING;
                        s->listening = true;
                        s->listen_for = t;
                        free(s->listen_host);
                        s->listen_host = xstrdup(t->bind_host);
                        s->listen_port = t->remote_port;
                }
                ssize_t rc = op_run(s, OP_LISTEN, NULL, NULL, 0);
                forward_done(s, rc);
                if (!go_on(s))
                        return false;
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        return true;
        }
}

void cancel_done(struct session *s, LIBSSH2_LISTENER *listener, ssize_t rc) {
        if (rc == LIBSSH2_ERROR_EAGAIN)
                return;
        if (rc < 0 && ssh_fatal(s, rc)) {
                fail_lost(s, rc);
                return;
        }
        /* Done (libssh2 freed the listener) or refused locally: either way it is no longer ours. */
        for (size_t i = 0; i < s->n_cancels; i++)
                if (s->cancels[i] == listener) {
                        s->cancels[i] = s->cancels[--s->n_cancels];
                        break;
                }
}

bool cancel_step(struct session *s) {
        while (s->n_cancels > 0) {
                LIBSSH2_LISTENER *l = s->cancels[s->n_cancels - 1];
                ssize_t rc = op_call(s, (struct op) { .kind = OP_CANCEL, .listener = l });
                cancel_done(s, l, rc);
                if (!go_on(s))
                        return false;
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        return true;
        }
        return true;
}

/* Opens the log shell after the forward is granted. A relay that refuses the shell still
 * gets a working tunnel; the channel then only carries keepalive probes. Returns true when
 * done (either way). */
bool log_setup_step(struct session *s) {
        const char *m;
        int rc;

        if (s->log_phase == LOG_OPEN) {
                LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(s->session);
                if (!ch) {
                        rc = libssh2_session_last_errno(s->session);
                        if (rc == LIBSSH2_ERROR_EAGAIN)
                                return false;
                        if (ssh_fatal(s, rc)) {
                                fail_lost(s, rc);
                                return false;
                        }
                        ssh_errno(s, rc, &m);
                        log_binding(LOG_DEBUG, NULL, "edge-log", "relay refused a session channel (%s); "
                                    "no edge log, keepalives get no reply", m);
                        s->log_phase = LOG_NONE;
                        return true;
                }
                libssh2_channel_handle_extended_data2(ch, LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE);
                s->log = conn_new(s, NULL, ch, true);
                s->log_phase = s->log_shell_tried ? LOG_RUNNING : LOG_SHELL;
                s->log_shell_tried = true;
        }
        if (s->log_phase == LOG_SHELL) {
                rc = libssh2_channel_shell(s->log->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN)
                        return false;
                if (rc && ssh_fatal(s, rc)) {
                        fail_lost(s, rc);
                        return false;
                }
                if (rc) {
                        ssh_errno(s, rc, &m);
                        log_binding(LOG_DEBUG, NULL, "edge-log", "relay refused the shell (%s); "
                                    "the tunnel works without the relay's log", m);
                }
                s->log_phase = LOG_RUNNING;
        }
        return true;
}

