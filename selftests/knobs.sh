#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# sysfs knobs: read, write, validation (a bad write returns EINVAL and
# changes nothing), read-only files refuse writes.
. "$(dirname "$0")/lib.sh"
ktap_plan 9

modprobe snapguard
K=/sys/kernel/snapguard
M=$K/guard/mode

ktap_check "mode defaults to enforce" grep -qx 'enforce audit off' <(tr -d '[]' <$M)
ktap_check "mode shows the current choice in brackets" grep -qx '\[enforce\] audit off' $M
ktap_check "write 'audit' (with newline)" sh -c "echo audit > $M"
ktap_check "mode reads back audit" grep -qx 'enforce \[audit\] off' $M
ktap_check "write 'off' (no newline)" sh -c "printf off > $M"
ktap_expect_fail "bad value is rejected with EINVAL" "Invalid argument" sh -c "echo bogus > $M"
ktap_check "bad value changed nothing" grep -qx 'enforce audit \[off\]' $M
ktap_expect_fail "trailing garbage is rejected" "Invalid argument" bash -c "echo 'enforce x' > $M"
ktap_expect_fail "version is read-only" "denied" sh -c "echo 9 > $K/version"
echo enforce > $M
ktap_finish
