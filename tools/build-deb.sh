#!/bin/sh
# Build the Debian package from a clone (or an unpacked release tarball):
#
#   tools/build-deb.sh [--no-deps] [--lintian] [--nocheck]
#
# The tree is copied to a temporary directory, packaging/debian/ becomes debian/ there,
# `dpkg-buildpackage -us -uc -b` builds it, and the .deb files land in ./dist/. Nothing
# else is written inside the repository.
#   --no-deps   do not apt-get the build tools and Build-Depends (needs root otherwise)
#   --lintian   run `lintian -I -E --pedantic` on the result (fails on errors/warnings)
#   --nocheck   skip `make check` during the build (DEB_BUILD_OPTIONS=nocheck)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
deps=yes lint=no
for arg in "$@"; do
	case $arg in
	--no-deps) deps=no ;;
	--lintian) lint=yes ;;
	--nocheck) DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }nocheck"; export DEB_BUILD_OPTIONS ;;
	-h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "build-deb.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
	esac
done

# The tools this script needs; the package's own Build-Depends follow via build-dep.
TOOLS="build-essential debhelper dh-autoreconf dpkg-dev fakeroot lintian pkgconf"

apt_get() {
	DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends "$@"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/mysocketd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

version=$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -S Version 2>/dev/null ||
	sed -n '1s/.*(\(.*\)).*/\1/p' "$top/packaging/debian/changelog")
src="$work/mysocketd-${version%-*}"
mkdir -p "$src"

# Copy the sources: in a git checkout the tracked and new (not ignored) files, so build
# directories and generated files stay behind; otherwise everything but those.
if [ -d "$top/.git" ] && command -v git >/dev/null 2>&1; then
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		(cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh) |
		tar -C "$top" -cf - -T - | tar -C "$src" -xf -
else
	tar -C "$top" --exclude='./build*' --exclude=./dist --exclude=./.git -cf - . | tar -C "$src" -xf -
fi
rm -rf "$src/debian"
cp -a "$top/packaging/debian" "$src/debian"

if [ "$deps" = yes ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "build-deb.sh: not root, skipping apt-get (use --no-deps to silence this)" >&2
	else
		apt_get install $TOOLS || { apt_get update && apt_get install $TOOLS; }
		apt_get build-dep "$src"
	fi
fi

(cd "$src" && dpkg-buildpackage -us -uc -b)

mkdir -p "$top/dist"
for deb in "$work"/*.deb; do
	cp "$deb" "$top/dist/"
	echo "built dist/$(basename "$deb")"
done

# initial-upload-closes-no-bugs only means no Debian bug is closed by the first upload.
if [ "$lint" = yes ]; then
	lintian -I -E --pedantic --fail-on error,warning \
		--suppress-tags initial-upload-closes-no-bugs "$work"/*.changes
fi
