#!/usr/bin/env bash
# Fetches the Debian cloud kernel (the package linux-image-cloud-amd64 depends
# on), unpacks it into .cache/kernel/<version>/ and builds its modules.dep
# with depmod (the package ships none). Records the version in
# .cache/kernel/VERSION and links .cache/kernel/current to it, then prints
# the vmlinuz path. Cached: a second run downloads nothing.
#
# Usage: scripts/fetch-kernel.sh [CACHE_DIR]   (default: <repo>/.cache)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-${CACHE:-$root/.cache}}"
kdir="$cache/kernel"
mkdir -p "$kdir"

meta=linux-image-cloud-amd64
pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
if [ -z "$pkg" ]; then
	# apt lists may be missing on a fresh machine.
	apt-get update -qq >/dev/null
	pkg="$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')"
fi
if [ -z "$pkg" ]; then
	echo "fetch-kernel: cannot resolve $meta to a kernel package; is apt configured?" >&2
	exit 1
fi
version="${pkg#linux-image-}"
dest="$kdir/$version"
vmlinuz="$dest/boot/vmlinuz-$version"

if [ ! -f "$dest/.complete" ]; then
	tmp="$(mktemp -d "$kdir/.fetch.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# _apt downloads into the directory, so it must be able to write there.
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
	deb="$(ls "$tmp"/*.deb)"
	mkdir -p "$tmp/root"
	dpkg-deb -x "$deb" "$tmp/root"
	depmod -b "$tmp/root" "$version"
	rm -rf "$dest"
	mv "$tmp/root" "$dest"
	touch "$dest/.complete"
fi

echo "$version" >"$kdir/VERSION"
ln -sfn "$version" "$kdir/current"
echo "$vmlinuz"
