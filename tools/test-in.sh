#!/bin/bash
# Runs the whole test suite (tools/test.sh) inside a root of another Debian release:
#
#   tools/test-in.sh RELEASE [pytest arguments...]      e.g. tools/test-in.sh trixie
#
# The root is made by debootstrap from the Debian mirror this machine's apt uses, once, and
# kept in $MYSOCKETD_CI_CACHE/RELEASE-test (default /var/cache/mysocketd-ci, never inside the
# repository); later runs only refresh its packages (apt-get update/upgrade, at most daily).
# The work tree (tracked and untracked files, not the ignored ones such as build/) is copied
# to /src/run-PID/mysocketd in the root, ../shared beside it, and tools/test.sh runs there in
# fresh mount and PID namespaces, the root bind-mounted on itself and pivot_root'ed to, with
# /proc, /sys, /dev (with /dev/pts and /dev/net/tun), tmpfs /run (with /run/sshd) and /tmp
# mounted, so the network namespace, permission and systemd tests run as on the host. Every
# process started in there ends with the run (the namespace's PID 1 exits), and the mounts
# go with it.
# The last line is pytest's summary; the exit status is tools/test.sh's. Needs root,
# debootstrap and unshare (util-linux). MSD_COMMAND='pytest-3 ... FILE' runs that instead
# (for a build first: `tools/setup.sh && pytest-3 ...`).
set -euo pipefail

usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h|--help) usage; exit 0 ;; esac
release=$1; shift
[ "$(id -u)" = 0 ] || { echo "test-in.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${MYSOCKETD_CI_CACHE:-/var/cache/mysocketd-ci}
root=$cache/$release-test

# The Debian mirror and security mirror apt uses here.
. "$(dirname "$0")/apt-mirror.sh"
mirror=$(apt_mirror_or_die debian test-in.sh)
security=$(apt_mirror_or_die debian-security test-in.sh)

# What tools/test.sh and the tests need, installed with apt in the root once (debootstrap's
# own resolver cannot take them: it ignores virtual packages such as perl-openssl-abi-3);
# tools/setup.sh installs any missing one too. systemd brings journalctl, systemd-analyze
# and the socket activator, the rest is what tools/build-deb.sh and the package test use.
PACKAGES="build-essential autoconf automake pkg-config libssh2-1-dev libcurl4-openssl-dev libcjson-dev
libinih-dev libsystemd-dev libmicrohttpd-dev check openssh-server openssh-client python3 python3-pytest python3-paramiko iproute2 curl procps
xz-utils tini bash-completion clang libclang-rt-dev systemd debhelper dh-autoreconf dpkg-dev fakeroot lintian pkgconf
ca-certificates git"

mkdir -p "$cache"
exec 9>"$root.lock"     # one run at a time makes or refreshes the root
flock 9
if [ ! -f "$root/.mysocketd-debootstrapped" ]; then
	command -v debootstrap >/dev/null || { echo "test-in.sh: apt-get install debootstrap" >&2; exit 1; }
	echo "==> debootstrap $release into $root (from $mirror)"
	rm -rf "$root.new"
	start=$(date +%s)
	debootstrap --variant=minbase "$release" "$root.new" "$mirror" \
		>"$root-debootstrap.log" 2>&1 ||
		{ tail -20 "$root-debootstrap.log"; exit 1; }
	# debootstrap takes the suite from the mirror only: add the updates.
	sec=$security
	printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
		"$mirror" "$release" "$mirror" "$release" "$sec" "$release" >"$root.new/etc/apt/sources.list"
	rm -rf "$root"
	mv "$root.new" "$root"
	touch "$root/.mysocketd-debootstrapped"
	echo "debootstrap took $(($(date +%s) - start)) s"
fi
flock -u 9
exec 9>&-

# A fresh copy of the work tree for each run, in a directory of its own (runs may overlap);
# autogen.sh runs in there with that release's autotools. Removed afterwards.
run=/src/run-$$
rm -rf "${root:?}$run"
mkdir -p "$root$run/mysocketd"
chmod 755 "$root/src" "$root$run" "$root$run/mysocketd"
trap 'rm -rf "${root:?}$run"' EXIT
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	# stat drops the tracked files deleted in the work tree (xargs then exits 123: not an error).
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		{ xargs -0 -r stat --printf='%n\0' 2>/dev/null || true; } | tar -c --null -T - -f -) |
		tar -x -C "$root$run/mysocketd" -f -
else
	tar -c -C "$top" --exclude=./build --exclude=./build-asan --exclude=./dist -f - . |
		tar -x -C "$root$run/mysocketd" -f -
fi
[ -d "$top/../shared" ] && cp -a "$top/../shared" "$root$run/shared"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# Inside new mount and PID namespaces: the mounts a booted system has, then the suite.
export MSD_ROOT=$root MSD_RUN=$run MSD_PACKAGES=$PACKAGES
rc=0
unshare --mount --propagation private --pid --fork --kill-child -- bash -euo pipefail -c '
	r=$MSD_ROOT
	# The root a mount point of its own: `ip -n NS` (iproute2 6.15) makes "/" a slave
	# mount, which fails with EINVAL on a plain directory.
	mount --bind "$r" "$r"
	mount -t proc proc "$r/proc"
	mount --rbind /sys "$r/sys"
	mount --rbind /dev "$r/dev"
	mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
	mkdir -p "$r/run/sshd" "$r/run/lock" "$r/run/netns"
	chmod 755 "$r/run/sshd"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
	in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive "$@"; }
	# The packages once, then fresh ones at most daily (a small upgrade on a recent root);
	# one run at a time does that.
	exec 9>"$r.lock"
	flock 9
	if [ ! -f "$r/.mysocketd-ready" ]; then
		echo "==> apt-get install the build and test packages in the root"
		start=$(date +%s)
		in_root apt-get -q update >/dev/null
		in_root apt-get -q -y --no-install-recommends install $MSD_PACKAGES >"$r-apt.log" 2>&1 ||
			{ tail -20 "$r-apt.log"; exit 1; }
		in_root apt-get clean
		touch "$r/.mysocketd-ready" "$r/var/lib/apt/.mysocketd-refreshed"
		echo "apt-get install took $(($(date +%s) - start)) s"
	fi
	stamp="$r/var/lib/apt/.mysocketd-refreshed"
	if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
		echo "==> apt-get update && upgrade in the root"
		in_root apt-get -q update >/dev/null && in_root apt-get -q -y upgrade >/dev/null && touch "$stamp"
		in_root apt-get clean
	fi
	flock -u 9
	exec 9>&-
	# MSD_COMMAND (a shell command) replaces tools/test.sh, e.g. to run one test file.
	cmd=${MSD_COMMAND:-tools/test.sh \"\$@\"}
	echo "==> ${MSD_COMMAND:-tools/test.sh} in $(. "$r/etc/os-release"; echo "$PRETTY_NAME") ($r$MSD_RUN)"
	# pivot_root, not only chroot: the root becomes this mount namespace'"'"'s own, so a process
	# in a namespace made in there (unshare -m: the journald test) still shows paths from
	# "/" (/proc/PID/exe). The host'"'"'s tree is unmounted; only the root'"'"'s mounts remain.
	mkdir -p "$r/.oldroot"
	cd "$r"
	pivot_root . .oldroot
	cd /
	/usr/bin/umount -l /.oldroot
	exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
		/bin/bash -c "cd $MSD_RUN/mysocketd && $cmd" test.sh "$@"
' test-in "$@" || rc=$?
exit $rc
