#!/bin/bash
# Debian roots for the cross and package checks (issue 12), cached outside the repository:
#
#   tools/ci-root.sh SUITE [PACKAGE...]     prints the root's path once it is ready
#
# SUITE is bookworm or trixie. The root is debootstrapped (minbase) from the Debian archive
# this machine's apt uses (tools/apt-mirror.sh) into $MYSOCKETD_CI_CACHE/cross-SUITE (the
# cache defaults to /var/cache/mysocketd-ci), with arm64 and armhf as foreign architectures,
# and the PACKAGEs (NAME or NAME:ARCH) installed.
# A stamp of the package list skips apt-get when nothing changed, so a second run costs
# nothing; a changed list installs only what is new. Needs root. Sourced by
# tools/test-cross.sh, which also uses ci_chroot and ci_umount from here.
set -euo pipefail

CI_CACHE=${MYSOCKETD_CI_CACHE:-/var/cache/mysocketd-ci}
. "$(dirname "${BASH_SOURCE[0]}")/apt-mirror.sh"
CI_MIRROR=$(apt_mirror_or_die debian ci-root.sh)
CI_SECURITY=$(apt_mirror_or_die debian-security ci-root.sh)

ci_log() { printf '==> %s\n' "$*" >&2; }

# ci_root SUITE PACKAGE...: creates or updates the root; prints its path.
ci_root() {
	local suite=$1; shift
	local root=$CI_CACHE/cross-$suite
	mkdir -p "$CI_CACHE"
	if [ ! -x "$root/usr/bin/apt-get" ]; then
		command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >&2
		ci_log "debootstrap $suite into $root"
		rm -rf "$root.tmp"
		debootstrap --variant=minbase --include=ca-certificates "$suite" "$root.tmp" "$CI_MIRROR" \
			>"$root.debootstrap.log" 2>&1 ||
			{ tail -20 "$root.debootstrap.log" >&2; return 1; }
		mv "$root.tmp" "$root"
	fi
	local stamp=$root/var/lib/mysocketd-ci.packages want
	want=$(printf '%s\n' "$@" | sort -u)
	if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
		ci_log "apt-get install in the $suite root ($# packages)"
		cat >"$root/etc/apt/sources.list" <<-EOF
		deb $CI_MIRROR $suite main
		deb $CI_MIRROR $suite-updates main
		deb $CI_SECURITY $suite-security main
		EOF
		chroot "$root" dpkg --add-architecture arm64
		chroot "$root" dpkg --add-architecture armhf
		# Some -dev packages ship man3 pages that differ between architectures (libpsl-dev:
		# "trying to overwrite shared ... libpsl.3.gz"), which breaks co-installing them.
		echo 'path-exclude=/usr/share/man/man3/*' >"$root/etc/dpkg/dpkg.cfg.d/mysocketd-ci"
		# No service starts in the root (sshd's postinst would try).
		printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
		chmod 755 "$root/usr/sbin/policy-rc.d"
		# (|| return: this runs in $(...), where set -e does not reach.)
		ci_chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
		ci_chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends "$@" >&2 || return 1
		ci_chroot "$root" apt-get clean || return 1
		printf '%s\n' "$want" >"$stamp"
	fi
	printf '%s\n' "$root"
}

# ci_mount ROOT: the kernel file systems a build and the tests need (idempotent).
ci_mount() {
	local root=$1
	mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
	mountpoint -q "$root/sys" || mount -t sysfs sys "$root/sys"
	mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
	mountpoint -q "$root/run" || mount -t tmpfs -o mode=755 run "$root/run"
	mountpoint -q "$root/tmp" || mount -t tmpfs -o mode=1777 tmp "$root/tmp"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

# ci_umount ROOT: undoes ci_mount (lazy for /dev's submounts).
ci_umount() {
	local root=$1 m
	for m in tmp run dev sys proc; do
		mountpoint -q "$root/$m" && umount -R -l "$root/$m"
	done
	return 0
}

# ci_chroot ROOT COMMAND...: runs COMMAND in ROOT with the mounts in place.
ci_chroot() {
	local root=$1; shift
	ci_mount "$root"
	chroot "$root" "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	[ $# -ge 1 ] || { sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 2; }
	[ "$(id -u)" = 0 ] || { echo "ci-root.sh: needs root" >&2; exit 1; }
	suite=$1; shift
	root=$(ci_root "$suite" "$@")
	ci_umount "$root"
	printf '%s\n' "$root"
fi
