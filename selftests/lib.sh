#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# KTAP helpers for the snapguard selftests (kselftest style). Source it,
# call ktap_plan N, then one result per test, then ktap_finish.

KTAP_N=0
KTAP_FAIL=0
KTAP_PLAN=0

ktap_plan() {
	KTAP_PLAN=$1
	echo "TAP version 13"
	echo "1..$1"
}
ktap_ok() { KTAP_N=$((KTAP_N + 1)); echo "ok $KTAP_N $*"; }
ktap_fail() { KTAP_N=$((KTAP_N + 1)); KTAP_FAIL=$((KTAP_FAIL + 1)); echo "not ok $KTAP_N $*"; }
ktap_skip() { KTAP_N=$((KTAP_N + 1)); echo "ok $KTAP_N $1 # SKIP $2"; }
ktap_diag() { echo "# $*"; }

# ktap_check DESC CMD...: run CMD, report ok when it exits 0. Its output is
# shown as diagnostics when it fails.
ktap_check() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		ktap_ok "$desc"
	else
		ktap_fail "$desc"
		[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# /'
	fi
}

# ktap_expect_fail DESC ERRTEXT CMD...: CMD must fail with ERRTEXT in its
# error output.
ktap_expect_fail() {
	local desc=$1 want=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		ktap_fail "$desc (unexpectedly succeeded)"
	elif printf '%s' "$out" | grep -q -- "$want"; then
		ktap_ok "$desc"
	else
		ktap_fail "$desc (wanted '$want')"
		printf '%s\n' "$out" | sed 's/^/# /'
	fi
}

ktap_finish() {
	if [ "$KTAP_N" -ne "$KTAP_PLAN" ]; then
		echo "# planned $KTAP_PLAN tests, ran $KTAP_N"
		exit 1
	fi
	[ "$KTAP_FAIL" -eq 0 ]
	exit $?
}

# Messages the kernel logged since the mark set by dmesg_mark.
# The mark is a unique line written into the kernel log: counting lines
# fails once the log buffer is full (old lines drop as new ones come, the
# count stays the same and new lines were skipped).
dmesg_mark() {
	DMESG_MARK="snapguard-selftest-mark-$$-$RANDOM$RANDOM-$(date +%s%N)"
	echo "$DMESG_MARK" >/dev/kmsg
}
dmesg_since() { dmesg | sed -n "/$DMESG_MARK/,\$p" | tail -n +2; }
# not CMD...: succeeds when CMD fails (for ktap_check).
not() { ! "$@"; }
# dmesg_has [grep options] PATTERN: the kernel logged PATTERN since the mark.
dmesg_has() { dmesg_since | grep -q "$@"; }

# ktap_pool_check META [WHAT]: `snapguard pool check` of a pool's metadata
# device (after the pool was removed) as one TAP line, "snapguard pool
# check: WHAT" (default: the metadata is clean); skipped when the CLI is
# not in the guest (tools/vm.py copies it if it was built).
ktap_pool_check() {
	local what="snapguard pool check: ${2:-the metadata is clean}"
	if command -v snapguard >/dev/null; then
		ktap_check "$what" snapguard pool check "$1"
	else
		ktap_skip "$what" "snapguard CLI not built (cargo build -p snapguard)"
	fi
}
