#!/bin/bash
# The Raspberry Pi architectures and the per-release packages (issue 12, SPEC section 11),
# on an amd64 Debian machine, as root:
#
#   tools/test-cross.sh [--no-packages] [--no-bookworm] [ARCH...]    (default: arm64 armhf)
#
# In a trixie root and a bookworm root (tools/ci-root.sh: debootstrapped once into
# /var/cache/mysocketd-ci/cross-SUITE, reused), for each release and ARCH:
#   build    cross-compile with --enable-werror (crossbuild-essential-ARCH, -dev:ARCH);
#   unit     every unit test under trixie's qemu-user (10.x; bookworm's 7.2 hangs Check's
#            fork mode), CK_TIMEOUT_MULTIPLIER=10 for emulation; test-cpu checks the
#            SHA-2 probe that orders the MACs against the emulated CPU's /proc/cpuinfo;
#   smoke    the daemon under qemu in direct mode against the root's (native) sshd on
#            loopback, one HTTP request through the tunnel (test_tunnel.py's first test);
#   deb      tools/build-deb.sh --arch ARCH --lintian (lintian clean).
# and, unless --no-packages, the release's amd64 .deb: built, lintian clean, installed with
# apt in its root, the user created, `mysocketd --check-config` of the shipped config, a
# foreground run answering `mysocketctl list`, Depends naming libssh2-1 (12) or
# libssh2-1t64 (13), purged with nothing left behind. The .debs land in dist/.
# Ends with "N passed, N failed"; exit 1 on any failure.
# Logs: $MYSOCKETD_CI_CACHE/cross-logs/ (default /var/cache/mysocketd-ci/cross-logs).
# MYSOCKETD_CROSS_CFLAGS is appended to the CFLAGS of the cross builds and the .debs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/tools/ci-root.sh"

packages=yes suites="trixie bookworm" arches=()
for arg in "$@"; do
	case $arg in
	--no-packages) packages=no ;;
	--no-bookworm) suites=trixie ;;
	arm64|armhf) arches+=("$arg") ;;
	-h|--help) sed -n '2,23s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "test-cross.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
	esac
done
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
[ "$(id -u)" = 0 ] || { echo "test-cross.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
[ "$(dpkg --print-architecture)" = amd64 ] || { echo "test-cross.sh: runs on amd64" >&2; exit 1; }

common="build-essential autoconf automake pkgconf libssh2-1-dev libcurl4-openssl-dev
libcjson-dev libinih-dev libsystemd-dev libmicrohttpd-dev check openssh-server openssh-client python3
python3-pytest iproute2 curl procps xz-utils debhelper dh-autoreconf dpkg-dev fakeroot
lintian systemd"
cross_pkgs() {
	local a
	for a in arm64 armhf; do
		echo "crossbuild-essential-$a"
		for p in libssh2-1-dev libcurl4-openssl-dev libcjson-dev libinih-dev libsystemd-dev libmicrohttpd-dev check pkgconf; do
			echo "$p:$a"
		done
	done
}
declare -A extra=([trixie]="systemd-dev qemu-user-static" [bookworm]="")
declare -A triplet=([arm64]=aarch64-linux-gnu [armhf]=arm-linux-gnueabihf)
declare -A qemu=([arm64]=qemu-aarch64 [armhf]=qemu-arm)
unit_tests=$(cd "$top/tests/unit" && ls test-*.c | sed 's/\.c$//')

logs=$CI_CACHE/cross-logs
mkdir -p "$logs"
# One run at a time per cache (the roots and dist/ copies are shared).
exec 9>"$CI_CACHE/cross.lock"
flock -w 1800 9 || { echo "test-cross.sh: another run holds $CI_CACHE/cross.lock" >&2; exit 1; }
passed=0 failed=0 failures=()
roots=()
cleanup() { local r; for r in "${roots[@]}"; do ci_umount "$r"; done; }
trap cleanup EXIT INT TERM

# check NAME COMMAND...: runs a check, its output into logs/NAME.log; counts and times it.
check() {
	local name=$1; shift
	local log=$logs/${name//[:\/]/-}.log t0=$SECONDS rc=0
	"$@" >"$log" 2>&1 || rc=$?
	if [ $rc = 0 ]; then
		passed=$((passed + 1)); printf 'PASS %-30s %4ss\n' "$name" $((SECONDS - t0))
	else
		failed=$((failed + 1)); failures+=("$name")
		printf 'FAIL %-30s %4ss (exit %s, log %s)\n' "$name" $((SECONDS - t0)) $rc "$log"
		tail -15 "$log" | sed 's/^/    /'
	fi
}

# The sources as build-deb.sh takes them (tracked and new files), fresh in ROOT/build/src.
copy_sources() {
	local root=$1
	rm -rf "$root/build/src" "$root/build/dist"
	mkdir -p "$root/build/src"
	if [ -d "$top/.git" ]; then
		git -C "$top" ls-files -z --cached --others --exclude-standard |
			(cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh) |
			tar -C "$top" -cf - -T - | tar -C "$root/build/src" -xf -
	else
		tar -C "$top" --exclude='./build*' --exclude=./dist --exclude=./.git -cf - . |
			tar -C "$root/build/src" -xf -
	fi
	ci_chroot "$root" sh -c 'cd /build/src && autoreconf -fi -Wall 2>&1 | grep -v "installing '"'"'" || true' \
		>"$logs/autoreconf-$(basename "$root").log"
}

build() {       # ROOT ARCH
	ci_chroot "$1" sh -ec "rm -rf /build/$2 && mkdir -p /build/$2 && cd /build/$2
		../src/configure -q --host=${triplet[$2]} --enable-werror CFLAGS='-g -O2 ${MYSOCKETD_CROSS_CFLAGS:-}'
		grep -E '_TIME_BITS|_FILE_OFFSET_BITS' config.h; grep '^LIBS =' Makefile
		make -s -j\$(nproc) all
		make -s -j\$(nproc) check TESTS=
		test \"\$(od -An -tx1 -j18 -N2 mysocketd | tr -d ' ')\" = $([ "$2" = arm64 ] && echo b700 || echo 2800)"
}

unit() {        # ROOT ARCH TEST
	ci_chroot "$1" env CK_TIMEOUT_MULTIPLIER=10 timeout 900 /usr/local/bin/${qemu[$2]}-static "/build/$2/tests/unit/$3"
}

smoke() {       # ROOT ARCH: the daemon and mysocketctl through qemu, the relay native
	local d=$1/build/$2-qemu b
	mkdir -p "$d"
	for b in mysocketd mysocketctl; do
		printf '#!/bin/sh\nexec /usr/local/bin/%s-static /build/%s/%s "$@"\n' "${qemu[$2]}" "$2" "$b" >"$d/$b"
		chmod 755 "$d/$b"
	done
	ci_chroot "$1" sh -c "cd /build/src && MYSOCKETD_BUILDDIR=/build/$2-qemu pytest-3 -p no:cacheprovider -v \
		tests/integration/test_tunnel.py -k test_http_through_the_tunnel_with_edge_log"
}

# deb ROOT [ARCH]: the package, lintian clean and built without a warning; into dist/.
# trixie's libc6 diverts the loaders' /lib paths (DEP-17 usr-merge), and dpkg-shlibdeps then
# says "diversions involved - output may be incorrect" on every cross build: not ours, and
# the Depends it writes are right (checked by install_check on amd64).
deb() {
	local out rc=0
	out=$(ci_chroot "$1" env DEB_CFLAGS_APPEND="${MYSOCKETD_CROSS_CFLAGS:-}" sh -c \
		"cd /build/src && tools/build-deb.sh --lintian --nocheck ${2:+--arch $2}" 2>&1) || rc=$?
	printf '%s\n' "$out"
	[ $rc = 0 ] || return $rc
	if printf '%s\n' "$out" | grep -i 'warning:' | grep -v 'diversions involved'; then
		echo "deb: the build warned (above)"; return 1
	fi
	mkdir -p "$top/dist"
	cp "$1"/build/src/dist/*.deb "$top/dist/"
}

# install ROOT LIBSSH2: apt installs the amd64 .deb, checks it, purges it; nothing stays.
install_check() {
	ci_chroot "$1" sh -exc "
		deb=\$(ls /build/src/dist/mysocketd_*_amd64.deb)
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \"\$deb\"
		dpkg-query -W -f='\${Depends}\n' mysocketd | tr ',' '\n' | grep -qx ' *$2 (.*'
		getent passwd mysocketd | grep -q ':/var/lib/mysocketd:/usr/sbin/nologin\$'
		test -z \"\$(mysocketd --check-config -c /etc/mysocketd/mysocketd.ini 2>&1)\"
		mysocketctl --help >/dev/null
		install -d -m 0700 -o mysocketd -g mysocketd /var/lib/mysocketd /run/mysocketd
		setpriv --reuid=mysocketd --regid=mysocketd --init-groups \
			mysocketd -c /etc/mysocketd/mysocketd.ini & pid=\$!
		i=0; while [ ! -S /run/mysocketd/control.sock ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
		mysocketctl list | grep -qx 'No bindings.'
		kill -TERM \$pid; wait \$pid
		dpkg -L mysocketd >/tmp/files
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -q mysocketd
		if dpkg-query -W -f='\${db:Status-Abbrev}\n' mysocketd 2>/dev/null | grep -qv '^.n'; then
			echo 'still installed'; exit 1
		fi
		left=\$(while read -r f; do [ ! -d \"\$f\" ] && { [ -f \"\$f\" ] || [ -L \"\$f\" ]; } && echo \"\$f\"; done </tmp/files; true)
		test -z \"\$left\" || { echo \"left behind: \$left\"; exit 1; }
		test ! -e /etc/mysocketd && test ! -e /var/lib/mysocketd
		! ls /etc/systemd/system/*.wants/mysocketd.* 2>/dev/null"
}

t_start=$SECONDS
for suite in $suites; do
	t0=$SECONDS
	root=$(ci_root "$suite" $common $(cross_pkgs) ${extra[$suite]})
	roots+=("$root")
	# trixie's static qemu-user runs both roots' binaries (bookworm's 7.2 would hang).
	for q in qemu-aarch64 qemu-arm; do
		install -D -m 755 "$CI_CACHE/cross-trixie/usr/bin/$q" "$root/usr/local/bin/$q-static" 2>/dev/null ||
			{ [ "$suite" = trixie ] || echo "no trixie root yet for $q" >&2; }
	done
	copy_sources "$root"
	echo "== $suite (root ready in $((SECONDS - t0))s)"
	for a in "${arches[@]}"; do
		check "$suite:$a:build" build "$root" "$a"
		for t in $unit_tests; do
			check "$suite:$a:unit:$t" unit "$root" "$a" "$t"
		done
		check "$suite:$a:smoke" smoke "$root" "$a"
		[ $packages = no ] || check "$suite:$a:deb" deb "$root" "$a"
	done
	if [ $packages = yes ]; then
		check "$suite:amd64:deb" deb "$root"
		case $suite in bookworm) lib=libssh2-1 ;; *) lib=libssh2-1t64 ;; esac
		check "$suite:amd64:install-purge" install_check "$root" "$lib"
	fi
	ci_umount "$root"
done
echo "test-cross.sh: $((SECONDS - t_start))s in all"
[ $failed = 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
