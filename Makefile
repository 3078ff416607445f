# SPDX-License-Identifier: GPL-2.0
# snapguard top-level Makefile.
#
#   make            build snapguard.ko (against KDIR, default: the project-
#                   managed kernel, built and cached on first use)
#   make check      the full test suite (what CI runs)
#   make demo       the try-it demo: a hibernated NTFS image is refused
#   make demo-target  the snapshot target's try-it: pool, volume, snapshot
#   make run        boot a QEMU guest with snapguard loaded; CMD="..." runs
#                   a command instead of a shell
#   make fuzz       run the fuzz targets (FUZZ_SECONDS per target)
#   make bench      run the userspace benchmarks
#   make bench-target  the snapshot target against the raw disk and dm-thin
#                   in a QEMU guest (fio; BENCH_SECONDS per run); prints a
#                   table of figures, ratios and the issue's goals
#   make bench-target-device  the same with fixed-latency null data disks
#                   (BENCH_DEVICE_LATENCY_US): device-bound figures
#   make modules_install   install snapguard.ko into KDIR's module dir
#   make check-debug  the selftests on the debug kernel flavor (KASAN,
#                   lockdep, UBSAN, kmemleak...); fails on any splat; not CI
#   make check-all-kernels the module build and selftests on every supported
#                   kernel series (tools/kernel/series.sh); not run by CI
#
# KERNEL_SERIES=7.2 (or any supported series) selects the project-managed
# kernel's series; the default is set in tools/kernel/series.sh.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib

# KDIR: a configured and built Rust-enabled kernel tree. Empty means "the
# project-managed kernel": tools/kernel-build.sh prints its (cached) path.
KDIR ?=
FUZZ_SECONDS ?= 60
BENCH_CYCLES ?= 20
BENCH_ROUNDS ?= 5
# make bench-target: seconds per fio run, volume size, CoW writes, rounds
# per figure (the best is kept), size of each scratch disk.
BENCH_SECONDS ?= 10
BENCH_VOLUME_MIB ?= 128
BENCH_COW_OPS ?= 1024
BENCH_TARGET_ROUNDS ?= 3
BENCH_DISK_MIB ?= 512
# make bench-target-device: the latency of the null data disks (us).
BENCH_DEVICE_LATENCY_US ?= 20000

KDIR_CMD = $(if $(KDIR),echo $(KDIR),tools/kernel-build.sh)
ifneq ($(KERNEL_SERIES),)
export KERNEL_SERIES
endif
SUPPORTED_SERIES := $(shell tools/kernel/series.sh --print supported)

.PHONY: all module module-clippy kernel setup check test-host lint selftests \
	run demo demo-target cli fuzz bench bench-host bench-mount modules_install clean bench-target bench-target-device \
	check-all-kernels check-debug

all: module

setup:
	tools/setup-host.sh

kernel: setup
	tools/kernel-build.sh

module: setup
	@kdir=$$($(KDIR_CMD)) && $(MAKE) -C $$kdir M=$(CURDIR) modules

# The same build through clippy (the kernel's CLIPPY=1), warnings are errors.
module-clippy: setup
	@kdir=$$($(KDIR_CMD)) && touch rust/snapguard_mod.rs && \
	  $(MAKE) -C $$kdir M=$(CURDIR) CLIPPY=1 modules && touch rust/snapguard_mod.rs

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test-host:
	cargo test --workspace --locked
	python3 selftests/replay_log.py selftest >/dev/null

selftests: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py test --kdir $$kdir

check: setup lint test-host module-clippy module selftests

# Every supported kernel series, one after the other: the project-managed
# kernel of each (built and cached on first use), a clean module build
# against it (warnings are errors, clippy too) and the guest selftests.
check-all-kernels: setup
	@set -e; for s in $(SUPPORTED_SERIES); do \
	  echo "=== kernel series $$s"; \
	  KERNEL_SERIES=$$s tools/setup-host.sh >/dev/null; \
	  kdir=$$(KERNEL_SERIES=$$s tools/kernel-build.sh); \
	  $(MAKE) -C $$kdir M=$(CURDIR) clean >/dev/null; \
	  $(MAKE) KDIR=$$kdir module-clippy module selftests 2>&1 | tee /tmp/sg-check-$$s.log | tail -n 3; \
	  grep -q '^[0-9]* passed, 0 failed' /tmp/sg-check-$$s.log || { echo "=== $$s failed"; exit 1; }; \
	  $(MAKE) -C $$kdir M=$(CURDIR) clean >/dev/null; \
	done; echo "=== all supported series passed: $(SUPPORTED_SERIES)"

# The debug kernel flavor (tools/kernel/debug.config): every selftest, and
# the runner fails on any KASAN/lockdep/UBSAN/kmemleak report, BUG or
# WARNING. Run it before resolving anything that touches kernel code.
# It is built with clang (LLVM=-19: KASAN and Rust need a clang-built
# kernel), so the module is too. The CLI is built first: without it the
# checks that need it (pool check, crafted images, replay) are skipped.
check-debug: setup cli
	@kdir=$$(SNAPGUARD_KFLAVOR=debug tools/kernel-build.sh) && \
	  $(MAKE) -C $$kdir M=$(CURDIR) LLVM=-19 clean >/dev/null && \
	  $(MAKE) -C $$kdir M=$(CURDIR) LLVM=-19 modules && \
	  tools/vm.py test --kdir $$kdir --debug; rc=$$?; \
	  $(MAKE) -C $$kdir M=$(CURDIR) LLVM=-19 clean >/dev/null; exit $$rc

run: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir $(if $(CMD),--cmd "$(CMD)")

# The README's "try it": a hibernated NTFS image refused, then allowed once.
demo: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir --cmd /selftests/demo.sh

# The README's "try it" for the snapshot target: a pool, a volume, a
# snapshot of the mounted volume and the status lines (with the `snapguard`
# tool in the guest for `snapguard pool check`).
demo-target: module cli
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir --cmd /selftests/demo_target.sh

cli:
	cargo build --release --locked -p snapguard

fuzz:
	tools/fuzz.sh $(FUZZ_SECONDS)

bench: bench-host bench-mount

bench-host:
	cargo run --release --locked -p snapguard-hibernate --example probe_bench
	cargo run --release --locked -p snapguard-pool --example pool_bench

# Mount time with the guard loaded vs not, in the QEMU guest.
bench-mount: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir --cmd "/selftests/bench_mount.sh $(BENCH_CYCLES) $(BENCH_ROUNDS)"

# The snapshot target against the raw disk and dm-thin, in one QEMU guest
# (Documentation/testing.rst, "Target benchmark").
bench-target: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir --disks 5 --disk-mib $(BENCH_DISK_MIB) \
	  --cmd "/selftests/bench_target.sh $(BENCH_SECONDS) $(BENCH_VOLUME_MIB) $(BENCH_COW_OPS) $(BENCH_TARGET_ROUNDS)"

# The same with the raw disk and the pools' data disks as fixed-latency
# null devices: device-bound figures (selftests/bench_target.sh).
bench-target-device: module
	@kdir=$$($(KDIR_CMD)) && tools/vm.py run --kdir $$kdir --disks 5 --disk-mib $(BENCH_DISK_MIB) \
	  --null-disks 0,1,3 --null-latency-us $(BENCH_DEVICE_LATENCY_US) \
	  --cmd "/selftests/bench_target.sh $(BENCH_SECONDS) $(BENCH_VOLUME_MIB) $(BENCH_COW_OPS) $(BENCH_TARGET_ROUNDS) $(BENCH_DEVICE_LATENCY_US)"

modules_install: module
	@kdir=$$($(KDIR_CMD)) && $(MAKE) -C $$kdir M=$(CURDIR) modules_install

clean:
	@if [ -n "$(KDIR)" ]; then $(MAKE) -C $(KDIR) M=$(CURDIR) clean; fi
	rm -f rust/*.o rust/.*.cmd rust/*/*.o rust/*/.*.cmd rust/kbind/bindings_generated.rs *.o .*.cmd *.ko *.mod *.mod.c \
	  modules.order Module.symvers
	cargo clean
