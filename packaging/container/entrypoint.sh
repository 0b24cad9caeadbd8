#!/bin/sh
# Container entry point of mysocketd (packaging/container/Dockerfile, docs/CONTAINER.md).
# Runs under tini (PID 1, which forwards SIGTERM and reaps), or itself as PID 1: mysocketd
# takes SIGTERM and SIGINT through signalfd with the signals blocked, which the kernel
# delivers to a namespace's PID 1 as well (only unhandled default-action signals are dropped).
# The config comes from a mounted file; everything else stays in the config, not here.
set -eu

CONFIG="${MYSOCKETD_CONFIG:-/etc/mysocketd/mysocketd.ini}"
MYSOCKETD="${MYSOCKETD_BIN:-/usr/sbin/mysocketd}"

if [ ! -r "$CONFIG" ]; then
	echo "mysocketd-entrypoint: no readable config at $CONFIG; mount one, e.g." \
		"-v \$PWD/mysocketd.ini:/etc/mysocketd/mysocketd.ini:ro (see docs/CONTAINER.md)" >&2
	exit 78   # EX_CONFIG
fi

# exec: mysocketd takes this shell's pid, so the signal tini forwards (or docker stop sends
# to PID 1) reaches the daemon itself, not a shell that would ignore it.
exec "$MYSOCKETD" -c "$CONFIG" "$@"
