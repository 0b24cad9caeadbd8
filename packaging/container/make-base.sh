#!/bin/sh
# Makes a Debian 12 base image locally, for hosts that reach Debian's apt mirror but no
# container registry (docs/CONTAINER.md): debootstrap a minimal bookworm, import it.
#
#   packaging/container/make-base.sh [TAG] [MIRROR]      (as root; needs debootstrap, podman)
#   podman build --build-arg BASE=TAG -f packaging/container/Dockerfile -t mysocketd .
set -eu
TAG="${1:-localhost/debian:bookworm-debootstrap}"
. "$(dirname "$0")/../../tools/apt-mirror.sh"
MIRROR="${2:-$(apt_mirror_or_die debian make-base.sh)}"
ENGINE="${ENGINE:-podman}"

ROOTFS="$(mktemp -d /var/tmp/mysocketd-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR"
# apt in the image uses the same mirror; no caches or logs from the bootstrap.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
tar -C "$ROOTFS" --numeric-owner -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$TAG"
echo "$TAG"
