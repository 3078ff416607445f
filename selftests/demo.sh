#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The README's "try it": a hibernated Windows volume is mounted read-only
# with the reason, then read-write after a one-shot override.
cd "$(dirname "$0")" || exit 1
set -e
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; eval "$@"; }
# The test image: from the fixture disk tools/vm.py attaches, else made here.
if [ -f /fixtures/ntfs-hiberfil-HIBR.img ]; then
	cp /fixtures/ntfs-hiberfil-HIBR.img /tmp/windows.img
else
	fixtures/mkimages.sh /tmp/demo ntfs-hiberfil-HIBR >/dev/null
	cp /tmp/demo/ntfs-hiberfil-HIBR.img /tmp/windows.img
fi
mkdir -p /mnt/win
run 'losetup -f --show /tmp/windows.img'
dev=$(losetup -j /tmp/windows.img | cut -d: -f1)
run "cat /sys/kernel/snapguard/guard/mode"
run "mount -t ntfs3 $dev /mnt/win || true"
run "grep /mnt/win /proc/mounts"
run "cat /sys/kernel/snapguard/guard/last_refusal"
run "umount /mnt/win"
run "echo ${dev#/dev/} > /sys/kernel/snapguard/guard/allow_once"
run "mount -t ntfs3 $dev /mnt/win"
run "grep /mnt/win /proc/mounts"
run "cat /sys/kernel/snapguard/guard/stats"
umount /mnt/win
losetup -d "$dev"
