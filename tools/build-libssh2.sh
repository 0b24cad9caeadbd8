#!/bin/bash
# Builds libssh2 1.11.1 (Debian 13's source package) with the patch series in
# third_party/libssh2-patches/ into build/libssh2/ (a prefix: include/, lib/),
# for `./configure --with-libssh2=$PWD/build/libssh2`. The Debian package of
# mysocketd never uses this: it links Debian's libssh2.
#
# Usage: tools/build-libssh2.sh [--stock] [--check] [--prefix DIR]
#   --stock   build the same source without the series (for comparisons);
#             default prefix then build/libssh2-stock/
#   --check   also run libssh2's own test suite against a local sshd (port
#             4711): `make check` plus the sshd-fixture tests (test_read for
#             every cipher and MAC in tests/test_read_algos.txt, the auth
#             tests) run by tests/test_sshd.test with OPENSSH_NO_DOCKER=1
#   --prefix  install somewhere else
# Environment: LIBSSH2_SRC_CACHE (default build/libssh2-src) keeps the
# downloaded source package between runs; LIBSSH2_SUITE (default trixie).
#
# Needs (Debian 12 or 13): dpkg-dev libssl-dev zlib1g-dev build-essential,
# and openssh-server for --check. If apt has no deb-src entry for the suite,
# one is added in /etc/apt/sources.list.d/mysocketd-src-SUITE.sources, on the
# mirror this machine's apt sources already use (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

stock=0 check=0 prefix=
while [ $# -gt 0 ]; do
	case $1 in
	--stock) stock=1 ;;
	--check) check=1 ;;
	--prefix) prefix=$2; shift ;;
	*) echo "usage: $0 [--stock] [--check] [--prefix DIR]" >&2; exit 2 ;;
	esac
	shift
done
suite=${LIBSSH2_SUITE:-trixie}
upstream=1.11.1
cache=${LIBSSH2_SRC_CACHE:-$repo/build/libssh2-src}
patches=$repo/third_party/libssh2-patches
if [ -z "$prefix" ]; then
	if [ $stock = 1 ]; then prefix=$repo/build/libssh2-stock; else prefix=$repo/build/libssh2; fi
fi
mkdir -p "$cache" "$prefix"
prefix=$(cd "$prefix" && pwd)

# newest_dsc: the newest libssh2 UPSTREAM-* source package in the cache, or nothing.
newest_dsc() {
	local f=()
	shopt -s nullglob
	f=("$cache"/libssh2_"$upstream"-*.dsc)
	shopt -u nullglob
	[ ${#f[@]} -eq 0 ] || printf '%s\n' "${f[@]}" | sort -V | tail -n1
}

# 1. The source package, once.
dsc=$(newest_dsc)
if [ -z "$dsc" ]; then
	if ! apt-get source --print-uris -qq "libssh2/$suite" 2>/dev/null | grep -q "libssh2_$upstream"; then
		[ "$(id -u)" = 0 ] || { echo "error: no deb-src for $suite; run as root once" >&2; exit 1; }
		# the Debian archive (not -security) that apt already uses here
		mirror=$(apt-cache policy | awk '/^ *[0-9]+ (http|https|file):/ {u = $2; next}
			/release .*o=Debian,.*l=Debian,/ && u != "" && u !~ /security/ {print u; exit}')
		[ -n "$mirror" ] || { echo "error: cannot tell this machine's Debian mirror" >&2; exit 1; }
		list=/etc/apt/sources.list.d/mysocketd-src-$suite.sources
		echo "==> adding deb-src $suite ($mirror) as $list"
		printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$mirror" "$suite" >"$list"
		apt-get update -q -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
			-o APT::Get::List-Cleanup=0 >/dev/null
	fi
	echo "==> apt-get source libssh2/$suite"
	# (apt warns that it downloads unsandboxed as root: harmless here)
	(cd "$cache" && apt-get source --download-only -qq "libssh2/$suite" 2>&1 |
		grep -v '^W: Download is performed unsandboxed') || true
	dsc=$(newest_dsc)
	[ -n "$dsc" ] || { echo "error: no libssh2 $upstream source package from $suite" >&2; exit 1; }
fi

# 2. A fresh tree (Debian's patches applied by dpkg-source), then the series.
tree=$cache/tree-$([ $stock = 1 ] && echo stock || echo patched)
rm -rf "$tree"
echo "==> unpack $(basename "$dsc")"
dpkg-source -q -x "$dsc" "$tree" >"$cache/unpack.log" 2>&1 || { cat "$cache/unpack.log" >&2; exit 1; }
if [ $stock = 0 ]; then
	while read -r p; do
		case $p in ''|'#'*) continue ;; esac
		echo "==> apply $p"
		patch -d "$tree" -p1 -s --no-backup-if-mismatch <"$patches/$p"
	done <"$patches/series"
fi

# 3. Build out of tree and install into the prefix.
obj=$tree-obj
rm -rf "$obj" && mkdir -p "$obj"
echo "==> configure, make, install into $prefix"
(cd "$obj" && "$tree"/configure -q --prefix="$prefix" --with-crypto=openssl --with-libz \
	--disable-docker-tests --disable-examples-build \
	CFLAGS="${CFLAGS:--O2 -g}" >configure.out)
make -s -C "$obj" -j"$(nproc)" >/dev/null
make -s -C "$obj" install >/dev/null
echo "==> installed $(readlink -f "$prefix/lib/libssh2.so")"

# 4. libssh2's own tests against a local sshd.
if [ $check = 1 ]; then
	export USER=${USER:-$(id -un)}
	echo "==> make check (mansyntax, test_simple, tests/test_sshd.test)"
	make -s -C "$obj" -j"$(nproc)" check >"$obj/check.out" 2>&1 || { tail -n 40 "$obj/check.out"; exit 1; }
	grep -E '^# (TOTAL|PASS|FAIL|SKIP|ERROR)' "$obj/check.out" | sed 's/^/    /'
	# The fixture tests upstream runs in Docker, here against the same local
	# sshd: test_sshd.test starts it and exports OPENSSH_NO_DOCKER=1.
	# Not run: the password and keyboard-interactive tests and the *_signed
	# ones (they need the Docker image's user "libssh2": its password, the
	# certificates' principal), DSA (OpenSSH 9.8+ has none), agent forwarding
	# (needs an agent).
	fixture="test_read_algos.test test_auth_pubkey_fail test_auth_pubkey_ok_ecdsa
test_auth_pubkey_ok_ed25519 test_auth_pubkey_ok_ed25519_encrypted test_auth_pubkey_ok_ed25519_mem
test_auth_pubkey_ok_rsa test_auth_pubkey_ok_rsa_aes256gcm test_auth_pubkey_ok_rsa_encrypted
test_auth_pubkey_ok_rsa_openssh test_hostkey test_hostkey_hash test_ssh2"
	args=""
	for t in $fixture; do
		case $t in *.test) args="$args $tree/tests/$t" ;; *) args="$args ./$t" ;; esac
	done
	echo "==> fixture tests against local sshd"
	# shellcheck disable=SC2086
	(cd "$obj/tests" && srcdir="$tree/tests" bash "$tree/tests/test_sshd.test" $args) \
		>"$obj/fixture.out" 2>&1 || true
	grep -E '^(ok|not ok) ' "$obj/fixture.out" | sed 's/^/    /'
	pass=$(grep -c '^ok ' "$obj/fixture.out" || true)
	fail=$(grep -c '^not ok ' "$obj/fixture.out" || true)
	echo "libssh2 fixture tests: $pass passed, $fail failed"
	[ "$fail" = 0 ] || { echo "see $obj/fixture.out" >&2; exit 1; }
fi
echo "==> done: ./configure --with-libssh2=$prefix"
