#!/bin/bash
# The package under a real systemd (issue 12 item 5): boots Debian SUITE in a container and
# checks what an admin relies on (tests/systemd/test_real_systemd.py, run inside it).
#
#   tools/test-systemd.sh bookworm|trixie [--deb FILE] [--keep]
#
# 1. A root for SUITE is made once with debootstrap from Debian's archive (the mirror of
#    this machine's apt sources, or $MYSOCKETD_CI_MIRROR) and cached under $MYSOCKETD_CI_CACHE
#    (default /var/cache/mysocketd-ci): nspawn-SUITE, never inside the repository. It holds
#    systemd, sshd (the relay), python3-pytest and the package's run-time libraries.
# 2. The .deb is built with tools/build-deb.sh: on this machine when it runs SUITE, else
#    inside the SUITE root (an overlay whose upper layer, nspawn-SUITE-build, caches the
#    build tools), so ${shlibs:Depends} names that release's libraries.
# 3. A throwaway overlay of the root gets the .deb and the test; `systemd-nspawn -b` boots
#    it (--keep-unit --register=no --private-network: only its own loopback), a unit runs
#    pytest there after boot and powers off. The cached root is never written to.
#   --deb FILE  test this .deb instead of building one
#   --keep      keep the overlay (its path is printed) to look at after the run
# Run as root. The last line is pytest's summary; the exit code is pytest's.
set -euo pipefail

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }
suite='' deb='' keep=no
while [ $# -gt 0 ]; do
	case $1 in
	bookworm|trixie) suite=$1 ;;
	--deb) deb=$(realpath "$2"); shift ;;
	--keep) keep=yes ;;
	-h|--help) usage; exit 0 ;;
	*) echo "test-systemd.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$suite" ] || { usage >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "test-systemd.sh: needs root" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${MYSOCKETD_CI_CACHE:-/var/cache/mysocketd-ci}
root=$cache/nspawn-$suite
t0=$(date +%s)
say() { echo "==> [$(($(date +%s) - t0))s] $*"; }

apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends "$@"; }
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container; do
	command -v "${tool%%:*}" >/dev/null || apt_get install "${tool#*:}" ||
		{ apt-get -q update && apt_get install "${tool#*:}"; }
done

# The Debian archive this machine's apt uses (deb822 or one-line sources).
. "$(dirname "$0")/apt-mirror.sh"
mirror() {
	apt_mirror_or_die debian test-systemd.sh
}

# What the root holds besides minbase: the service manager, the relay, the test runner, and
# the package's run-time libraries (so the .deb installs with no network in the container).
case $suite in
bookworm) libs=libssh2-1,libcurl4,libmicrohttpd12 ;;
trixie) libs=libssh2-1t64,libcurl4t64,libmicrohttpd12t64 ;;
esac
include=systemd,systemd-sysv,dbus,openssh-server,openssh-client,python3,python3-pytest,procps,$libs,libcjson1,libinih1

make_root() {
	local m
	m=$(mirror)
	say "debootstrap $suite from $m into $root (cached for later runs)"
	# The build layer was made over the old root: it goes with it.
	rm -rf "$root.new" "$root" "$cache/nspawn-$suite-build" "$cache/nspawn-$suite-build.work"
	debootstrap --variant=minbase --include="$include" "$suite" "$root.new" "$m" \
		>"$cache/nspawn-$suite.debootstrap.log" 2>&1 ||
		{ tail -30 "$cache/nspawn-$suite.debootstrap.log"; exit 1; }
	echo "deb $m $suite main" >"$root.new/etc/apt/sources.list"
	# A booted container with no getty to wait on, and no network configuration to do.
	ln -sf /dev/null "$root.new/etc/systemd/system/getty@.service"
	ln -sf /dev/null "$root.new/etc/systemd/system/console-getty.service"
	echo "mysocketd-ci" >"$root.new/etc/hostname"
	rm -rf "$root.new/var/cache/apt/archives/"*.deb
	echo "$include" >"$root.new/.complete"
	mv "$root.new" "$root"
}

mkdir -p "$cache"
exec 9>"$cache/nspawn-$suite.lock"
flock 9   # one run per suite at a time: they share the root and the build layer

work=$(mktemp -d /var/tmp/mysocketd-systemd.XXXXXX)
mounts=()
reported=no
cleanup() {
	local rc=$? m
	# A run that ends before pytest's summary still closes with a count for CI.
	[ "$rc" -eq 0 ] || [ "$reported" = yes ] || echo "systemd: 0 passed, 1 failed"
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	if [ "$keep" = yes ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Made again when the package list changed.
[ "$(cat "$root/.complete" 2>/dev/null)" = "$include" ] || make_root

say "root $root ready"

# overlay LOWER UPPER WORKDIR MERGED: a writable view of LOWER that never writes to it.
overlay() {
	mkdir -p "$2" "$3" "$4"
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
	mounts=("$4" "${mounts[@]}")
}

# The sources as build-deb.sh copies them: tracked and new files, nothing ignored.
copy_tree() {
	mkdir -p "$1"
	if [ ! -d "$top/.git" ]; then
		tar -C "$top" --exclude='./build*' --exclude=./dist -cf - . | tar -C "$1" -xf -
		return
	fi
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		(cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh) |
		tar -C "$top" -cf - -T - | tar -C "$1" -xf -
}

host=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ -n "$deb" ]; then
	say "testing $deb"
elif [ "$host" = "$suite" ]; then
	say "building the .deb on this machine ($host): tools/build-deb.sh --nocheck"
	out=$("$top/tools/build-deb.sh" --nocheck 2>&1) || { echo "$out" | tail -40; exit 1; }
	deb=$top/$(echo "$out" | sed -n 's/^built \(dist\/mysocketd_[^ ]*\.deb\)$/\1/p' | tail -1)
	[ -f "$deb" ] || deb=$(ls -t "$top"/dist/mysocketd_*.deb | head -1)
else
	say "building the .deb inside the $suite root: tools/build-deb.sh --nocheck"
	b=$work/build
	overlay "$root" "$cache/nspawn-$suite-build" "$cache/nspawn-$suite-build.work" "$b"
	rm -rf "$b/root/src"
	copy_tree "$b/root/src"
	systemd-nspawn -q -D "$b" --register=no --keep-unit --pipe -E LANG=C.UTF-8 \
		/root/src/tools/build-deb.sh --nocheck >"$work/build.log" 2>&1 </dev/null ||
		{ tail -40 "$work/build.log"; exit 1; }
	mkdir -p "$work/dist"
	name=$(sed -n 's/^built dist\/\(mysocketd_[^ ]*\.deb\)$/\1/p' "$work/build.log" | tail -1)
	[ -n "$name" ] || name=$(cd "$b/root/src/dist" && ls -t mysocketd_*.deb | head -1)
	cp "$b/root/src/dist/$name" "$work/dist/"
	rm -rf "$b/root/src"
	deb=$work/dist/$name
fi
[ -f "$deb" ] || { echo "test-systemd.sh: no .deb ($deb)" >&2; exit 1; }
say "built $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"

# The booted container: a throwaway overlay with the .deb, the test and a unit running it.
m=$work/merged
overlay "$root" "$work/upper" "$work/ovl" "$m"
mkdir -p "$m/root/ci"
cp "$deb" "$m/root/ci/"
cp "$top/tests/systemd/test_real_systemd.py" "$m/root/ci/"
cat >"$m/etc/systemd/system/ci-checks.service" <<UNIT
[Unit]
Description=mysocketd checks under a real systemd (tools/test-systemd.sh)
After=multi-user.target

[Service]
Type=exec
WorkingDirectory=/root/ci
Environment=MYSOCKETD_DEB=/root/ci/$(basename "$deb") PYTHONDONTWRITEBYTECODE=1
ExecStart=/bin/sh -c 'pytest-3 -p no:cacheprovider -v -rfEs --tb=short test_real_systemd.py >pytest.log 2>&1; echo \$\$? >rc'
ExecStopPost=-/bin/sh -c 'journalctl -b --no-pager -o short-monotonic -u mysocketd.service -u mysocketd.socket >journal.txt'
ExecStopPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$m/etc/systemd/system/multi-user.target.wants"
ln -sf ../ci-checks.service "$m/etc/systemd/system/multi-user.target.wants/"

say "booting $suite: systemd-nspawn -b --keep-unit --register=no --private-network"
rc=0
timeout "${MYSOCKETD_SYSTEMD_TIMEOUT:-1200}" systemd-nspawn -q -b -D "$m" --keep-unit \
	--register=no --private-network -M "mysocketd-ci-$suite" >"$work/console.log" 2>&1 </dev/null || rc=$?
say "container stopped (nspawn exit $rc)"
if [ ! -f "$m/root/ci/rc" ]; then
	sed 's/\x1b\[[0-9;]*[a-zA-Z]//g' "$work/console.log" | tail -60
	echo "test-systemd.sh: the checks did not finish in the $suite container" >&2
	exit 1
fi
say "done: $suite; figures measured inside:"
cat "$m/root/ci/figures.txt" 2>/dev/null || true
if [ "$(cat "$m/root/ci/rc")" != 0 ]; then
	echo "==> the end of the units' journal in the container:"
	tail -80 "$m/root/ci/journal.txt" 2>/dev/null || true
fi
echo "==> the checks' output:"
cat "$m/root/ci/pytest.log"
reported=yes
exit "$(cat "$m/root/ci/rc")"
