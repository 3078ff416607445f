#!/usr/bin/env bash
# Install every host package and tool snapguard's build and tests need.
# Idempotent: a second run only checks. Runs as root (or via sudo) on Debian 12.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

BINDGEN_VERSION=0.72.1
STAMP_DIR="${SNAPGUARD_CACHE:-$HOME/.cache/snapguard}"
mkdir -p "$STAMP_DIR"

pkgs=(
  # kernel build
  bc bison flex libelf-dev libssl-dev cpio kmod xz-utils make gcc
  clang-19 lld-19 llvm-19 libclang-19-dev
  # guest userspace and fixtures
  qemu-system-x86 busybox-static util-linux mount dmsetup fio
  ntfs-3g dosfstools exfatprogs e2fsprogs fdisk libc6-dev
  # misc
  python3 file
)

# Debian's linux-source-7.2 is only in sid / trixie-backports. Add sid with
# a low pin priority so nothing else is pulled from it by accident.
if [ ! -f /etc/apt/sources.list.d/snapguard-sid.sources ]; then
  $SUDO tee /etc/apt/sources.list.d/snapguard-sid.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO tee /etc/apt/preferences.d/snapguard-sid.pref >/dev/null <<'PIN'
Package: *
Pin: release a=unstable
Pin-Priority: 100
PIN
  rm -f "$STAMP_DIR/apt-updated"
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Kernel source: download the .deb from sid and unpack it (installing it
# would drag sid dependencies in).
if ! ls "$STAMP_DIR"/linux-source-7.2*.tar.xz >/dev/null 2>&1; then
  echo "setup-host: fetching linux-source-7.2"
  tmp=$(mktemp -d)
  ( cd "$tmp" && apt-get download linux-source-7.2 >/dev/null ) || {
    $SUDO apt-get update -qq; ( cd "$tmp" && apt-get download linux-source-7.2 ); }
  dpkg-deb -x "$tmp"/linux-source-7.2_*.deb "$tmp/x"
  mv "$tmp"/x/usr/src/linux-source-7.2.tar.xz "$STAMP_DIR/linux-source-7.2-$(dpkg-deb -f "$tmp"/linux-source-7.2_*.deb Version).tar.xz"
  rm -rf "$tmp"
fi

# Rust pieces the kernel build needs.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src
fi
if ! command -v bindgen >/dev/null || ! bindgen --version | grep -q " $BINDGEN_VERSION"; then
  cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked
fi
echo "setup-host: ok"
