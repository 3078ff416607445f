# SPDX-License-Identifier: GPL-2.0
# The kernel series snapguard supports, and the default one. Sourced by
# tools/setup-host.sh, tools/kernel-build.sh and the Makefile (through
# `tools/kernel/series.sh --print`). See Documentation/testing.rst,
# "Adding a kernel series".
#
# Default 7.3: Debian's trixie-backports already carries it (and its
# `linux-source` meta package points at it), and sid moves on from 7.2
# first; 7.3 is the series a fresh machine is most likely to still be able
# to download next month. 7.2 stays supported (sid, trixie-backports).
SNAPGUARD_SERIES_SUPPORTED="7.2 7.3"
SNAPGUARD_SERIES_DEFAULT="7.3"
# Debian suites searched for linux-source-<series>, in order; every one is
# added as an apt source with a low pin priority (never used for upgrades).
SNAPGUARD_SOURCE_SUITES="sid trixie-backports"

if [ "${1:-}" = "--print" ]; then
	case "${2:-}" in
	default) echo "$SNAPGUARD_SERIES_DEFAULT" ;;
	supported) echo "$SNAPGUARD_SERIES_SUPPORTED" ;;
	*) echo "usage: series.sh --print default|supported" >&2; exit 2 ;;
	esac
fi
