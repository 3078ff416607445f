#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# snapguard loads through modprobe (depmod-installed), creates its sysfs tree
# and logs one line.
. "$(dirname "$0")/lib.sh"
ktap_plan 6

rmmod snapguard 2>/dev/null
dmesg_mark
ktap_check "modprobe snapguard" modprobe snapguard
ktap_check "module listed in /proc/modules" grep -q '^snapguard ' /proc/modules
ktap_check "modprobe found it through depmod (modules.dep)" \
	grep -q 'extra/snapguard.ko' "/lib/modules/$(uname -r)/modules.dep"
ver=$(modinfo -F version snapguard 2>/dev/null)
sysver=$(cat /sys/kernel/snapguard/version 2>/dev/null)
if [ -n "$ver" ] && [ "$ver" = "$sysver" ]; then
	ktap_ok "/sys/kernel/snapguard/version matches modinfo ($ver)"
else
	ktap_fail "/sys/kernel/snapguard/version '$sysver' vs modinfo '$ver'"
fi
# The kernel's own taint notice also carries the module name; ours is the
# one line that names the version and the guarded types.
lines=$(dmesg_since | grep 'snapguard: ' | grep -v 'taints kernel')
if [ "$(printf '%s\n' "$lines" | grep -c .)" -eq 1 ] &&
	printf '%s' "$lines" | grep -q 'snapguard: version .* loaded, guarding: ntfs3 ntfs vfat msdos exfat$'; then
	ktap_ok "exactly one 'snapguard:' line logged at load"
else
	ktap_fail "load lines logged:"
	printf '%s\n' "$lines" | sed 's/^/# /'
fi
# tools/vm.py copies one python3 and that interpreter's standard library.
ktap_check "guest python3 has its standard library" \
	python3 -c 'import json, os; print(json.dumps(os.sep))'
ktap_finish
