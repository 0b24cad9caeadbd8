#!/bin/bash
# Runs the issue-16 bulk matrix and merges it into tests/bench/results/matrix/:
#
#   tools/bench-matrix.sh [--size-mib N] [--reps N] [--only host|trixie] [--host-libssh2]
#
# Cells (tests/bench/bench_matrix.py cell; each: mysocketd and `ssh -R` on one relay, each
# side's default algorithms, both directions, MB/s and CPU s/GiB of each tunnel client),
# each with the CPU's crypto instructions and with them masked (OPENSSL_ia32cap, seen by
# OpenSSL in sshd, ssh and mysocketd and by mysocketd's own CPU probe):
#   deb12-stock[-noaes]     this machine (Debian 12, libssh2 1.10), build/; with perf record
#   deb13-stock[-noaes]     the trixie root of tools/test-in.sh (libssh2 1.11.1), built there
#   deb13-patched[-noaes]   the same with tools/build-libssh2.sh's patched 1.11.1
# --host-libssh2 adds deb12-1.11.1-{stock,patched}[-noaes]: libssh2 1.11.1 built here (stock
# and patched, build/libssh2-stock, build/libssh2) for perf record, which the trixie root
# lacks. The 1.11 cells also sweep the ciphers (which is fastest on that library).
# Writes cells/*.json, matrix.txt, matrix.json, matrix.png (python3-matplotlib). Needs root
# (the relay, the trixie root), a build in build/ (tools/setup.sh), linux-perf for perf.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
size=128 reps=3 only="" hostlib=0
while [ $# -gt 0 ]; do
	case $1 in
	--size-mib) size=$2; shift ;;
	--reps) reps=$2; shift ;;
	--only) only=$2; shift ;;
	--host-libssh2) hostlib=1 ;;
	*) sed -n '2,19s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
	shift
done
out=$repo/tests/bench/results/matrix
mkdir -p "$out/cells"
common="--size-mib $size --reps $reps"
start=$(date +%s)
rc=0

if [ "$only" != trixie ]; then
	echo "==> Debian 12 (this machine), build/"
	make -s -C build -j2 >/dev/null
	for m in "" -noaes; do
		/usr/bin/python3 tests/bench/bench_matrix.py cell --label "deb12-stock$m" ${m:+--mask} --perf \
			$common --out "$out/cells" || rc=1
	done
	if [ $hostlib = 1 ]; then
		echo "==> libssh2 1.11.1 stock and patched, built here (for perf)"
		tools/build-libssh2.sh --stock >/dev/null && tools/build-libssh2.sh >/dev/null
		for b in stock patched; do
			lib=build/libssh2$([ $b = stock ] && echo -stock || true)
			dir=build-bench-$b
			mkdir -p "$dir"
			(cd "$dir" && { [ -f Makefile ] || ../configure -q --with-libssh2="$repo/$lib"; } && make -s -j2 >/dev/null)
			for m in "" -noaes; do
				MYSOCKETD_BUILDDIR=$repo/$dir /usr/bin/python3 tests/bench/bench_matrix.py cell \
					--label "deb12-1.11.1-$b$m" --libssh2-build "$b" ${m:+--mask} --perf --sweep \
					$common --out "$out/cells" || rc=1
			done
		done
	fi
fi

if [ "$only" != host ]; then
	echo "==> Debian 13 (the trixie root of tools/test-in.sh): stock and patched libssh2"
	# test-in.sh copies the work tree with `git ls-files --cached --others`: a tracked file
	# deleted here makes that copy fail without a word.
	if [ -n "$(git ls-files --deleted)" ]; then
		echo "error: tracked files deleted in the work tree (git checkout them): $(git ls-files --deleted | head -3)" >&2
		exit 1
	fi
	cache=${MYSOCKETD_CI_CACHE:-/var/cache/mysocketd-ci}
	tag=bench-matrix-$$
	inner="/var/tmp/$tag"
	# In the root: build mysocketd (stock libssh2) into build/, the patched libssh2 (its
	# source package kept in the root between runs) and a second build against it, then
	# the four cells; the cells land in the root's /var/tmp, copied out below.
	cmd="tools/setup.sh >/dev/null && \
LIBSSH2_SRC_CACHE=/var/cache/mysocketd-libssh2-src tools/build-libssh2.sh >/dev/null && \
mkdir -p build-patched && (cd build-patched && ../configure -q --with-libssh2=\$PWD/../build/libssh2 && make -s -j2 >/dev/null) && \
rc=0; for m in '' -noaes; do \
python3 tests/bench/bench_matrix.py cell --label deb13-stock\$m \${m:+--mask} --sweep $common --out $inner || rc=1; \
MYSOCKETD_BUILDDIR=\$PWD/build-patched python3 tests/bench/bench_matrix.py cell --label deb13-patched\$m \
--libssh2-build patched \${m:+--mask} --sweep $common --out $inner || rc=1; done; exit \$rc"
	MSD_COMMAND=$cmd tools/test-in.sh trixie || rc=1
	cp "$cache/trixie-test$inner"/*.json "$out/cells/" 2>/dev/null || { echo "no cells from the trixie root" >&2; rc=1; }
	rm -rf "${cache:?}/trixie-test$inner"
fi

/usr/bin/python3 tests/bench/bench_matrix.py merge --out "$out" \
	--order deb12-stock,deb12-stock-noaes,deb13-stock,deb13-stock-noaes,deb13-patched,deb13-patched-noaes,deb12-1.11.1-stock,deb12-1.11.1-stock-noaes,deb12-1.11.1-patched,deb12-1.11.1-patched-noaes
echo "==> matrix took $(($(date +%s) - start)) s (exit $rc)"
exit $rc
