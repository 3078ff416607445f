#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The README's "try it" for the snapshot target: a pool on two loop
# devices, a volume with ext4 and a file, a snapshot of the mounted
# (active) volume, the origin overwritten, the snapshot still holding the
# old bytes, and the status lines along the way.
set -e
export DM_DISABLE_UDEV=1
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; eval "$@"; }
modprobe snapguard
truncate -s 16M /tmp/meta.img
truncate -s 256M /tmp/data.img
mkdir -p /mnt/vol /mnt/snap
run 'meta=$(losetup -f --show /tmp/meta.img); data=$(losetup -f --show /tmp/data.img)'
run 'dmsetup create pool --table "0 $(blockdev --getsz $data) snapguard-pool $meta $data 128 64"'
run 'dmsetup message pool 0 "create 0"'
run 'dmsetup create vol0 --table "0 $(blockdev --getsz $data) snapguard /dev/mapper/pool 0"'
run 'mkfs.ext4 -q /dev/mapper/vol0 && mount /dev/mapper/vol0 /mnt/vol'
run 'echo "version 1" > /mnt/vol/notes.txt && sync'
run 'dmsetup message pool 0 "snapshot 0 1"    # vol0 stays mounted and active'
run 'echo "version 2" > /mnt/vol/notes.txt && sync'
run 'dmsetup create snap1 --table "0 $(blockdev --getsz $data) snapguard /dev/mapper/pool 1"'
run 'mount -o ro,noload /dev/mapper/snap1 /mnt/snap'
run 'cat /mnt/vol/notes.txt /mnt/snap/notes.txt'
run 'dmsetup status pool vol0 snap1'
umount /mnt/snap /mnt/vol
dmsetup remove snap1 vol0 pool
run 'snapguard pool check $meta'
losetup -d "$meta" "$data"
