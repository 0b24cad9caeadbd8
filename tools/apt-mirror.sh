# Sourced by the tools that debootstrap a root (ci-root.sh, test-in.sh, test-systemd.sh,
# packaging/container/make-base.sh): they take Debian's archive from this machine's own apt
# sources, so the repository names no mirror. POSIX sh.
#
# apt_mirror NAME: the URI of the first apt source whose path ends in /NAME ("debian",
# "debian-security"), from one-line (deb [opts] URI ...) or deb822 (URIs: URI) sources;
# MYSOCKETD_CI_MIRROR / MYSOCKETD_CI_SECURITY override it. Prints nothing if none is found.
apt_mirror() {
	case $1 in
	debian) [ -n "${MYSOCKETD_CI_MIRROR:-}" ] && { echo "$MYSOCKETD_CI_MIRROR"; return 0; } ;;
	debian-security) [ -n "${MYSOCKETD_CI_SECURITY:-}" ] && { echo "$MYSOCKETD_CI_SECURITY"; return 0; } ;;
	esac
	{ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
		2>/dev/null || true; } | sed -n -e "s|^URIs:[[:space:]]*\([^[:space:]]*/$1\)/*\$|\1|p" \
		-e "s|^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*/$1\)/*[[:space:]].*|\2|p" |
		head -1
}

# apt_mirror_or_die NAME WHO: as apt_mirror, or stops WHO with a message that says what to set.
apt_mirror_or_die() {
	_m=$(apt_mirror "$1")
	[ -n "$_m" ] || { echo "$2: no apt source for .../$1 in /etc/apt/sources.list(.d); set MYSOCKETD_CI_MIRROR (and MYSOCKETD_CI_SECURITY)" >&2; exit 1; }
	echo "$_m"
}
