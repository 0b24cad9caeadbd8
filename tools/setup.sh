#!/bin/bash
# Installs what is missing (Debian 12 or 13, as root) and builds mysocketd into build/.
# Sourced by tools/demo.sh and tools/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake pkg-config libssh2-1-dev libcurl4-openssl-dev
libcjson-dev libinih-dev libsystemd-dev libmicrohttpd-dev check openssh-server openssh-client python3
python3-pytest python3-paramiko iproute2 curl procps xz-utils clang libclang-rt-dev tini bash-completion
tinyproxy microsocks python3-matplotlib"
# What differs per Debian release: from trixie on, systemd.pc (the unit and sysusers
# directories configure asks pkg-config for) is in systemd-dev; bookworm has it in systemd.
case $(. /etc/os-release && echo "${VERSION_CODENAME:-}") in
bookworm) ;;
*) PACKAGES="$PACKAGES systemd-dev" ;;
esac

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "==> apt-get install$missing"
	if [ "$(id -u)" != 0 ]; then
		echo "error: missing packages:$missing; run as root or install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends $missing
	# tinyproxy's package starts a system-wide proxy on :8888; the tests run their own in
	# the foreground, so the packaged one is stopped (by its pid) and kept from starting.
	case " $missing " in
	*" tinyproxy "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now tinyproxy.service >/dev/null 2>&1 || true
		else
			update-rc.d tinyproxy disable >/dev/null 2>&1 || true
			pid=$(cat /run/tinyproxy/tinyproxy.pid 2>/dev/null || true)
			[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
		fi ;;
	esac
fi

# build/ with warnings as errors, as CI wants it.
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
mkdir -p build
if [ ! -f build/Makefile ]; then
	(cd build && ../configure -q --enable-werror)
fi
echo "==> make (build/)"
make -s -C build -j"$(nproc)"
