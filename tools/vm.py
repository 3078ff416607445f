#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the project kernel in QEMU with snapguard installed.

  vm.py test --kdir DIR [--only PROG ...]   run the selftests, print TAP and
                                            a final "N passed, M failed" line
  vm.py run  --kdir DIR [--cmd CMD]         interactive shell, or run CMD

The guest's root file system is an initramfs assembled from this host's own
binaries and their shared libraries (util-linux, kmod, dmsetup, mkfs tools,
ntfs-3g, fio, bash) plus busybox for the rest, the kernel's modules and
snapguard.ko installed with depmod. A selftest marked "# vm.py: crash-pair"
runs over two boots on the same disks (crash_pair()). See
Documentation/testing.rst.
"""

import argparse
import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SNAPGUARD_CACHE", os.path.expanduser("~/.cache/snapguard"))

# Host programs copied into the guest, with their libraries.
HOST_PROGS = [
    "bash", "mount", "umount", "losetup", "blkid", "blockdev", "findmnt",
    "wipefs", "sfdisk", "setpriv", "flock", "unshare", "nsenter",
    "kmod", "dmsetup", "mkfs.vfat", "mkfs.fat", "fsck.fat", "fatlabel",
    "mkfs.exfat", "fsck.exfat", "mkntfs", "ntfs-3g", "ntfscp", "ntfsinfo",
    "ntfsfix", "mkswap", "swapon", "swapoff", "mke2fs", "mkfs.ext4",
    "e2fsck", "fio", "sha256sum", "cmp", "timeout", "stat", "dd", "truncate",
    "sync", "sed", "grep", "seq", "tr", "wc", "head", "tail", "sort", "cat",
    "od", "xxd", "md5sum", "cut", "date", "resize2fs", "dumpe2fs", "filefrag",
]
KMOD_LINKS = ["modprobe", "depmod", "insmod", "rmmod", "lsmod", "modinfo"]
# Guest test helpers built from selftests/*.c (static, with the host gcc).

# Console lines that mean the kernel complained.
BAD_CONSOLE = re.compile(r"BUG:|Oops|WARNING:|Kernel panic|panic\b.*not syncing|"
                         r"general protection fault|Call Trace:|"
                         # the debug flavor's detectors (make check-debug)
                         r"KASAN:|UBSAN:|possible circular locking|possible recursive locking|"
                         r"inconsistent lock state|suspicious RCU usage|ODEBUG:|"
                         r"unreferenced object|INFO: task .* blocked")


def log(msg):
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def which(prog):
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        p = os.path.join(d, prog)
        if os.path.exists(p):
            return p
    return shutil.which(prog)


def host_python():
    """The python3 copied into the guest, as (real path of the executable,
    its standard library directory), both asked of that one interpreter."""
    py = which("python3")
    if not py:
        sys.exit("vm: host program python3 is missing (run tools/setup-host.sh)")
    out = subprocess.run([py, "-c", "import os, sys; print(os.path.realpath(sys.executable)); "
                          "print(os.path.dirname(os.__file__))"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    exe, lib = out[0].strip(), out[1].strip()
    if not (os.path.isfile(exe) and os.path.isfile(os.path.join(lib, "os.py"))):
        sys.exit(f"vm: {py} reports executable {exe!r} and library {lib!r}, not usable")
    return exe, lib


def libs_of(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line)
        if m and os.path.exists(m.group(1)):
            libs.append(m.group(1))
    return libs


def copy_into(root, path):
    """Copy host file `path` (resolving symlinks) to the same place in root."""
    dst = os.path.join(root, path.lstrip("/"))
    if os.path.exists(dst):
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(os.path.realpath(path), dst)


def kernel_release(kdir):
    with open(os.path.join(kdir, "include/config/kernel.release")) as f:
        return f.read().strip()


INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
/bin/busybox mkdir -p /dev/pts /dev/shm
/bin/busybox mount -t devpts devpts /dev/pts
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
ln -sf /proc/mounts /etc/mtab
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /etc; touch /etc/fstab
hostname snapguard-guest
echo 4 > /proc/sys/kernel/printk
# The read-only fixture disk (see fixture_disk() in tools/vm.py).
for b in /sys/block/vd*; do
	if [ "$(cat $b/serial 2>/dev/null)" = sgfixtures ]; then
		mkdir -p /fixtures && mount -t ext4 -o ro /dev/${b##*/} /fixtures
	fi
done
mode=$(sed -n 's/.*sgmode=\([a-z]*\).*/\1/p' /proc/cmdline)
# Crash pairs (see crash_pair() in tools/vm.py): the boot's phase, 1 or 2.
SG_CRASH_PHASE=$(sed -n 's/.*sgphase=\([0-9]*\).*/\1/p' /proc/cmdline)
export SG_CRASH_PHASE
case "$mode" in
test)
	exec >/dev/ttyS1 2>&1
	# Debug kernel (make check-debug): forget what kmemleak saw before the
	# tests, so that only what leaked while they ran is reported.
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	leak=/sys/kernel/debug/kmemleak
	[ -w $leak ] && echo clear > $leak
	/selftests/run_kselftest.sh $(cat /selftests/only 2>/dev/null)
	echo "vm-guest: selftests finished rc=$?"
	if [ -w $leak ]; then
		# Two scans: an object is reported once it stayed unreferenced
		# across a scan. Reports go to the console, where the runner
		# counts them like any other splat.
		echo scan > $leak; sleep 6; echo scan > $leak
		cat $leak > /dev/ttyS0
		echo "vm-guest: kmemleak scanned: $(grep -c 'unreferenced object' $leak) report(s)"
	fi
	sync
	;;
cmd)
	modprobe snapguard
	echo 7 > /proc/sys/kernel/printk
	/bin/bash -c "$(cat /run.cmd)"
	echo "vm-guest: command finished rc=$?"
	;;
*)
	modprobe snapguard
	echo "snapguard guest: /selftests has the tests; 'poweroff -f' leaves."
	setsid cttyhack /bin/bash -l
	;;
esac
poweroff -f
"""


def build_initramfs(kdir, out, mode, cmd=None, only=None, timeout_scale=1):
    rel = kernel_release(kdir)
    ko = os.path.join(REPO, "snapguard.ko")
    if not os.path.exists(ko):
        sys.exit("vm: snapguard.ko is not built (run make)")
    root = tempfile.mkdtemp(prefix="sg-root-", dir=os.path.dirname(out))
    try:
        # A merged-/usr layout like the host's (Debian 12).
        for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "root"]:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        for d in ["bin", "sbin", "lib", "lib64"]:
            os.symlink(f"usr/{d}", os.path.join(root, d))
        shutil.copy2("/bin/busybox", os.path.join(root, "usr/bin/busybox"))
        progs = set()
        for p in HOST_PROGS:
            path = which(p)
            if not path:
                sys.exit(f"vm: host program {p} is missing (run tools/setup-host.sh)")
            progs.add(path)
        for path in sorted(progs):
            copy_into(root, path)
            for lib in libs_of(os.path.realpath(path)):
                copy_into(root, lib)
        # python3 (for test helpers written in python) and the standard
        # library of that same interpreter: asking another one (the first
        # python3 on PATH, e.g. pyenv's) would copy a library that the
        # copied binary does not look for.
        py_exe, py_lib = host_python()
        copy_into(root, py_exe)
        for lib in libs_of(py_exe):
            copy_into(root, lib)
        shutil.copytree(py_lib, os.path.join(root, py_lib.lstrip("/")), symlinks=True,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("test", "tests", "idlelib", "tkinter",
                                                      "ensurepip", "__pycache__", "lib2to3",
                                                      "site-packages", "dist-packages"))
        # The project's own CLI, if built (`cargo build -p snapguard
        # --release`): selftests run `snapguard pool check` with it and
        # skip that check without it.
        # The newer of the release and debug builds: a stale one would
        # lack what the tests use (`pool craft` for target_crafted.sh).
        clis = [os.path.join(REPO, c) for c in ("target/release/snapguard", "target/debug/snapguard")]
        clis = sorted((c for c in clis if os.path.exists(c)), key=os.path.getmtime, reverse=True)
        for cli in clis[:1]:
            shutil.copy2(cli, os.path.join(root, "usr/bin/snapguard"))
            for lib in libs_of(cli):
                copy_into(root, lib)
        if py_exe != "/usr/bin/python3":
            os.symlink(py_exe, os.path.join(root, "usr/bin/python3"))
        kmod = os.path.join(root, "usr/bin/kmod")
        for link in KMOD_LINKS:
            os.symlink("/usr/bin/kmod", os.path.join(root, "usr/sbin", link))
        os.symlink("/usr/bin/ntfs-3g", os.path.join(root, "usr/sbin/mount.ntfs-3g"))
        assert os.path.exists(kmod)
        # Kernel modules, then ours under extra/, then depmod.
        moddir = os.path.join(root, "lib/modules", rel)
        src_mods = os.path.join(kdir, "modroot/lib/modules", rel)
        if os.path.isdir(src_mods):
            shutil.copytree(src_mods, moddir, symlinks=True,
                            ignore=shutil.ignore_patterns("build", "source"))
        os.makedirs(os.path.join(moddir, "extra"), exist_ok=True)
        shutil.copy2(ko, os.path.join(moddir, "extra/snapguard.ko"))
        subprocess.run(["depmod", "-b", root, rel], check=True)
        # Tests, fixtures and helpers.
        shutil.copytree(os.path.join(REPO, "selftests"), os.path.join(root, "selftests"))
        # The pool fuzz target's regression corpus (its finds, ~56 KiB),
        # decoded into images by `snapguard pool craft` in
        # target_crafted.sh (which adds the seeds the pool core builds).
        shutil.copytree(os.path.join(REPO, "crates/snapguard-pool/tests/corpus"),
                        os.path.join(root, "selftests/pool-corpus"))
        if os.path.isdir(os.path.join(REPO, "tools/fixtures")):
            shutil.copytree(os.path.join(REPO, "tools/fixtures"),
                            os.path.join(root, "selftests/fixtures"))
        for c in sorted(os.listdir(os.path.join(REPO, "selftests"))):
            if c.endswith(".c"):
                exe = os.path.join(root, "selftests", c[:-2])
                subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", exe,
                                os.path.join(REPO, "selftests", c)], check=True)
        if timeout_scale != 1:
            # run_kselftest.sh multiplies each program's timeout by this.
            with open(os.path.join(root, "selftests/timeout_scale"), "w") as f:
                f.write(f"{timeout_scale}\n")
        if only:
            with open(os.path.join(root, "selftests/only"), "w") as f:
                f.write(" ".join(only))
        with open(os.path.join(root, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/sh\n")
        with open(os.path.join(root, "etc/group"), "w") as f:
            f.write("root:x:0:\nnogroup:x:65534:\n")
        if cmd is not None:
            with open(os.path.join(root, "run.cmd"), "w") as f:
                f.write(cmd + "\n")
        with open(os.path.join(root, "init"), "w") as f:
            f.write(INIT)
        os.chmod(os.path.join(root, "init"), 0o755)
        with open(out, "wb") as f:
            find = subprocess.Popen(["find", "."], cwd=root, stdout=subprocess.PIPE)
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                           stdin=find.stdout, stdout=f, check=True)
            find.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def accel():
    """TCG unless SNAPGUARD_ACCEL says otherwise: KVM guests hang on these
    machines (see Documentation/testing.rst), and a probe costs a boot."""
    return os.environ.get("SNAPGUARD_ACCEL", "tcg")


def qemu_cmd(kdir, initrd, disks, mode, console_log, phase=None, null=None):
    """`null`: (indexes, latency_us, size_mib) to attach those scratch
    disks as QEMU's null-co driver instead of their files: every request
    completes after a fixed latency, reads return zeroes, writes are
    dropped (a device-bound disk for `make bench-target-device`)."""
    # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
    # check can see too few ticks and panic ("IO-APIC + timer doesn't
    # work!"); KVM guests skip that check for the same reason.
    # no5lvl: with "-cpu max" the CPU has LA57 and the kernel would use
    # 5-level paging, whose pgtable_l5_enabled() reads the boot CPU's
    # feature bits; identify_cpu() clears them for a moment at boot, and an
    # interrupt in that window saw 4-level addresses (the debug kernel's
    # "BUG: KASAN: wild-memory-access in do_raw_spin_lock" from
    # handle_edge_irq during identify_cpu, at 0.004 s).
    append = f"console=ttyS0 panic=-1 rdinit=/init sgmode={mode} loglevel=4 no_timer_check no5lvl"
    if phase:
        append += f" sgphase={phase}"
    acc = accel()
    if acc == "tcg":
        # One host thread for both vCPUs: with multi-threaded TCG, a vCPU
        # could run a stale translation of code that another vCPU was
        # patching (the kernel's int3-based text_poke), seen as "Oops: int3"
        # at boot. The guest still has two CPUs (SMP paths are exercised).
        acc = "tcg,thread=single"
    cmd = ["qemu-system-x86_64", "-accel", acc, "-m", "2048", "-smp", "2",
           "-cpu", "max", "-kernel", os.path.join(kdir, "arch/x86/boot/bzImage"),
           "-initrd", initrd, "-append", append, "-no-reboot", "-display", "none",
           "-nodefaults", "-monitor", "none"]
    if mode == "shell":
        cmd += ["-serial", "mon:stdio"]
    elif mode == "cmd":
        cmd += ["-serial", "stdio"]
    else:
        cmd += ["-serial", f"file:{console_log}", "-serial", "stdio"]
    for i, d in enumerate(disks):
        if null and i in null[0]:
            cmd += ["-blockdev", f"driver=null-co,node-name=d{i},size={null[2] << 20},"
                    f"latency-ns={null[1] * 1000},read-zeroes=on"]
        else:
            cmd += ["-drive", f"file={d},format=raw,if=none,id=d{i},cache=unsafe"]
        cmd += ["-device", f"virtio-blk-pci,drive=d{i},serial=sgdisk{i}"]
    # Last, so the scratch disks stay vda, vdb, ...
    cmd += ["-drive", f"file={fixture_disk()},format=raw,if=none,id=fx,readonly=on",
            "-device", "virtio-blk-pci,drive=fx,serial=sgfixtures"]
    return cmd


def fixture_disk():
    """The hibernation-evidence fixtures (tools/fixtures/mkimages.sh, run
    here on the host with the real mkfs tools: in the TCG guest the same
    script takes ~100 s) on a small ext4 image, attached read-only to the
    guest and mounted at /fixtures. Cached by the script's hash; the images
    are sparse, so the disk costs ~50 MiB."""
    script = os.path.join(REPO, "tools/fixtures/mkimages.sh")
    finds = os.path.join(REPO, "crates/snapguard-hibernate/tests/corpus")
    h = hashlib.sha256()
    # The script, the fuzzer's finds and what shrinks the fixtures into the
    # corpus (the probe decides which blocks a shrunk image keeps).
    inputs = [script] + sorted(os.path.join(finds, n) for n in os.listdir(finds))
    for d in ("rust/shared/hibernate", "crates/snapguard-hibernate/src",
              "crates/snapguard-hibernate/examples", "crates/snapguard-hibernate/tests/common"):
        full = os.path.join(REPO, d)
        inputs += sorted(os.path.join(full, n) for n in os.listdir(full))
    for path in inputs:
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, REPO).encode() + b"\0" + f.read())
    key = h.hexdigest()[:16]
    img = os.path.join(CACHE, f"fixtures-{key}.ext4")
    if os.path.exists(img):
        os.utime(img)
        return img
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="sg-fx-", dir=CACHE)
    try:
        fx = os.path.join(tmp, "fx")
        r = subprocess.run([script, fx], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"vm: {script} failed:\n{r.stdout}{r.stderr}")
        # /fixtures/corpus for guard_corpus.sh: every fixture shrunk to the
        # blocks the probe reads (~1 MiB instead of the sparse images'
        # gigabytes), the fuzzer's finds and the expected verdicts.
        corpus = os.path.join(fx, "corpus")
        imgs = sorted(os.path.join(fx, n) for n in os.listdir(fx) if n.endswith(".img"))
        r = subprocess.run(["cargo", "run", "-q", "--locked", "-p", "snapguard-hibernate",
                            "--example", "mkcorpus", "--", corpus] + imgs,
                           cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"vm: mkcorpus failed:\n{r.stdout}{r.stderr}")
        for n in os.listdir(finds):
            shutil.copy2(os.path.join(finds, n), corpus)
        shutil.copy2(os.path.join(fx, "expect.tsv"), corpus)
        size = sum(os.path.getsize(os.path.join(fx, n)) for n in os.listdir(fx))
        part = os.path.join(tmp, "fixtures.ext4")
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal",
                        "-E", "root_owner=0:0", "-L", "sgfixtures", "-d", fx, part,
                        f"{(size >> 20) + 256}M"], check=True)
        os.replace(part, img)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Drop fixture disks of other script versions once unused for a day (a
    # second checkout or worktree may still be using its own version).
    for old in os.listdir(CACHE):
        path = os.path.join(CACHE, old)
        if (old.startswith("fixtures-") and old != os.path.basename(img)
                and time.time() - os.path.getmtime(path) > 86400):
            os.unlink(path)
    log(f"fixture disk built in {time.time() - t0:.1f}s")
    return img


def make_disks(workdir, n, size_mib):
    disks = []
    for i in range(n):
        p = os.path.join(workdir, f"disk{i}.img")
        with open(p, "wb") as f:
            f.truncate(size_mib << 20)
        disks.append(p)
    return disks


def parse_tap(lines):
    """Count leaf results: nested "# ok"/"# not ok" lines of each program,
    plus a failure for a program that failed without a failing subtest."""
    passed = failed = skipped = 0
    programs = {}
    sub_failed = 0
    for line in lines:
        m = re.match(r"^# (not ok|ok) \d+ (.*)$", line)
        if m:
            if m.group(1) == "not ok":
                failed += 1
                sub_failed += 1
            elif "# SKIP" in m.group(2):
                skipped += 1
            else:
                passed += 1
            continue
        m = re.match(r"^(not ok|ok) (\d+) selftests: snapguard: (\S+)(.*)$", line)
        if m:
            programs[m.group(3)] = m.group(1)
            if m.group(1) == "not ok" and sub_failed == 0:
                failed += 1
            sub_failed = 0
    return passed, failed, skipped, programs


CRASH_PAIR_MARK = "# vm.py: crash-pair"
PHASE1_DONE = "# crash-pair: phase 1 done"


def crash_pair(prog):
    """A selftest whose first lines hold "# vm.py: crash-pair" runs over two
    boots on the same scratch disks: phase 1 (SG_CRASH_PHASE=1 in the guest)
    writes, records what it made durable and resets the guest without a
    clean shutdown (sysrq b); phase 2 (SG_CRASH_PHASE=2) checks it."""
    path = os.path.join(REPO, "selftests", prog)
    try:
        with open(path, errors="replace") as f:
            head = [f.readline() for _ in range(5)]
    except OSError:
        return False
    return any(line.strip() == CRASH_PAIR_MARK for line in head)


def boot(args, initrd, disks, console, deadline, phase=None):
    """One guest run in test mode: streams the TAP port to stdout, returns
    (lines, timed_out)."""
    cmd = qemu_cmd(args.kdir, initrd, disks, "test", console, phase)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines, buf = [], b""
    timed_out = False
    while True:
        left = deadline - time.time()
        if left <= 0:
            timed_out = True
            proc.kill()
            break
        r, _, _ = select.select([proc.stdout], [], [], min(left, 5))
        if not r:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            lines.append(line)
            print(line, flush=True)
    proc.wait()
    return lines, timed_out


def console_complaints(console):
    text = open(console, errors="replace").read() if os.path.exists(console) else ""
    return text, [ln for ln in text.splitlines()
                  if BAD_CONSOLE.search(ln) and "Kernel command line" not in ln]


def cmd_test(args):
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sg-vm-", dir=CACHE)
    try:
        progs = args.only or re.search(r"^TEST_PROGS := (.*)$",
                                       open(os.path.join(REPO, "selftests/Makefile")).read(),
                                       re.M).group(1).split()
        pairs = [p for p in progs if crash_pair(p)]
        plain = [p for p in progs if p not in pairs]
        scale = 4 if args.debug else 1
        deadline = time.time() + args.timeout * scale
        lines, problems, consoles = [], [], []
        failed_phase1 = timed_out = False
        # Runs: (programs, phases). The plain programs share one boot; each
        # crash pair gets two boots on its own fresh disks.
        runs = ([(plain, [None])] if plain else []) + [([p], [1, 2]) for p in pairs]
        for n, (only, phases) in enumerate(runs):
            initrd = os.path.join(work, f"initramfs{n}.cpio")
            t0 = time.time()
            # With crash pairs in the list, the plain boot must not run them.
            build_initramfs(args.kdir, initrd, "test",
                            only=only if (args.only or pairs) else None,
                            timeout_scale=scale)
            log(f"initramfs built in {time.time() - t0:.1f}s")
            ddir = os.path.join(work, f"disks{n}")
            os.makedirs(ddir)
            disks = make_disks(ddir, args.disks, args.disk_mib)
            for phase in phases:
                console = os.path.join(work, f"console{n}-{phase or 0}.log")
                if phase:
                    log(f"{only[0]}: crash pair, boot {phase} of 2")
                out, timed_out = boot(args, initrd, disks, console, deadline, phase)
                lines += out
                consoles.append(console)
                if timed_out:
                    problems.append(f"guest timed out after {args.timeout * scale}s")
                    break
                # Nested once by run_kselftest.sh: "# # crash-pair: ...".
                if phase == 1 and not any(PHASE1_DONE in ln for ln in out):
                    problems.append(f"{only[0]}: phase 1 did not reach its reset")
                    failed_phase1 = True
                    break
            if timed_out:
                break
        passed, failed, skipped, programs = parse_tap(lines)
        missing = [p for p in progs if p not in programs]
        if missing:
            problems.append("no result from: " + " ".join(missing))
            failed += len(missing)
        failed += 1 if failed_phase1 else 0
        bad, console_text = [], ""
        for c in consoles:
            text, complaints = console_complaints(c)
            if complaints and not bad:
                bad, console_text = complaints, text
        if bad:
            problems.append("kernel complained on the console:")
            failed += 1
        keep = os.path.join(CACHE, "last-console.log")
        if consoles:
            with open(keep, "w") as out:
                for c in consoles:
                    if os.path.exists(c):
                        out.write(f"=== {os.path.basename(c)}\n")
                        out.write(open(c, errors="replace").read())
        for p in problems:
            print(f"# vm: {p}")
        if bad:
            ctx = console_text.splitlines()
            first = ctx.index(bad[0])
            for ln in ctx[max(0, first - 5):first + 40]:
                print(f"# console: {ln}")
        print(f"# vm: guest console saved to {keep}")
        summary = f"{passed} passed, {failed} failed"
        if skipped:
            summary += f", {skipped} skipped"
        print(summary, flush=True)
        return 1 if failed or problems else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cmd_run(args):
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sg-vm-", dir=CACHE)
    try:
        initrd = os.path.join(work, "initramfs.cpio")
        mode = "cmd" if args.cmd else "shell"
        build_initramfs(args.kdir, initrd, mode, cmd=args.cmd)
        disks = make_disks(work, args.disks, args.disk_mib)
        null = None
        if args.null_disks:
            idx = {int(x) for x in args.null_disks.split(",")}
            null = (idx, args.null_latency_us, args.disk_mib)
        cmd = qemu_cmd(args.kdir, initrd, disks, mode, None, null=null)
        log("booting (TCG); the guest powers off when done")
        return subprocess.run(cmd).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cmd_boots(args):
    """Boot the guest `--count` times (kernel + initramfs to /init, load
    snapguard, power off) and count boots whose console shows a kernel
    complaint; prints each bad boot's first lines. For harness reliability
    (Documentation/testing.rst, "Boot reliability")."""
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sg-vm-", dir=CACHE)
    try:
        initrd = os.path.join(work, "initramfs.cpio")
        build_initramfs(args.kdir, initrd, "cmd", cmd="cat /proc/cmdline")
        bad = 0
        t0 = time.time()
        for i in range(args.count):
            cmd = qemu_cmd(args.kdir, initrd, [], "cmd", None)
            r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                               stdin=subprocess.DEVNULL, timeout=300)
            lines = r.stdout.splitlines()
            complaints = [ln for ln in lines if BAD_CONSOLE.search(ln) and "Kernel command line" not in ln]
            done = any("vm-guest: command finished rc=0" in ln for ln in lines)
            if complaints or not done:
                bad += 1
                print(f"boot {i + 1}: BAD" + ("" if done else " (did not finish)"), flush=True)
                for ln in (complaints or lines[-5:])[:8]:
                    print(f"#   {ln}", flush=True)
            else:
                print(f"boot {i + 1}: ok", flush=True)
        print(f"{args.count - bad} clean boots of {args.count} in {time.time() - t0:.0f}s", flush=True)
        return 1 if bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    for name in ("test", "run", "boots"):
        p = sub.add_parser(name)
        p.add_argument("--kdir", required=True)
        p.add_argument("--disks", type=int, default=4, help="scratch virtio disks (vda..)")
        p.add_argument("--disk-mib", type=int, default=256)
        if name == "test":
            p.add_argument("--only", nargs="*", help="selftest programs to run")
            p.add_argument("--timeout", type=int, default=2400)
            p.add_argument("--debug", action="store_true",
                           help="debug kernel flavor: 4x the timeout (KASAN, lockdep are slow)")
        elif name == "run":
            p.add_argument("--cmd")
            p.add_argument("--null-disks", help="comma-separated scratch disk indexes "
                           "(0 = vda) attached as fixed-latency null devices")
            p.add_argument("--null-latency-us", type=int, default=20000,
                           help="the null devices' latency per request")
        else:
            p.add_argument("--count", type=int, default=100)
    args = ap.parse_args()
    return {"test": cmd_test, "run": cmd_run, "boots": cmd_boots}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
