#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The probe's regression corpus through the kernel: each image
# (real fixtures shrunk to the blocks the probe reads by tools/vm.py, and
# the inputs the fuzzer found, crates/snapguard-hibernate/tests/corpus; on
# the fixture disk under /fixtures/corpus) is expanded onto a loop device and mounted
# read-write with mount(2) as each guarded type (ntfs3, ntfs, vfat, msdos,
# exfat) with the guard enforcing. Checked:
#  - an image the guard refuses (EROFS, counted in guard/stats) is
#    byte-identical afterwards;
#  - the guard's decision is the same for every type (it looks at the
#    device, not at the type asked for), and for an image with a verdict in
#    the corpus's expect.tsv it is the verdict's: refused exactly when
#    hibernated, unclean or corrupt (unclean=refuse, the default);
#  - an image mounted read-write is unmounted cleanly; no kernel complaint.
# 40 images (a seeded sample; SG_SEED=N reproduces) normally; with
# SG_THOROUGH=1 or on the debug kernel every image and 3 seeded mutants of
# each (random bytes of the blocks the probe reads changed).
modprobe snapguard || exit 1
# Each image's own evidence decides (as in guard_mount.sh): under the
# machine policy, whatever earlier tests left on the other disks would.
G=/sys/kernel/snapguard/guard
echo enforce >$G/mode && echo volume >$G/policy && echo refuse >$G/unclean || exit 1
for fs in ntfs3 ntfs vfat msdos exfat; do modprobe -q "$fs" 2>/dev/null; done
cd "$(dirname "$0")" && exec python3 - <<'PYEOF'
import ctypes, errno, os, random, struct, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from sg_fuzzlib import Tap, Kmsg, show, seed, thorough

CORPUS = "/fixtures/corpus"
if not os.path.isdir(CORPUS):
    print("1..0 # SKIP no /fixtures/corpus (tools/fixtures/mkimages.sh output, made by tools/vm.py)")
    sys.exit(4)
SEED = seed()
BIG = thorough()
rng = random.Random(SEED)
fstypes = open("/proc/filesystems").read().split()
TYPES = [t for t in ("ntfs3", "ntfs", "vfat", "msdos", "exfat") if t in fstypes]
expect = {}
for line in open(f"{CORPUS}/expect.tsv"):
    c = line.rstrip("\n").split("\t")
    expect[c[0]] = c[2]
names = sorted(n for n in os.listdir(CORPUS) if not n.endswith(".tsv"))
if os.environ.get("SG_IMAGES"):  # SG_IMAGES="a.sgsp b.bin": only these
    names = os.environ["SG_IMAGES"].split()
if BIG:
    chosen = [(n, None) for n in names] + [(n, m) for n in names for m in range(3)]
else:
    chosen = [(n, None) for n in sorted(rng.sample(names, min(40, len(names))))]
tap = Tap(5)
tap.diag(f"seed {SEED} (SG_SEED={SEED} reproduces), {len(chosen)} images from the {len(names)} of the corpus"
         f"{' with mutants' if BIG else ''}, types {' '.join(TYPES)}")
kmsg = Kmsg()
libc = ctypes.CDLL(None, use_errno=True)
STATS = "/sys/kernel/snapguard/guard/stats"
IMG, ORIG, MNT = "/tmp/sgc.img", "/tmp/sgc.orig", "/tmp/sgc-mnt"
os.makedirs(MNT, exist_ok=True)


def records(data):
    """The sparse format (crates/snapguard-hibernate/src/sparse.rs): "SGSP",
    u32 device size, then (u32 offset, u16 length, bytes) records; later
    records win. Anything else is the device itself."""
    if data[:4] != b"SGSP" or len(data) < 8:
        return len(data), [(0, data)]
    size = struct.unpack_from("<I", data, 4)[0]
    out, i = [], 8
    while len(data) - i >= 6:
        off, n = struct.unpack_from("<IH", data, i)
        chunk = data[i + 6:i + 6 + n]
        out.append((off, chunk))
        i += 6 + len(chunk)
    return size, out


def mutate(size, recs, k):
    r = random.Random(f"{SEED}-{k}")
    recs = [(o, bytearray(d)) for o, d in recs if d]
    for _ in range(r.randint(1, 16)):
        if recs:
            o, d = r.choice(recs)
            d[r.randrange(len(d))] = r.randrange(256)
    return size, [(o, bytes(d)) for o, d in recs]


def expand(size, recs, path):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, d in recs:
            if off < size:
                f.seek(off)
                f.write(d[:size - off])


def extents(path):
    """Data ranges of a sparse file (SEEK_DATA/SEEK_HOLE on tmpfs)."""
    out, pos = [], 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            try:
                s = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                return out
            e = os.lseek(fd, s, os.SEEK_HOLE)
            out.append((s, e))
            pos = e
    finally:
        os.close(fd)


def same(a, b):
    """Byte equality of two sparse files, reading only their data."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for s, e in extents(a) + extents(b):
            fa.seek(s)
            fb.seek(s)
            if fa.read(e - s) != fb.read(e - s):
                return False
    return True


def refused_count():
    for line in open(STATS):
        if line.startswith("refused "):
            return int(line.split()[1])
    return 0


def attach():
    r = subprocess.run(["losetup", "-f", "--show", IMG], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def detach(dev):
    subprocess.run(["losetup", "-d", dev], capture_output=True)


bad_identical, bad_consistent, bad_verdict, bad_umount = [], [], [], []
attempts = refusals = mounted = 0
t0 = time.time()
for name, m in chosen:
    label = name + (f"~mutant{m}" if m is not None else "")
    size, recs = records(open(f"{CORPUS}/{name}", "rb").read())
    if m is not None:
        size, recs = mutate(size, recs, f"{name}-{m}")
    expand(size, recs, ORIG)
    expand(size, recs, IMG)
    dev = attach()
    if dev is None:  # an empty image cannot be a loop device
        continue
    decisions = {}
    for t in TYPES:
        before = refused_count()
        attempts += 1
        rc = libc.mount(dev.encode(), MNT.encode(), t.encode(), 0, None)
        err = ctypes.get_errno() if rc else 0
        refused = refused_count() - before
        decisions[t] = refused
        if refused:
            refusals += 1
            if err != errno.EROFS:
                bad_consistent.append(f"{label} as {t}: refused but mount returned {errno.errorcode.get(err, err)}")
        if rc == 0:
            mounted += 1
            if libc.umount2(MNT.encode(), 0) != 0:
                bad_umount.append(f"{label} as {t}: umount failed: {errno.errorcode.get(ctypes.get_errno())}")
        if not refused:
            # The driver had the device: it may have written to it, even in
            # a mount that failed (ntfs3 marks a volume it cannot load
            # dirty: "Mark volume as dirty due to NTFS errors"). Start
            # again from the pristine image.
            detach(dev)
            expand(size, recs, IMG)
            dev = attach()
    detach(dev)
    if any(decisions.values()) and not same(IMG, ORIG):
        bad_identical.append(f"{label}: refused ({decisions}) but changed")
    if len(set(decisions.values())) > 1:
        bad_consistent.append(f"{label}: decisions differ by type: {decisions}; last refusal: "
                              + open("/sys/kernel/snapguard/guard/last_refusal").read().strip())
    stem = name.rsplit(".", 1)[0]
    if m is None and stem in expect:
        want = expect[stem] in ("hibernated", "unclean", "corrupt")
        got = [t for t, r in decisions.items() if bool(r) != want]
        if got:
            bad_verdict.append(f"{label}: verdict {expect[stem]}, but {'not ' if want else ''}refused as {' '.join(got)}")
tap.diag(f"{attempts} read-write mounts of {len(chosen)} images in {time.time() - t0:.0f}s: "
         f"{refusals} refused by the guard, {mounted} mounted")
tap.result(not bad_identical, "every image the guard refused is byte-identical", bad_identical)
tap.result(not bad_consistent, "the guard's decision is the same for every type, and a refusal is EROFS", bad_consistent)
tap.result(not bad_verdict, "decisions agree with the corpus verdicts (refused iff hibernated/unclean/corrupt)", bad_verdict)
tap.result(not bad_umount, "every read-write mount unmounted", bad_umount)
c = kmsg.complaints()
tap.result(not c, "no kernel complaint", [x.decode(errors="replace") for x in c])
os.unlink(IMG)
os.unlink(ORIG)
tap.finish()
PYEOF
