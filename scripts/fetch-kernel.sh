#!/usr/bin/env bash
# Fetches a Debian kernel, unpacks it into .cache/kernel/<version>/ and
# builds its modules.dep and modules.alias with depmod (the package ships
# none). FLAVOUR is generic (default: the kernel linux-image-amd64 depends
# on, with the drivers of physical servers: SATA, RAID and SAS controllers,
# USB, physical NICs) or cloud (linux-image-cloud-amd64's: virtio, NVMe and
# the cloud NICs only, smaller). Links .cache/kernel/<flavour> to it and,
# unless KERNEL_KEEP_CURRENT=1, .cache/kernel/current too (recording the
# version in .cache/kernel/VERSION); prints the vmlinuz path. Cached: a
# second run downloads nothing.
#
# Usage: scripts/fetch-kernel.sh [CACHE_DIR] [generic|cloud]
#        (defaults: <repo>/.cache, $KERNEL_FLAVOUR, else generic)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-${CACHE:-$root/.cache}}"
flavour="${2:-${KERNEL_FLAVOUR:-generic}}"
kdir="$cache/kernel"
mkdir -p "$kdir"

case "$flavour" in
generic) meta=linux-image-amd64 ;;
cloud) meta=linux-image-cloud-amd64 ;;
*)
	echo "fetch-kernel: unknown kernel flavour $flavour: use generic (physical servers and VMs) or cloud (VMs only)" >&2
	exit 1
	;;
esac

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
# Signed kernels are packaged as linux-image-<version>-unsigned too; the
# version is what the modules folder is named after either way.
version="${version%-unsigned}"
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

ln -sfn "$version" "$kdir/$flavour"
if [ "${KERNEL_KEEP_CURRENT:-0}" != 1 ]; then
	echo "$version" >"$kdir/VERSION"
	ln -sfn "$version" "$kdir/current"
fi
echo "$vmlinuz"
