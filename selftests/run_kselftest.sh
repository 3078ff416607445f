#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Run snapguard selftests, kselftest style: each program's TAP is nested
# under "# " and followed by one top-level result line.
cd "$(dirname "$0")" || exit 1
timeout=$(sed -n 's/^timeout=//p' settings)
# The debug kernel (vm.py --debug) is slower: a scale for every timeout.
[ -f timeout_scale ] && timeout=$(( ${timeout:-600} * $(cat timeout_scale) ))
[ $# -gt 0 ] || set -- $(sed -n 's/^TEST_PROGS := //p' Makefile)
echo "TAP version 13"
echo "1..$#"
n=0
rc=0
for t in "$@"; do
	n=$((n + 1))
	echo "# selftests: snapguard: $t"
	start=$(date +%s)
	timeout "${timeout:-600}" ./"$t" 2>&1 | sed -u 's/^/# /'
	r=${PIPESTATUS[0]}
	echo "# $t took $(($(date +%s) - start))s"
	case $r in
	0) echo "ok $n selftests: snapguard: $t" ;;
	4) echo "ok $n selftests: snapguard: $t # SKIP" ;;
	124|143) echo "not ok $n selftests: snapguard: $t # TIMEOUT ${timeout}s"; rc=1 ;;
	*) echo "not ok $n selftests: snapguard: $t # exit=$r"; rc=1 ;;
	esac
done
exit $rc
