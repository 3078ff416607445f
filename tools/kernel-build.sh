#!/usr/bin/env bash
# Build the project-managed Rust-enabled test kernel into a cache outside the
# git tree, keyed by kernel version + config inputs + toolchain versions.
# Prints the build directory (usable as KDIR) on its last line.
# A second run with the same inputs does nothing.
#
# KERNEL_SERIES picks the series (tools/kernel/series.sh). SNAPGUARD_KFLAVOR
# picks the flavor: empty for the test kernel, "debug" for the same kernel
# plus tools/kernel/debug.config (KASAN, lockdep, UBSAN, kmemleak, fault
# injection: `make check-debug`). The flavors share the tarball and the
# unpacked source tree; each has its own output directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
CACHE="${SNAPGUARD_CACHE:-$HOME/.cache/snapguard}"
export LIBCLANG_PATH="${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}"
export PATH="$HOME/.cargo/bin:$PATH"

. "$here/kernel/series.sh"
SERIES="${KERNEL_SERIES:-$SNAPGUARD_SERIES_DEFAULT}"
export KERNEL_SERIES="$SERIES"
newest() { ls "$CACHE"/linux-source-"$SERIES"-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true; }
tarball=$(newest)
if [ -z "$tarball" ]; then
  "$here/setup-host.sh" >&2
  tarball=$(newest)
fi
[ -n "$tarball" ] || { echo "kernel-build: no linux-source-$SERIES tarball in $CACHE" >&2; exit 1; }
version=$(basename "$tarball" .tar.xz); version=${version#linux-source-"$SERIES"-}

FLAVOR="${SNAPGUARD_KFLAVOR:-}"
fragments=("$here/kernel/snapguard.config" "$repo/selftests/config")
case "$FLAVOR" in
"") ;;
debug) fragments+=("$here/kernel/debug.config") ;;  # built with clang, see below
*) echo "kernel-build: unknown flavor '$FLAVOR' (known: debug)" >&2; exit 2 ;;
esac

key=$( { echo "$SERIES $version${FLAVOR:+ $FLAVOR}"; cat "${fragments[@]}";
         rustc --version; bindgen --version; gcc --version | head -n1;
         [ -z "$FLAVOR" ] || clang-19 --version | head -n1; } | sha256sum | cut -c1-16)
src="$CACHE/src-$version"
out="$CACHE/kbuild-$version${FLAVOR:+-$FLAVOR}-$key"

if [ -f "$out/.snapguard-built" ]; then
  echo "$out"; exit 0
fi

if [ ! -f "$src/.snapguard-unpacked" ]; then
  echo "kernel-build: unpacking $tarball" >&2
  rm -rf "$src" "$src.tmp"; mkdir -p "$src.tmp"
  tar -xf "$tarball" -C "$src.tmp" --strip-components=1
  touch "$src.tmp/.snapguard-unpacked"; mv "$src.tmp" "$src"
fi

mkdir -p "$out"
jobs=$(( $(nproc) + 1 ))
# The test kernel is built with GCC. The debug flavor needs clang: Rust
# and KASAN go together only on a clang-built kernel (init/Kconfig: RUST
# depends on !KASAN || CC_IS_CLANG); modules for it are built with the
# same LLVM=-19 (Makefile, check-debug).
if [ -n "$FLAVOR" ]; then
  kmake() { make -C "$src" O="$out" LLVM=-19 -j"$jobs" "$@"; }
else
  kmake() { make -C "$src" O="$out" LLVM= CC=gcc -j"$jobs" "$@"; }
fi
start=$(date +%s)
kmake -s defconfig >&2
kmake -s kvm_guest.config >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >&2
kmake -s olddefconfig >&2
# Refuse a config that silently lost what the tests need.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=[ym]) ;; *) continue ;; esac
  grep -qx "$line" "$out/.config" || { echo "kernel-build: $line did not stick" >&2; missing=1; }
done < <(cat "${fragments[@]:1}")
[ $missing -eq 0 ] || { echo "kernel-build: run 'make -C $src O=$out rustavailable'" >&2; exit 1; }
kmake -s bzImage modules >&2
# Install the kernel's own modules into a staging dir for the guest.
rm -rf "$out/modroot"
kmake -s INSTALL_MOD_PATH="$out/modroot" modules_install >&2
echo "kernel-build: built $version in $(( $(date +%s) - start )) s" >&2
echo "$(( $(date +%s) - start ))" > "$out/.snapguard-build-seconds"
touch "$out/.snapguard-built"
echo "$out"
