/* Local forwards (like `ssh -L`): each connection the daemon accepted on a forward's listen
 * address gets a direct-tcpip channel to the forward's target, as seen from the relay; then
 * bridge.c moves its bytes like any forwarded connection, with the same bounded buffers.
 *
 * One open at a time per session: libssh2 keeps a channel open's state in the session (the
 * log channel's open too), so the connections wait in a queue, oldest first. The wait for
 * the relay's answer is a pure read: every other channel goes on meanwhile. A refusal
 * (AllowTcpForwarding remote, PermitOpen, the target refusing the relay) closes that one
 * local connection, with a warning at most every few seconds per forward. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "util.h"

#define WARN_INTERVAL_USEC (5 * 1000000ULL)

void direct_queue(struct session *s, struct bridge *b, struct tunnel *t, const char *peer, uint16_t peer_port) {
        s->opens = xrealloc(s->opens, (s->n_opens + 1) * sizeof(*s->opens));
        struct direct_open *o = &s->opens[s->n_opens++];
        *o = (struct direct_open) { .b = b, .t = t, .peer_port = peer_port };
        snprintf(o->peer, sizeof(o->peer), "%s", peer ? peer : "127.0.0.1");
        session_schedule(s);
}

void direct_forget(struct session *s, struct bridge *b) {
        if (s->open_for == b)
                s->open_for = NULL;
        for (size_t i = 0; i < s->n_opens; i++)
                if (s->opens[i].b == b) {
                        memmove(&s->opens[i], &s->opens[i + 1], (s->n_opens - i - 1) * sizeof(*s->opens));
                        s->n_opens--;
                        return;
                }
}

static void refused(struct session *s, struct tunnel *t, int error) {
        uint64_t now = now_monotonic_usec();
        t->stats.connections_refused++;
        free(t->last_local_error);
        t->last_local_error = xasprintf("relay %s:%u refused a channel to %s:%u: %s", s->p.server, s->p.server_port,
                                        t->target_host, t->target_port,
                                        error == -ECONNREFUSED ? sshcall_message(s->ssh) : strerror(-error));
        if (t->last_warn && now < t->last_warn + WARN_INTERVAL_USEC) {
                t->warn_suppressed++;
                return;
        }
        log_binding(LOG_WARNING, t->name, "channel-refused", "%s; closing the local connection%s",
                    t->last_local_error, t->warn_suppressed ? " (and earlier ones)" : "");
        t->last_warn = now;
        t->warn_suppressed = 0;
}

void direct_done(struct session *s, ssize_t r) {
        if (sshcall_again(r))
                return;
        struct bridge *b = s->open_for;
        struct tunnel *t = b ? s->opens[0].t : NULL;
        s->opening = false;
        s->open_for = NULL;
        if (b)
                direct_forget(s, b);    /* opens[0] */
        if (r == 0) {
                sshcall_channel *ch = sshcall_opened(s->ssh);
                if (b)
                        bridge_opened(b, ch);
                else
                        bridge_new(s, NULL, ch, false);    /* its client left meanwhile: closed at once */
                return;
        }
        if (sshcall_ended(s->ssh)) {
                session_lost(s, "direct-tcpip open");
                return;
        }
        if (b) {
                refused(s, t, (int) r);
                bridge_close(b, (int) r);
        }
}

bool direct_step(struct session *s) {
        for (;;) {
                if (!s->opening) {
                        /* The log channel's open shares libssh2's open state: it goes first. */
                        if (s->n_opens == 0 || s->log_phase == LOG_OPEN || s->log_phase == LOG_SHELL)
                                return true;
                        struct direct_open *o = &s->opens[0];
                        s->opening = true;
                        s->open_for = o->b;
                        free(s->open_host);
                        s->open_host = xstrdup(o->t->target_host);
                        s->open_port = o->t->target_port;
                        memcpy(s->open_peer, o->peer, sizeof(s->open_peer));
                        s->open_peer_port = o->peer_port;
                }
                ssize_t r = sshcall_run(s->ssh, (struct sshcall_op) { .kind = SSHCALL_OPEN_DIRECT, .host = s->open_host,
                                                                      .port = s->open_port, .shost = s->open_peer,
                                                                      .sport = s->open_peer_port });
                direct_done(s, r);
                if (session_stopped(s))
                        return false;
                if (sshcall_again(r))
                        return true;
        }
}
