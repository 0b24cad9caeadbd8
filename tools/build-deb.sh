#!/bin/sh
# Build the Debian package from a clone (or an unpacked release tarball):
#
#   tools/build-deb.sh [--no-deps] [--lintian] [--nocheck] [--arch ARCH]
#
# The tree is copied to a temporary directory, packaging/debian/ becomes debian/ there,
# `dpkg-buildpackage -us -uc -b` builds it, and the .deb files land in ./dist/. Nothing
# else is written inside the repository.
#   --no-deps    do not apt-get the build tools and Build-Depends (needs root otherwise)
#   --lintian    run `lintian -I -E --pedantic` on the result (fails on errors/warnings)
#   --nocheck    skip `make check` during the build (DEB_BUILD_OPTIONS=nocheck)
#   --arch ARCH  cross-build for ARCH (arm64, armhf) with Debian multiarch: adds the
#                architecture, crossbuild-essential-ARCH and the Build-Depends for ARCH;
#                the unit tests are not run (tools/test-cross.sh runs them under qemu)
# One package per Debian release: the version gets ~deb12u1 on bookworm, ~deb13u1 on
# trixie (the release this script runs on), so each suite's .deb has its own name and
# layout (units in /lib/systemd on 12, /usr/lib/systemd on 13, as each systemd says).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
deps=yes lint=no arch=
nocheck() {
	DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }nocheck"; export DEB_BUILD_OPTIONS
}
while [ $# -gt 0 ]; do
	case $1 in
	--no-deps) deps=no ;;
	--lintian) lint=yes ;;
	--nocheck) nocheck ;;
	--arch) [ $# -ge 2 ] || { echo "build-deb.sh: --arch needs an architecture" >&2; exit 2; }
		arch=$2; shift ;;
	--arch=*) arch=${1#--arch=} ;;
	-h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "build-deb.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
native=$(dpkg --print-architecture)
[ "$arch" != "$native" ] || arch=
if [ -n "$arch" ]; then
	case $arch in
	arm64|armhf|armel|amd64|i386|ppc64el|s390x|riscv64) ;;
	*) echo "build-deb.sh: unknown architecture $arch" >&2; exit 2 ;;
	esac
	# The build machine cannot run the host's unit tests; the nocheck profile also drops
	# check:ARCH from the Build-Depends.
	nocheck
	DEB_BUILD_PROFILES="${DEB_BUILD_PROFILES:+$DEB_BUILD_PROFILES }cross nocheck"; export DEB_BUILD_PROFILES
	# The cross compiler, named, or dpkg-architecture warns that CC (gcc) builds for amd64.
	CC=${CC:-$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)-gcc}; export CC
fi

# The Debian release this runs on names the package: 12 -> ~deb12u1, 13 -> ~deb13u1.
release=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-}") || true)
release=${release%%.*}
case $release in
''|*[!0-9]*) release=$(sed -n 's/^\([0-9][0-9]*\)\..*/\1/p' /etc/debian_version 2>/dev/null) ;;
esac
[ -n "$release" ] || { echo "build-deb.sh: cannot tell the Debian release (/etc/os-release)" >&2; exit 1; }
codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)

# The tools this script needs; the package's own Build-Depends follow via build-dep.
TOOLS="build-essential debhelper dh-autoreconf dpkg-dev fakeroot lintian pkgconf"
[ -z "$arch" ] || TOOLS="$TOOLS crossbuild-essential-$arch"

apt_get() {
	DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends "$@"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/mysocketd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

version=$(sed -n '1s/.*(\(.*\)).*/\1/p' "$top/packaging/debian/changelog")
upstream=${version%-*}
version="$version~deb${release}u1"
src="$work/mysocketd-$upstream"
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
# This release's version (and codename) in the top changelog entry.
sed -i "1s/([^)]*) [^;]*;/($version) ${codename:-unstable};/" "$src/debian/changelog"
# The lintian override for bookworm's init.d-script tag ships only with units under /lib
# (debian/rules, override_dh_lintian): trixie's lintian calls it an error (alien-tag).

if [ "$deps" = yes ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "build-deb.sh: not root, skipping apt-get (use --no-deps to silence this)" >&2
	else
		if [ -n "$arch" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
			dpkg --add-architecture "$arch"
			apt_get update
		fi
		apt_get install $TOOLS || { apt_get update && apt_get install $TOOLS; }
		if [ -n "$arch" ]; then
			apt_get build-dep -a "$arch" -P "cross,nocheck" "$src"
		else
			apt_get build-dep "$src"
		fi
	fi
fi

(cd "$src" && dpkg-buildpackage -us -uc -b ${arch:+-a"$arch" -P"cross,nocheck"})

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
