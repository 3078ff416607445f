#!/usr/bin/env bash
# Throwaway test of tools/setup-host.sh's kernel source search: pin sid's
# linux-source-<series> away (priority -1, as if sid had dropped it), fetch
# into a temporary cache, and require that another suite supplied it.
# Needs root and the package registry; downloads one linux-source .deb.
#   tools/test-kernel-source.sh [SERIES]     (default 7.2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
series=${1:-7.2}
pin=/etc/apt/preferences.d/zz-snapguard-test-no-sid-source
cache=$(mktemp -d)
trap 'rm -f "$pin"; rm -rf "$cache"' EXIT
cat > "$pin" <<PIN
Package: linux-source-$series
Pin: release a=unstable
Pin-Priority: -1
PIN
echo "test-kernel-source: sid's linux-source-$series pinned to -1"
apt-cache policy "linux-source-$series" | sed -n '/Version table/,$p' | head -n 6
SNAPGUARD_CACHE="$cache" KERNEL_SERIES="$series" "$here/setup-host.sh"
got=$(ls "$cache"/linux-source-"$series"-*.tar.xz)
echo "test-kernel-source: got $(basename "$got")"
case "$got" in
*bpo*) echo "test-kernel-source: ok (not from sid)" ;;
*) echo "test-kernel-source: FAILED: expected a trixie-backports version" >&2; exit 1 ;;
esac
tar -tJf "$got" | head -n 1 >/dev/null
