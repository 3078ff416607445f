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

# Kernel series: KERNEL_SERIES (default in tools/kernel/series.sh).
. "$(dirname "$0")/kernel/series.sh"
SERIES="${KERNEL_SERIES:-$SNAPGUARD_SERIES_DEFAULT}"
case " $SNAPGUARD_SERIES_SUPPORTED " in
*" $SERIES "*) ;;
*) echo "setup-host: kernel series '$SERIES' is not supported (supported: $SNAPGUARD_SERIES_SUPPORTED)" >&2; exit 2 ;;
esac

# Debian's linux-source-7.x packages are only in sid and trixie-backports.
# Add them with a low pin priority so nothing else is pulled from them by
# accident (the source package is downloaded and unpacked, never installed).
src_list=/etc/apt/sources.list.d/snapguard-sid.sources
want_src="Types: deb
URIs: http://deb.debian.org/debian
Suites: $SNAPGUARD_SOURCE_SUITES
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
if [ "$(cat "$src_list" 2>/dev/null)" != "$want_src" ]; then
  echo "$want_src" | $SUDO tee "$src_list" >/dev/null
  pins=""
  for s in $SNAPGUARD_SOURCE_SUITES; do
    pins+="Package: *
Pin: release n=$s
Pin-Priority: 100

"
  done
  # sid's codename is "sid"; its archive name "unstable" pinned too.
  pins+="Package: *
Pin: release a=unstable
Pin-Priority: 100
"
  echo "$pins" | $SUDO tee /etc/apt/preferences.d/snapguard-sid.pref >/dev/null
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

# Kernel source: the newest linux-source-$SERIES that apt may use (pins
# honoured: a version pinned below 0 is skipped), from whichever suite has
# it; the .deb is downloaded and unpacked, not installed (that would drag
# sid dependencies in). Cached tarballs are reused without asking apt.
candidates() {
  # `apt-cache policy` lists the version table newest first, each version
  # line as "<version> <pin priority>".
  apt-cache policy "linux-source-$SERIES" 2>/dev/null |
    sed -n '/Version table:/,$p' |
    sed -n 's/^[ *]*\([0-9][^ ]*\) \(-\?[0-9]\+\)$/\1 \2/p' |
    awk '$2 >= 0 { print $1 }'
}
if ! ls "$STAMP_DIR"/linux-source-"$SERIES"-*.tar.xz >/dev/null 2>&1; then
  echo "setup-host: fetching linux-source-$SERIES"
  vers=$(candidates)
  if [ -z "$vers" ] || [ ! -f "$STAMP_DIR/apt-updated" ]; then
    $SUDO apt-get update -qq && touch "$STAMP_DIR/apt-updated"
    vers=$(candidates)
  fi
  got=""
  tried=""
  tmp=$(mktemp -d)
  for v in $vers; do
    tried+=" $v"
    if ( cd "$tmp" && apt-get download "linux-source-$SERIES=$v" >/dev/null 2>&1 ); then
      got=$v; break
    fi
  done
  if [ -z "$got" ]; then
    rm -rf "$tmp"
    {
      echo "setup-host: no linux-source-$SERIES could be downloaded."
      echo "  suites searched: $SNAPGUARD_SOURCE_SUITES (apt source $src_list)"
      echo "  versions tried:${tried:- none listed (or all pinned below 0)}"
      echo "  pick another series with KERNEL_SERIES=<one of: $SNAPGUARD_SERIES_SUPPORTED>,"
      echo "  or put a linux-source-$SERIES-<version>.tar.xz into $STAMP_DIR."
    } >&2
    exit 1
  fi
  deb=$(ls "$tmp"/linux-source-"$SERIES"_*.deb)
  dpkg-deb -x "$deb" "$tmp/x"
  mv "$tmp/x/usr/src/linux-source-$SERIES.tar.xz" "$STAMP_DIR/linux-source-$SERIES-$got.tar.xz"
  rm -rf "$tmp"
  echo "setup-host: cached linux-source-$SERIES $got"
fi

# Rust pieces the kernel build needs.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src
fi
if ! command -v bindgen >/dev/null || ! bindgen --version | grep -q " $BINDGEN_VERSION"; then
  cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked
fi
echo "setup-host: ok"
