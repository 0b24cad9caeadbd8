/* HTTP requests on the caller's sd-event loop, through libcurl's multi-socket interface.
 * The only file of the daemon that includes libcurl. It knows URLs, headers and bodies,
 * nothing of the mysocket API, its tokens or its JSON. It also opens the tunnel engine's
 * TCP connection to a relay through an [ssh] proxy (http_tunnel_start): libcurl's proxy
 * code, the same transport, the socket handed over once connected.
 *
 * A request completes through its callback exactly once, always from the event loop (never
 * before http_start has returned), unless it is cancelled; the handle is freed right after
 * the callback returns. Bodies and headers are wiped from memory when a request is freed
 * (they may hold a password or a token). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#define HTTP_REPLY_MAX (1024 * 1024)

struct http;
struct http_req;

/* What came back. error < 0 is a transport failure (no status):
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EPROTO (TLS), -EIO, and
 *   -EFBIG for a reply larger than HTTP_REPLY_MAX;
 * `message` then says what libcurl saw. Otherwise error == 0 and status is the HTTP status;
 * body (NUL-terminated, may be empty) and content_type (may be NULL) are valid during the
 * callback only. */
struct http_reply {
        int error;
        const char *message;
        long status;
        const char *body;
        size_t len;
        const char *content_type;
};

typedef void (*http_done_cb)(const struct http_reply *r, void *userdata);

/* Creates a transport on e. Returns 0 and *ret, or -errno. */
int http_new(sd_event *e, struct http **ret);
/* Cancels every request (no callbacks fire) and frees. NULL is fine. */
void http_free(struct http *h);
/* Per-request connect and total timeouts (defaults 10 s and 30 s). */
void http_set_timeouts(struct http *h, uint64_t connect_usec, uint64_t total_usec);

/* Starts method on url with body (copied; NULL: none, or "{}" for a POST) and the extra
 * header lines `headers` (a NULL-terminated array, copied; may be NULL). "Accept" and
 * "Content-Type" are application/json. Returns 0 and *ret, or -ENOMEM. */
int http_start(struct http *h, const char *method, const char *url, const char *body,
               const char *const *headers, http_done_cb done, void *userdata, struct http_req **ret);
/* Stops a request: its callback never fires, the handle is freed. NULL is fine. */
void http_cancel(struct http_req *r);

/* ---- a TCP connection through a proxy (for the SSH relay) ------------------------------
 * error 0: fd is a connected, non-blocking, close-on-exec TCP socket to the target through
 * the proxy, now the callee's (libcurl keeps nothing of it). Else negative errno and fd -1:
 *   -ECONNREFUSED  the proxy cannot be reached, or it refused (HTTP status, SOCKS reply)
 *   -EACCES        the proxy wants credentials or refused the ones given (HTTP 407, 401)
 *   -EHOSTUNREACH  the proxy's name does not resolve, -ETIMEDOUT, -EIO.
 * `message` is a sentence naming the proxy as host:port and its answer, e.g. "proxy
 * 127.0.0.1:3128 refused CONNECT to relay.example.org:22: HTTP 403"; never the
 * credentials. Valid during the callback only. */
typedef void (*http_tunnel_cb)(void *userdata, int error, const char *message, int fd);
/* Opens host:port through proxy_url (http://[user:pass@]host:port with CONNECT,
 * socks5://host:port or socks5h://host:port, the proxy resolving the name), libcurl doing
 * the proxy's part (CURLOPT_CONNECT_ONLY) on the loop. Fails with -ETIMEDOUT after
 * timeout_usec. Completes like a request (once, from the loop; http_cancel stops it).
 * Returns 0 and *ret, or -ENOMEM. */
int http_tunnel_start(struct http *h, const char *proxy_url, const char *host, uint16_t port, uint64_t timeout_usec,
                      http_tunnel_cb done, void *userdata, struct http_req **ret);
