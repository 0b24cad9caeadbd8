#!/bin/bash
# The Quick start demo: installs what is missing, builds, and runs mysocketd in API mode
# against a local relay (OpenSSH sshd + the API emulator, all on 127.0.0.1), showing a
# request travel through the tunnel. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup.sh
exec /usr/bin/python3 tools/demo.py
