/* Watches the kernel's routing netlink for a new address or a new default route, the sign
 * that the network came back (router reboot, Wi-Fi rejoin, DHCP renew with a new lease). */
#pragma once

#include <systemd/sd-event.h>

struct netwatch;

typedef void (*netwatch_cb_t)(void *userdata);

/* Calls cb (at most once per burst of changes) on the loop. Returns 0 or -errno; a host
 * without netlink (some containers) gets -errno and the caller carries on without. */
int netwatch_new(sd_event *event, netwatch_cb_t cb, void *userdata, struct netwatch **ret);
void netwatch_free(struct netwatch *w);
