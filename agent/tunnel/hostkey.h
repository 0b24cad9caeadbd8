/* Relay host key verification: known_hosts (strict / accept-new) and pinned fingerprints.
 * hostkey.c includes libssh2 (its known-hosts API); only sshcall.c calls it. */
#pragma once

#include <stddef.h>

#include "tunnel.h"

struct _LIBSSH2_SESSION;

/* "SHA256:<unpadded base64>" of a key blob, as OpenSSH prints it. Caller frees. */
char *hostkey_fingerprint(const void *blob, size_t len);
/* Checks the relay's host key per p->host_key_check. Returns 0, or negative errno with a
 * sentence in *ret_message (a mismatch is -EPERM: permanent). */
int hostkey_verify(struct _LIBSSH2_SESSION *session, const struct tunnel_params *p, char **ret_message);
