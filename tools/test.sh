#!/bin/bash
# The whole test suite: builds (plain with -Werror, and with ASan+UBSan), checks the
# tarball (make distcheck), then runs the unit tests of both builds and the integration
# tests against real sshd relays and the API emulator, all under pytest. Run as root on
# Debian 12. The last line is pytest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup.sh

echo "==> make (build-asan/, -fsanitize=address,undefined)"
mkdir -p build-asan
if [ ! -f build-asan/Makefile ]; then
	(cd build-asan && ../configure -q --enable-werror --enable-sanitizers)
fi
make -s -C build-asan -j"$(nproc)"
make -s -C build-asan -j"$(nproc)" check TESTS= >/dev/null   # builds the unit test programs
make -s -C build -j"$(nproc)" check TESTS= >/dev/null

echo "==> make distcheck"
make -s -C build distcheck >build/distcheck.log 2>&1 || { tail -40 build/distcheck.log; exit 1; }
echo "distcheck ok: $(ls build/*.tar.xz)"

echo "==> pytest (unit tests plain and sanitized, then integration tests)"
exec pytest-3 -p no:cacheprovider -rfEs --durations=12 "$@" tests/emulator tests/integration
