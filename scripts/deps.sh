#!/usr/bin/env bash
# Installs the Debian packages etcd-rescue needs to build the rescue image and
# run its QEMU tests: QEMU and OVMF to boot it, systemd's EFI stub for the
# unified kernel image, ISOLINUX for the ISO's BIOS entry, binutils
# (objcopy), mkfs tools for test disks, kmod
# (depmod) for the kernel's modules.dep, cpio/xz for inspecting images, and
# mdadm, lvm2 and cryptsetup: the image carries them (with their libraries)
# to activate md RAID, LVM and LUKS roots, and the tests make such disks.
# Idempotent: it installs only what is missing, and runs apt-get update once.
set -euo pipefail

pkgs=(
	qemu-system-x86 qemu-utils ovmf systemd-boot-efi binutils
	e2fsprogs xfsprogs dosfstools mtools kmod cpio xz-utils zstd
	iproute2 util-linux ca-certificates dbus-daemon etcd-server isolinux syslinux-common
	mdadm lvm2 cryptsetup-bin dmsetup
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
