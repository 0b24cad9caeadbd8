/* An up session's requests to the relay: one tcpip-forward per tunnel, the cancels of
 * forwards whose tunnel is gone, and the log shell. */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "session.h"
#include "util.h"

static bool go_on(struct session *s) {
        return !session_stopped(s);
}

void forward_cancel_later(struct session *s, sshcall_listener *listener) {
        s->cancels = xrealloc(s->cancels, (s->n_cancels + 1) * sizeof(*s->cancels));
        s->cancels[s->n_cancels++] = listener;
}

void forward_done(struct session *s, ssize_t r) {
        if (sshcall_again(r))
                return;
        struct tunnel *t = s->listen_for;
        s->listening = false;
        s->listen_for = NULL;
        if (r == 0) {
                int bound;
                sshcall_listener *l = sshcall_listened(s->ssh, &bound);
                if (t)
                        tunnel_forward_granted(t, l, bound);
                else
                        forward_cancel_later(s, l);   /* its binding went away meanwhile */
                return;
        }
        if (r == -EADDRINUSE && !sshcall_ended(s->ssh)) {
                if (t) {
                        /* OpenSSH sends the same REQUEST_FAILURE for a port in use and for policy. */
                        _cleanup_(freep) char *msg = xasprintf("relay refused to listen on port %u: the port is in "
                                                               "use there, or its PermitListen/AllowTcpForwarding "
                                                               "forbids it", s->listen_port);
                        tunnel_forward_refused(t, -EADDRINUSE, msg);
                }
                return;
        }
        session_lost(s, NULL);
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
                        if (t->target_host) {
                                /* A local forward asks the relay nothing up front. */
                                tunnel_local_ready(t);
                                if (!go_on(s))
                                        return false;
                                continue;
                        }
                        t->state = FORWARD_REQUESTING;
                        s->listening = true;
                        s->listen_for = t;
                        free(s->listen_host);
                        s->listen_host = xstrdup(t->bind_host);
                        s->listen_port = t->remote_port;
                }
                ssize_t r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_LISTEN, .host = s->listen_host,
                                                                      .port = s->listen_port });
                forward_done(s, r);
                if (!go_on(s))
                        return false;
                if (sshcall_again(r))
                        return true;
        }
}

void forward_cancel_done(struct session *s, sshcall_listener *listener, ssize_t r) {
        if (sshcall_again(r))
                return;
        if (r < 0 && sshcall_ended(s->ssh)) {
                session_lost(s, NULL);
                return;
        }
        /* Done (libssh2 freed the listener) or refused locally: either way it is no longer ours. */
        for (size_t i = 0; i < s->n_cancels; i++)
                if (s->cancels[i] == listener) {
                        s->cancels[i] = s->cancels[--s->n_cancels];
                        break;
                }
}

bool forward_cancel_step(struct session *s) {
        while (s->n_cancels > 0) {
                sshcall_listener *l = s->cancels[s->n_cancels - 1];
                ssize_t r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_CANCEL, .listener = l });
                forward_cancel_done(s, l, r);
                if (!go_on(s))
                        return false;
                if (sshcall_again(r))
                        return true;
        }
        return true;
}

/* The result of the log shell's SSHCALL_OPEN_SESSION or SSHCALL_SHELL, first made or retried
 * as the pending call. A relay that refuses the shell still gets a working tunnel; the
 * channel then only carries keepalive probes. */
void forward_log_done(struct session *s, enum sshcall_kind kind, ssize_t r) {
        if (sshcall_again(r))
                return;
        if (r < 0 && sshcall_ended(s->ssh)) {
                session_lost(s, NULL);
                return;
        }
        if (kind == SSHCALL_OPEN_SESSION) {
                if (r < 0) {
                        log_binding(LOG_DEBUG, NULL, "edge-log", "relay refused a session channel (%s); "
                                    "no edge log, keepalives get no reply", sshcall_message(s->ssh));
                        s->log_phase = LOG_NONE;
                        return;
                }
                sshcall_channel *ch = sshcall_opened(s->ssh);
                sshcall_merge_stderr(ch, true);
                s->log = bridge_new(s, NULL, ch, true);
                /* edge_log off: like `ssh -N`, no shell; the bare channel is for the probes. */
                s->log_phase = s->log_shell_tried || !s->p.edge_log ? LOG_RUNNING : LOG_SHELL;
                s->log_shell_tried = true;
                return;
        }
        if (r < 0)
                log_binding(LOG_DEBUG, NULL, "edge-log", "relay refused the shell (%s); the tunnel works without "
                            "the relay's log", sshcall_message(s->ssh));
        s->log_phase = LOG_RUNNING;
}

/* Opens the log shell after the forward is granted, through the one-pending-call layer like
 * every other call. Returns true when done (either way). */
bool forward_log_step(struct session *s) {
        ssize_t r;
        if (s->log_phase == LOG_OPEN) {
                r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_OPEN_SESSION });
                forward_log_done(s, SSHCALL_OPEN_SESSION, r);
                if (sshcall_again(r) || !go_on(s))
                        return false;
        }
        if (s->log_phase == LOG_SHELL && s->log) {
                r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_SHELL, .ch = bridge_channel(s->log) });
                forward_log_done(s, SSHCALL_SHELL, r);
                if (sshcall_again(r) || !go_on(s))
                        return false;
        }
        return true;
}
