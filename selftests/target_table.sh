#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The snapguard-pool and snapguard device-mapper targets refuse bad table
# lines with a precise message, both device-mapper's short one and
# snapguard's detailed one in the kernel log, and leave no device behind.
# Valid tables that cannot work here (a read-only pool on a zeroed metadata
# device, a data device too small, a volume whose device is no pool) are
# refused after their devices were opened, without writing anything. See
# Documentation/snapshot-target.rst; target_pool.sh tests live pools.
. "$(dirname "$0")/lib.sh"

# No udev in the guest: libdevmapper makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 51

dd if=/dev/zero of=/tmp/sgt-meta bs=1M count=0 seek=4 status=none
dd if=/dev/zero of=/tmp/sgt-data bs=1M count=0 seek=16 status=none
dd if=/dev/zero of=/tmp/sgt-tiny bs=4096 count=1 status=none
dd if=/dev/zero of=/tmp/sgt-small bs=4096 count=4 status=none
META=$(losetup -f --show /tmp/sgt-meta)
DATA=$(losetup -f --show /tmp/sgt-data)
TINY=$(losetup -f --show /tmp/sgt-tiny)
SMALL=$(losetup -f --show /tmp/sgt-small)
META_DEVT=$(cat /sys/class/block/${META#/dev/}/dev)
LEN=32768

# The kernel log is read and cleared after each table (dmesg -c), and kept
# in $KLOG for the final check; string tests are bash built-ins, so each
# case costs only the dmsetup and dmesg runs (the guest is emulated).
KLOG=/tmp/sgt-klog
dmesg -c >$KLOG

# refused DESC TARGET SHORT DETAIL TABLE...: `dmsetup create` with TABLE
# fails, the kernel log has "TARGET: SHORT (" from device-mapper and, unless
# DETAIL is -, DETAIL from snapguard; no device-mapper device is left.
refused() {
	local desc=$1 target=$2 short=$3 detail=$4 log
	shift 4
	if printf '%s\n' "$*" | dmsetup create --noudevsync sgt >/dev/null 2>&1; then
		ktap_fail "$desc (table accepted)"
		dmsetup remove --noudevsync sgt
		dmesg -c >>$KLOG
		return
	fi
	log=$(dmesg -c)
	printf '%s\n' "$log" >>$KLOG
	if [[ $log != *"$target: $short ("* ]]; then
		ktap_fail "$desc (no '$target: $short' in the log)"
		printf '%s\n' "$log" | sed 's/^/# /'
	elif [ "$detail" != - ] && [[ $log != *"$detail"* ]]; then
		ktap_fail "$desc (no '$detail' in the log)"
		printf '%s\n' "$log" | sed 's/^/# /'
	elif compgen -G '/sys/block/dm-*' >/dev/null; then
		ktap_fail "$desc (device left behind)"
		dmsetup remove --noudevsync sgt
	else
		ktap_ok "$desc"
	fi
}

pool() { refused "pool: $1" snapguard-pool "$2" "$3" "0 $LEN snapguard-pool $4"; }
vol() { refused "volume: $1" snapguard "$2" "$3" "0 $LEN snapguard $4"; }

ktap_check "both targets registered" sh -c \
	"dmsetup targets | grep -q '^snapguard-pool ' && dmsetup targets | grep -q '^snapguard '"

M=$META D=$DATA
pool "too few arguments" "Invalid argument count" "3 arguments, expected" "$M $D 128"
pool "same device twice" "Metadata and data devices must differ" - "$M $M 128 0"
pool "same device, other name" "Metadata and data devices must differ" - "$M $META_DEVT 128 0"
pool "extent size not a number" "Invalid extent size" "(extent sectors): not a decimal number ('x')" "$M $D x 0"
pool "extent size with sign" "Invalid extent size" "sign not allowed ('+128')" "$M $D +128 0"
pool "extent size leading zero" "Invalid extent size" "leading zero not allowed ('0128')" "$M $D 0128 0"
pool "extent size hex" "Invalid extent size" "not a decimal number ('0x80')" "$M $D 0x80 0"
pool "extent size overflows" "Invalid extent size" "too large for 64 bits" "$M $D 18446744073709551616 0"
pool "extent size 0" "Invalid extent size: below 8 sectors" "extent size 0 sectors is below 8" "$M $D 0 0"
pool "extent size 4" "Invalid extent size: below 8 sectors" - "$M $D 4 0"
pool "extent size 4194304" "Invalid extent size: above 2097152 sectors" - "$M $D 4194304 0"
pool "extent size 24" "Invalid extent size: not a power of two" "extent size 24 sectors is not a power of two" "$M $D 24 0"
pool "extent size 192" "Invalid extent size: not a power of two" - "$M $D 192 0"
pool "low water negative" "Invalid low water mark" "(low water mark): sign not allowed ('-1')" "$M $D 128 -1"
pool "low water fraction" "Invalid low water mark" "not a decimal number ('1.5')" "$M $D 128 1.5"
pool "feature count not a number" "Invalid number of feature arguments" "('x')" "$M $D 128 0 x"
pool "feature count too high" "Feature argument count does not match the arguments" "1 feature arguments declared but 0 given" "$M $D 128 0 1"
pool "feature count too low" "Feature argument count does not match the arguments" "0 feature arguments declared but 1 given" "$M $D 128 0 0 read_only"
pool "feature count above 5" "Invalid number of feature arguments" "6 feature arguments declared, at most 5" "$M $D 128 0 6 a b c d e f"
pool "unknown feature" "Unrecognised pool feature" "unrecognised pool feature ('frobnicate')" "$M $D 128 0 1 frobnicate"
pool "duplicate feature" "Duplicate pool feature" "feature read_only given twice" "$M $D 128 0 2 read_only READ_ONLY"
pool "conflicting discard features" "Conflicting pool features" "no_discard_passdown conflicts with ignore_discard" \
	"$M $D 128 0 2 ignore_discard no_discard_passdown"
pool "cache_mib without value" "Invalid cache_mib" "(cache_mib): empty" "$M $D 128 0 1 cache_mib"
pool "cache_mib 0" "Invalid cache_mib: out of range" "cache_mib:0 is outside 1..=1024" "$M $D 128 0 1 cache_mib:0"
pool "cache_mib 1025" "Invalid cache_mib: out of range" - "$M $D 128 0 1 cache_mib:1025"
pool "duplicate cache_mib" "Duplicate pool feature" "feature cache_mib given twice" "$M $D 128 0 2 cache_mib:4 cache_mib:8"
pool "missing metadata device" "Error opening metadata device" - "/dev/nonexistent $D 128 0"
pool "missing data device" "Error opening data device" - "$M /dev/nonexistent 128 0"
refused "pool: shorter than one extent" snapguard-pool "Pool length below one extent" \
	"target length 64 sectors is below one extent (128 sectors)" "0 64 snapguard-pool $M $D 128 0"
refused "pool: not alone in its table" snapguard-pool "singleton target type must appear alone in table" - \
	"0 8 zero
8 $LEN snapguard-pool $M $D 128 0"
refused "pool: data device smaller than the target" snapguard-pool "Data device smaller than the pool target" \
	"the data device has 32768 sectors, the target 65536" "0 65536 snapguard-pool $M $D 128 0"
pool "metadata device of one block" "Metadata device too small" "the metadata device has 1 blocks" "$TINY $D 128 0"
pool "metadata device too small to format" "Cannot format the metadata device" "cannot format the metadata device: NoMetadataSpace" \
	"$SMALL $D 128 0"
pool "read_only on a zeroed metadata device" "Cannot format a read-only pool" - "$M $D 128 0 1 read_only"
pool "all features on a zeroed metadata device" "Cannot format a read-only pool" - \
	"$M $D 16384 0 5 skip_block_zeroing ignore_discard read_only error_if_no_space cache_mib:16"

vol "no arguments" "Invalid argument count" "0 arguments, expected <pool dev> <volume id>" ""
vol "too many arguments" "Invalid argument count" "3 arguments" "$D 1 extra"
vol "id not a number" "Invalid volume id" "(volume id): not a decimal number ('one')" "$D one"
vol "id negative" "Invalid volume id" "sign not allowed ('-1')" "$D -1"
vol "id leading zero" "Invalid volume id" "leading zero not allowed ('01')" "$D 01"
vol "id 2^24" "Invalid volume id: out of range" "volume id 16777216 is above 16777215" "$D 16777216"
vol "id overflows" "Invalid volume id" "too large for 64 bits" "$D 18446744073709551616"
vol "missing pool device" "Error opening pool device" - "/dev/nonexistent 1"
vol "valid table on a device that is not a pool" "Not a snapguard pool device" "is not a live snapguard pool" "$D 16777215"

# The refusals changed nothing: no device, no open of the loop devices,
# nothing written to the metadata device.
ktap_check "no sgt device left" sh -c "! dmsetup ls | grep -q '^sgt'"
ktap_check "metadata devices still all zero" sh -c \
	"[ \$(cat /tmp/sgt-meta /tmp/sgt-tiny /tmp/sgt-small | tr -d '\\000' | wc -c) -eq 0 ]"
ktap_check "loop devices not held" sh -c \
	"[ -z \"\$(ls /sys/class/block/${META#/dev/}/holders)\" ] && [ -z \"\$(ls /sys/class/block/${DATA#/dev/}/holders)\" ]"
ktap_check "module unloads (no target reference leaked)" rmmod snapguard
ktap_check "targets gone after unload" sh -c "! dmsetup targets | grep -q '^snapguard'"
modprobe snapguard
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection' $KLOG"

losetup -d "$META" "$DATA" "$TINY" "$SMALL"
ktap_finish
