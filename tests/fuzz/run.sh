#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan + libFuzzer) into build-fuzz/ and
# runs each for SECONDS over a copy of its seed corpus.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (default: 30 s, every target)
#
# Targets: conf protocol api-json jwt (tests/fuzz/fuzz-TARGET.c). The committed seeds in
# tests/fuzz/corpus/TARGET/ are only read; what libFuzzer finds goes to
# build-fuzz/corpus-TARGET/, crashing inputs to build-fuzz/artifacts-TARGET/, the whole
# output to build-fuzz/TARGET.log. Prints executions, coverage and the result of each
# target; exits 1 if any target crashed, leaked, timed out or ran out of memory, 2 on a
# usage or build error. $FUZZ_CC overrides the compiler; $FUZZ_OUT the output directory
# (default build-fuzz/), so that a long run is not disturbed by the 30 s runs of the test
# suite. For parallel runs start two invocations with different targets side by side:
# each builds only its own targets.
# The whole script is one { ... } block: bash parses it before running anything, so an
# edit of this file during a 30 minute run cannot derail the run (bash reads scripts
# lazily, by offset).
{
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${FUZZ_OUT:-$REPO/build-fuzz}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
ALL="conf protocol api-json jwt"

SECONDS_EACH=${1:-30}
[ $# -gt 0 ] && shift
case $SECONDS_EACH in
''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]   (targets: $ALL)" >&2; exit 2 ;;
esac
TARGETS=${*:-$ALL}

CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
	for c in clang clang-19 clang-14; do
		command -v "$c" >/dev/null && { CC=$c; break; }
	done
fi
[ -n "$CC" ] || { echo "error: clang not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }

# Sources, extra pkg-config modules and input limits of each target. The decoders come
# from the same files the daemon is built from (Makefile.am), compiled with the fuzzer's
# instrumentation.
sources() {
	case $1 in
	conf)     echo "common/util.c common/log.c common/scrub.c common/base64.c common/protocol.c common/protocol-objects.c agent/conf.c agent/conf-binding.c agent/conf-keys.c agent/conf-forward.c agent/state.c" ;;
	protocol) echo "common/util.c common/scrub.c common/protocol.c common/protocol-objects.c" ;;
	api-json|jwt) echo "common/util.c common/scrub.c common/base64.c agent/api/json.c" ;;
	esac
}
modules() {
	case $1 in
	conf)     echo "inih libsystemd libcjson" ;;
	protocol) echo "libcjson" ;;
	api-json|jwt) echo "libcjson libsystemd" ;;
	esac
}
max_len() {
	case $1 in
	conf)     echo 16384 ;;      # inih reads 200-byte lines; a big file of them is plenty
	protocol) echo 65536 ;;      # PROTO_LINE_MAX
	api-json) echo 65536 ;;
	jwt)      echo 16384 ;;      # twice JWT_MAX
	esac
}

for t in $TARGETS; do
	[ -f "tests/fuzz/fuzz-$t.c" ] || { echo "error: unknown target '$t' (targets: $ALL)" >&2; exit 2; }
done

mkdir -p "$OUT"
# The build's config.h, reduced to what the sources rely on.
version=$(sed -n 's/^AC_INIT(\[mysocketd\], \[\([^]]*\)\].*/\1/p' configure.ac)
cat >"$OUT/config.h.$$" <<EOF
#define _GNU_SOURCE 1
#define PACKAGE "mysocketd"
#define PACKAGE_NAME "mysocketd"
#define PACKAGE_VERSION "$version"
#define VERSION "$version"
EOF
mv "$OUT/config.h.$$" "$OUT/config.h"      # atomic: two runs may share build-fuzz/

CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=all -std=gnu11 -Wall -Wextra -Wno-unused-parameter
	-include $OUT/config.h -Icommon -Iagent"

build() {
	local t=$1 mods flags libs
	mods=$(modules "$t")
	flags=$(pkg-config --cflags $mods)
	libs=$(pkg-config --libs $mods)
	# shellcheck disable=SC2046,SC2086
	if ! $CC $CFLAGS $flags -o "$OUT/fuzz-$t.$$" "tests/fuzz/fuzz-$t.c" $(sources "$t") $libs \
		2>"$OUT/build-$t.log"; then
		cat "$OUT/build-$t.log" >&2
		echo "error: building fuzz-$t failed" >&2
		exit 2
	fi
	mv "$OUT/fuzz-$t.$$" "$OUT/fuzz-$t"
}

for t in $TARGETS; do
	build "$t"
done

failed=0
printf '%-10s %12s %8s %8s %7s  %s\n' TARGET EXECUTIONS COV FT CORPUS RESULT
for t in $TARGETS; do
	corpus=$OUT/corpus-$t
	artifacts=$OUT/artifacts-$t/
	mkdir -p "$corpus" "$artifacts"
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	log=$OUT/$t.log
	set +e
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-} \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-} \
		"$OUT/fuzz-$t" "$corpus" "tests/fuzz/corpus/$t" "${dict[@]}" \
		-max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
	rc=$?
	set -e
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	stats=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -n1 || true)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$stats")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stats")
	corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$stats")
	if [ $rc -eq 0 ] && grep -q 'Done [0-9]* runs' "$log"; then
		result=ok
	else
		failed=1
		if grep -q 'ERROR: LeakSanitizer' "$log"; then result=LEAK
		elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then result=TIMEOUT
		elif grep -q -e 'out-of-memory' -e 'rss limit' "$log"; then result=OOM
		else result="CRASH (exit $rc)"
		fi
		art=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n1)
		result="$result: ${art:-see $log}"
	fi
	printf '%-10s %12s %8s %8s %7s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
	if [ "$result" != ok ]; then
		grep -E -m1 -A12 'ERROR: |fuzz-[a-z-]+: ' "$log" | sed 's/^/    /' >&2 || true
	fi
done
exit $failed
}
