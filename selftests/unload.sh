#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# rmmod removes everything cleanly; load/unload cycles leave no trace.
. "$(dirname "$0")/lib.sh"
ktap_plan 5

modprobe snapguard
dmesg_mark
ktap_check "rmmod snapguard" rmmod snapguard
ktap_check "module gone from /proc/modules" sh -c '! grep -q "^snapguard " /proc/modules'
ktap_check "/sys/kernel/snapguard removed" test ! -e /sys/kernel/snapguard
ktap_check "unload logged" sh -c 'dmesg | tail -n 5 | grep -q "snapguard: unloaded"'
ok=1
for i in $(seq 1 20); do
	modprobe snapguard && cat /sys/kernel/snapguard/guard/mode >/dev/null &&
		echo audit >/sys/kernel/snapguard/guard/mode && rmmod snapguard || { ok=0; break; }
done
if [ $ok = 1 ] && ! dmesg_since | grep -qE 'BUG:|Oops|WARNING:|leak'; then
	ktap_ok "20 load/use/unload cycles, no kernel complaint"
else
	ktap_fail "load/unload cycles (stopped at $i)"
	dmesg_since | tail -n 20 | sed 's/^/# /'
fi
modprobe snapguard
ktap_finish
