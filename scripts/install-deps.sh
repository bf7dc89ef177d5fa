#!/usr/bin/env bash
# Installs what building, running and testing snodebox needs on Debian
# bookworm: host tools from Debian, and a Go toolchain new enough for go.mod
# (Debian's own Go is older; with GOTOOLCHAIN=auto any Go >= 1.21 fetches the
# exact toolchain go.mod names from the Go module proxy).
set -euo pipefail

need_pkgs=(
	qemu-system-arm qemu-utils dosfstools mtools e2fsprogs kmod util-linux
	device-tree-compiler u-boot-tools minisign iproute2 cpio xz-utils
	ca-certificates curl chromium socat python3-zmq
	debian-archive-keyring apt dpkg
	git make
)
# git: the tree is a git checkout, and `go build` stamps VCS information into
# binaries (it fails outright in a checkout when git is missing); make: the
# README's commands. A minbase/cloud Debian has neither.

missing=()
for p in "${need_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	local v
	v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
	[ -n "$v" ] || return 1
	local major minor
	major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
	[ "$major" -gt 1 ] || [ "$minor" -ge 21 ]
}

if ! go_ok; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "install-deps: using /usr/local/go (add it to PATH)"
	else
		echo "install-deps: installing a Go toolchain from bookworm-backports"
		echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/snodebox-backports.list >/dev/null
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports golang-go
	fi
fi

# The exact toolchain go.mod names and the modules, fetched now through the
# module proxy so a network problem shows here rather than mid-build.
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; fi
if [ -z "${HOME:-}" ]; then HOME=$(getent passwd "$(id -u)" | cut -d: -f6); export HOME; fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
echo "install-deps: $(go version)"
go mod download

# The tests write up to about 1.3 GiB under build/ (kernels, card images,
# QEMU disks, all sparse) and Go's build cache about 1 GiB more. Say so up
# front when the disk is short, rather than let tests fail on ENOSPC
# halfway through (a CI run once did).
need_mib=3072
free_mib=$(df -Pm . 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -n "$free_mib" ] && [ "$free_mib" -lt "$need_mib" ]; then
	echo "install-deps: WARNING: ${free_mib} MiB free on this disk; make test needs about ${need_mib} MiB (build/, Go's build cache)" >&2
fi
echo "install-deps: ok"
