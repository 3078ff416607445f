#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Corrupted pool metadata through the kernel's snapguard-pool target.
#
# Images: `snapguard pool craft` (hidden test-support subcommand of the
# project's CLI, tools/snapguard/src/craft.rs) writes, from a real pool it
# formats and populates, one image per corruption (flipped bits in every
# block type, superblock fields, loops and cross links in trees, reference
# counts off by one, out-of-range pointers and values, truncated devices,
# zeroed superblocks), the pool fuzz corpus decoded (the finds in
# /selftests/pool-corpus, the seeds the pool core builds)
# and, in thorough mode, seeded random mutants; manifest.tsv says what the
# pool core (the same code, on the host side) does with each: refuse, open
# or format. For each image, on a loop device with a data device:
#  - refused: the constructor fails, logs why, and the image is
#    byte-identical afterwards (nothing written);
#  - opened: a volume table on each volume of the manifest, its extents
#    read (whole volume or the listed extents), writes with a flush,
#    discards, status (walks the mappings), then
#    create/snapshot/delete messages: each may fail, a failed message is
#    logged; nothing hangs (each image runs in a child with a deadline);
#  - no kernel complaint (BUG, WARNING, KASAN, ...) at any point.
# Live corruption: a pool with a 1 MiB cache (cache_mib:1) and a volume of
# 400 leaves; leaves are corrupted on the loop's backing file underneath
# it; reads give the right data or EIO, never other data; a delete that
# meets the corruption fails with a message and the pool refuses changes
# until reopened; reopened, it is read-only (needs_check written to the
# superblock), `snapguard pool check --clear-needs-check` refuses while
# the leaves are corrupt and clears the flag once they are restored;
# reopened then, it is at its last commit and works.
# Normal mode: the images to refuse, the base pool and a seeded sample of
# 36 others; SG_THOROUGH=1 (or the debug kernel) all of them and 60 seeded
# mutants, small volumes read whole; the images stop at a 360 s budget.
# SG_IMAGES="name ..." runs only those images; SG_SEED=N the mutants' seed.
modprobe snapguard || exit 1
export DM_DISABLE_UDEV=1
cd "$(dirname "$0")" && exec python3 - <<'PYEOF'
import errno, fcntl, hashlib, json, mmap, os, random, select, shutil, struct, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from sg_fuzzlib import Tap, Kmsg, seed, thorough, dm_create, dm_message, dm_remove, dm_devices, dm_read

CLI = next((p for p in ("/usr/bin/snapguard", "/usr/local/bin/snapguard") if os.access(p, os.X_OK)), None)
if CLI is None or subprocess.run([CLI, "pool", "craft", "--help"], capture_output=True).returncode != 0:
    print("1..0 # SKIP no snapguard CLI with 'pool craft' (cargo build -p snapguard; tools/vm.py copies it)")
    sys.exit(4)
SEED = seed()
BIG = thorough()
# The runner's timeout scale (the debug kernel is slower).
SCALE = int(open("timeout_scale").read()) if os.path.exists("timeout_scale") else 1
DEADLINE = 60 * SCALE
# The images stop after this (the runner kills a program after 600 s).
BUDGET = 360 * SCALE
OUT = "/tmp/sgx"
CORPUS = "/selftests/pool-corpus"
tap = Tap(11)
kmsg = Kmsg()

t0 = time.time()
cmd = [CLI, "pool", "craft", OUT, "--no-check", "--mutants", str(60 if BIG else 0), "--seed", str(SEED)]
if os.path.isdir(CORPUS):
    cmd += ["--corpus", CORPUS]
r = subprocess.run(cmd, capture_output=True, text=True)
rows = []
if r.returncode == 0:
    for line in open(f"{OUT}/manifest.tsv"):
        if line.startswith("#"):
            continue
        name, expect, es, de, vols, check, desc = line.rstrip("\n").split("\t")
        vl = []
        for v in vols.split() if vols != "-" else []:
            vid, size, reads = v.split(":")
            vl.append((int(vid), int(size), [int(x) for x in reads.split(",")]))
        rows.append(dict(name=name, expect=expect, es=int(es), de=int(de), vols=vl, check=check, desc=desc))
made = len(rows)
UID_ROW = next((x for x in rows if x["name"] == "record-uid-dup"), None)
UIMG = "/tmp/sgx-uid.img"  # a pristine copy: the loop below writes to opened images
if UID_ROW:
    shutil.copyfile(f"{OUT}/record-uid-dup.img", UIMG)
if os.environ.get("SG_IMAGES"):
    want = set(os.environ["SG_IMAGES"].split())
    rows = [x for x in rows if x["name"] in want]
elif not BIG:
    # Normal mode: every image the constructor must refuse (cheap), the
    # intact base pool and a seeded sample of 36 of the others.
    rng = random.Random(SEED)
    other = [x for x in rows if x["expect"] != "refuse" and x["name"] != "base"]
    keep = {x["name"] for x in rng.sample(other, min(36, len(other)))}
    rows = [x for x in rows if x["expect"] == "refuse" or x["name"] == "base" or x["name"] in keep]
tap.diag(f"seed {SEED} (SG_SEED={SEED} reproduces the mutants); {'thorough' if BIG else 'normal'} mode")
tap.result(r.returncode == 0 and rows, f"snapguard pool craft: {made} images in {time.time() - t0:.1f}s, {len(rows)} run",
           [r.stdout, r.stderr])


def blkdev(name):
    """(MAJ:MIN, /dev/dm-N) of device-mapper device NAME."""
    for b in os.listdir("/sys/block"):
        if b.startswith("dm-") and open(f"/sys/block/{b}/dm/name").read().strip() == name:
            return open(f"/sys/block/{b}/dev").read().strip(), f"/dev/{b}"
    raise OSError(errno.ENODEV, name)


def loop_attach(path):
    """A free loop device backed by PATH (LOOP_CTL_GET_FREE, LOOP_SET_FD)."""
    ctl = os.open("/dev/loop-control", os.O_RDWR)
    try:
        n = fcntl.ioctl(ctl, 0x4C82)
    finally:
        os.close(ctl)
    dev = f"/dev/loop{n}"
    fd, lfd = os.open(path, os.O_RDWR), os.open(dev, os.O_RDWR)
    try:
        fcntl.ioctl(lfd, 0x4C00, fd)
    finally:
        os.close(fd)
        os.close(lfd)
    return dev


def loop_detach(dev):
    fd = os.open(dev, os.O_RDWR)
    try:
        fcntl.ioctl(fd, 0x4C01)
    finally:
        os.close(fd)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


ALIGNED = mmap.mmap(-1, 1 << 20)  # page aligned, for O_DIRECT


def pread_direct(dev, off, n):
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        m = memoryview(ALIGNED)[:n]
        got = os.preadv(fd, [m], off)
        return bytes(m[:got])
    finally:
        os.close(fd)


def pwrite_direct(dev, off, data, sync=False):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        ALIGNED[:len(data)] = data
        os.pwritev(fd, [memoryview(ALIGNED)[:len(data)]], off)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


# One data device for every image: a sparse file as large as the largest
# pool of the manifest needs.
need = max([x["de"] * x["es"] * 512 for x in rows] + [64 << 20])
with open("/tmp/sgx-data", "wb") as f:
    f.truncate(need)
DATA = loop_attach("/tmp/sgx-data")
DATA_DEVT = open(f"/sys/block/{DATA[5:]}/dev").read().strip()


def run_opened(row):
    """Lookups, I/O and messages on the live pool 'sgx' (in a child)."""
    es = row["es"]
    ebytes = es * 512
    res = dict(vol_ok=0, vol_refused=0, reads_ok=0, reads_failed=0, writes_ok=0, writes_failed=0,
               discards_ok=0, discards_failed=0, status_fail=0,
               msgs_ok=0, msgs_failed=0, unlogged=[], errors=[], t_vol=0.0, t_read=0.0, t_write=0.0, t_msg=0.0)
    t = time.time()

    def lap(k):
        nonlocal t
        now = time.time()
        res[k] += now - t
        t = now

    pool_devt, _ = blkdev("sgx")
    for vid, size, reads in row["vols"]:
        name = f"sgx-v{vid}"
        try:
            dm_create(name, f"0 {size * es} snapguard {pool_devt} {vid}")
        except OSError:
            res["vol_refused"] += 1
            lap("t_vol")
            continue
        res["vol_ok"] += 1
        lap("t_vol")
        try:
            _, dev = blkdev(name)
            # Thorough mode reads small volumes whole; otherwise the listed
            # extents: first, last, one per leaf, the first mapped ones.
            whole = BIG and size * ebytes <= 16 << 20 and not row["name"].startswith("mutant-")
            spans = [(0, size * ebytes)] if whole else [(v * ebytes, ebytes) for v in reads]
            for off, n in spans:
                end = off + n
                while off < end:
                    k = min(1 << 20, end - off)
                    try:
                        pread_direct(dev, off, k)
                        res["reads_ok"] += 1
                    except OSError:
                        res["reads_failed"] += 1
                    off += k
            lap("t_read")
            # A write to the first and the last extent, then a flush (a commit).
            for off in (0, (size - 1) * ebytes):
                try:
                    pwrite_direct(dev, off, b"\x5a" * 4096, sync=True)
                    res["writes_ok"] += 1
                except OSError:
                    res["writes_failed"] += 1
            # Discards of the first 16 extents and of the last one.
            for off, n in ((0, 16 * ebytes), ((size - 1) * ebytes, ebytes)):
                fd = os.open(dev, os.O_WRONLY)
                try:
                    fcntl.ioctl(fd, 0x1277, struct.pack("QQ", off, n))  # BLKDISCARD
                    res["discards_ok"] += 1
                except OSError:
                    res["discards_failed"] += 1
                finally:
                    os.close(fd)
            lap("t_write")
            # Status walks the volume's mappings; table.
            try:
                res["status_fail"] += dm_read(name).endswith(b" Fail")
                dm_read(name, table=True)
                dm_read("sgx")
            except OSError as e:
                res["errors"].append(f"status of {name}: {err_name(e)}")
        finally:
            try:
                dm_remove(name)
            except OSError as e:
                res["errors"].append(f"remove {name}: {err_name(e)}")
    ids = [v[0] for v in row["vols"]]
    first = ids[0] if ids else 0
    for m in (f"create 150", f"snapshot {first} 151", f"delete {ids[1] if len(ids) > 1 else 3}", "delete 151",
              "create 150"):
        try:
            dm_message("sgx", m)
            res["msgs_ok"] += 1
        except OSError as e:
            res["msgs_failed"] += 1
            if not any(f"message '{m}'".encode() in l for l in kmsg.new()):
                res["unlogged"].append(f"{m}: {err_name(e)}")
    lap("t_msg")
    # The child read the kernel log: its complaints go back to the parent.
    res["bad"] = [l.decode(errors="replace") for l in kmsg.complaints()]
    return res


def in_child(fn, *a, deadline=60):
    """FN(*A) in a forked child; its result, or {'hang': ...} after DEADLINE s."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            out = json.dumps(fn(*a))
        except Exception as e:  # reported, not raised
            out = json.dumps({"errors": [f"{type(e).__name__}: {e}"]})
        os.write(wfd, out.encode())
        os._exit(0)
    os.close(wfd)
    buf = b""
    end = time.time() + deadline
    while True:
        left = end - time.time()
        if left <= 0 or not select.select([rfd], [], [], left)[0]:
            try:
                stack = open(f"/proc/{pid}/stack").read()
            except OSError:
                stack = "?"
            os.close(rfd)
            return {"hang": f"no answer in {deadline}s; child stack:\n{stack}"}
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        buf += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return json.loads(buf or b'{"errors": ["child died"]}')


# ---------------------------------------------------------------- images
counts = {"refused": 0, "opened": 0, "formatted": 0}
totals = {}
mismatch, untouched_bad, unlogged_refusal, op_problems, hangs, child_bad = [], [], [], [], [], []
kmsg.new()
t0 = time.time()
slowest = (0, "")
ran = 0
for row in rows:
    if time.time() - t0 > BUDGET:
        tap.diag(f"time budget of {BUDGET} s reached: {ran} of {len(rows)} images run (a slow guest)")
        break
    ran += 1
    ti = time.time()
    img = f"{OUT}/{row['name']}.img"
    # Hashed when it must be refused (4 MiB: hashing every image costs
    # tens of seconds under TCG); an unexpected outcome fails anyway.
    before = sha(img) if row["expect"] == "refuse" else None
    meta = loop_attach(img)
    # error_if_no_space: an image whose counts say the pool is full (e.g.
    # sb-data-free-0) must fail writes at once; in the default queueing
    # mode they would be held up to the 60 s bound, as long as the
    # deadline (that bound is target_space.sh's business).
    table = f"0 {row['de'] * row['es']} snapguard-pool {meta} {DATA} {row['es']} 10 1 error_if_no_space"
    tc = time.time()
    try:
        dm_create("sgx", table)
        got = "open"
    except OSError as e:
        got, why = "refuse", err_name(e)
    totals["t_ctr"] = totals.get("t_ctr", 0) + time.time() - tc
    log = kmsg.new()
    if got == "open" and any(b"formatted a new pool" in l for l in log):
        got = "format"
    if got != row["expect"]:
        mismatch.append(f"{row['name']}: kernel {got}, pool core {row['expect']} ({row['desc']})")
    if got == "refuse":
        counts["refused"] += 1
        if not any(b"snapguard-pool: " in l for l in log):
            unlogged_refusal.append(f"{row['name']}: {why}, nothing logged")
    else:
        counts["opened" if got == "open" else "formatted"] += 1
        res = in_child(run_opened, row, deadline=DEADLINE)
        if "hang" in res:
            hangs.append(f"{row['name']}: {res['hang']}")
            tap.diag(f"{row['name']}: hung; stopping here")
            break
        child_bad += [f"{row['name']}: {l}" for l in res.get("bad", [])]
        for k, v in res.items():
            if isinstance(v, (int, float)):
                totals[k] = totals.get(k, 0) + v
        if res.get("unlogged") or res.get("errors"):
            op_problems.append(f"{row['name']}: {res.get('unlogged')} {res.get('errors')}")
        try:
            dm_remove("sgx")
        except OSError as e:
            op_problems.append(f"{row['name']}: removing the pool: {err_name(e)}")
    loop_detach(meta)
    if got == "refuse" and before and sha(img) != before:
        untouched_bad.append(f"{row['name']}: the refused image changed")
    os.unlink(img)
    slowest = max(slowest, (time.time() - ti, row["name"]))
took = time.time() - t0
tap.diag(f"{ran} images in {took:.0f}s (slowest: {slowest[1]} {slowest[0]:.1f}s): "
         f"{counts['refused']} refused, {counts['opened']} opened, {counts['formatted']} formatted")
tap.diag("opened images: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(totals.items())))
tap.result(not mismatch, "every image constructed or refused as the pool core does on the host", mismatch)
tap.result(not unlogged_refusal and not untouched_bad,
           f"{counts['refused']} refused images: a reason logged, image byte-identical afterwards",
           unlogged_refusal + untouched_bad)
tap.result(not hangs, f"no image hung the pool ({DEADLINE} s deadline each)", hangs)
tap.result(not op_problems, "opened images: volume tables, reads, writes and messages end; failed messages logged",
           op_problems)
left = [d for d in dm_devices() if d.startswith("sgx")]
tap.result(not left, "no device left", left)

# Data extent p (of 4 KiB) starts with "SGX" and p, from now on.
with open("/tmp/sgx-data", "r+b") as f:
    for p in range(4096):
        f.seek(p * 4096)
        f.write(b"SGX%013d" % p)

# ---------------------------------------------------------------- identity
# record-uid-dup: volume 2's record has volume 1's identity (uid), which
# keys the lock-free fast map. Volume 2 must not see volume 1's extents:
# activated beside volume 1 it is refused; after it, it reads its own.
uid_problems = []


def read_stamp(name, vext):
    _, dev = blkdev(name)
    return pread_direct(dev, vext * 4096, 4096)[:16]


if UID_ROW:
    row = UID_ROW
    meta = loop_attach(UIMG)
    try:
        ptable = f"0 {row['de'] * 8} snapguard-pool {meta} {DATA} 8 10"
        vt = lambda i: f"0 {1500 * 8} snapguard {blkdev('sgx')[0]} {i}"
        own = {}
        for i in (2, 1):  # each alone on a freshly opened pool (empty fast map)
            dm_create("sgx", ptable)
            dm_create(f"sgx-v{i}", vt(i))
            own[i] = read_stamp(f"sgx-v{i}", 5)
            if i == 2:
                dm_remove("sgx-v2")
                dm_remove("sgx")
        own1, own2 = own[1], own[2]
        if own1 == own2:
            uid_problems.append(f"volumes 1 and 2 map extent 5 alike ({own1}): the image is not what it should be")
        kmsg.new()
        try:
            dm_create("sgx-v2", vt(2))
            uid_problems.append(f"volume 2 activated beside volume 1 (same uid); its extent 5: {read_stamp('sgx-v2', 5)}, "
                                f"its own {own2}, volume 1's {own1}")
            dm_remove("sgx-v2")
        except OSError as e:
            if not any(b"has the identity of active volume" in l for l in kmsg.new()):
                uid_problems.append(f"volume 2 beside volume 1: refused ({err_name(e)}) without the reason")
        dm_remove("sgx-v1")
        dm_create("sgx-v2", vt(2))
        got = read_stamp("sgx-v2", 5)
        if got != own2:
            uid_problems.append(f"volume 2 after volume 1: extent 5 reads {got}, its own is {own2}")
        dm_remove("sgx-v2")
    except OSError as e:
        uid_problems.append(f"{e}")
    for name in ("sgx-v1", "sgx-v2", "sgx"):
        if name in dm_devices():
            dm_remove(name)
    loop_detach(meta)
else:
    uid_problems.append("no record-uid-dup image in the manifest")
tap.result(not uid_problems, "duplicated volume uid: never another volume's extents", uid_problems)

# ---------------------------------------------------------------- live
# live.img: volume 1 (size 400 leaves) maps vext 678*k (k < 400) in leaf k;
# live-map.tsv: vext, pext, leaf block.
lmap = [tuple(int(x) for x in l.split()) for l in open(f"{OUT}/live-map.tsv")]
LIVE = f"{OUT}/live.img"
meta = loop_attach(LIVE)
# As many data extents as the volume has (device-mapper refuses a volume
# table longer than its pool device).
LTABLE = f"0 {400 * 678 * 8} snapguard-pool {meta} {DATA} 8 10 1 cache_mib:1"
live_problems = []


def expect_msg(m, ok):
    """Message M succeeds (OK) or fails with a logged reason."""
    try:
        dm_message("sgx", m)
        if not ok:
            live_problems.append(f"{m}: succeeded")
        return True
    except OSError as e:
        logged = any(f"message '{m}'".encode() in l for l in kmsg.new())
        if ok or not logged:
            live_problems.append(f"{m}: {err_name(e)}{'' if logged else ', nothing logged'}")
        return False


def flip_leaves(rows):
    """Flips one byte of the table leaf of each (vext, _, leaf) row on the
    metadata image underneath the pool (a second call restores them);
    returns the vexts."""
    fd = os.open(LIVE, os.O_RDWR | os.O_DIRECT)
    try:
        for _, _, leaf in rows:
            os.preadv(fd, [memoryview(ALIGNED)[:4096]], leaf * 4096)
            ALIGNED[2000] ^= 0x55
            os.pwritev(fd, [memoryview(ALIGNED)[:4096]], leaf * 4096)
    finally:
        os.close(fd)
    return {v for v, _, _ in rows}


def pool_status():
    """The words of `dmsetup status sgx`."""
    return subprocess.run(["dmsetup", "status", "sgx"], capture_output=True, text=True).stdout.split()


def read_all(dev):
    """Reads each mapped extent: (right, eio, wrong)."""
    right, eio, wrong = [], [], []
    for v, p, _ in lmap:
        try:
            d = pread_direct(dev, v * 4096, 4096)
            (right if d[:16] == b"SGX%013d" % p else wrong).append(v)
        except OSError as e:
            (eio if e.errno == errno.EIO else wrong).append(v)
    return right, eio, wrong


try:
    dm_create("sgx", LTABLE)
    pool_devt, _ = blkdev("sgx")
    dm_create("sgx-v1", f"0 {400 * 678 * 8} snapguard {pool_devt} 1")
    _, vdev = blkdev("sgx-v1")
    right, eio, wrong = read_all(vdev)
    ok1 = len(right) == len(lmap)
    # Corrupt the leaves of the first 100 extents underneath the pool:
    # read first, they left the 1 MiB cache (about 250 blocks) long ago.
    bad = flip_leaves(lmap[:100])
    kmsg.new()
    # A snapshot empties the lock-free fast map (it knew the mappings).
    expect_msg("snapshot 1 2", True)
    right2, eio2, wrong2 = read_all(vdev)
    intact_failed = [v for v in eio2 + wrong2 if v not in bad]
    tap.diag(f"live: before {len(right)} right of {len(lmap)}; after corrupting {len(bad)} leaves: "
             f"{len(right2)} right, {len(eio2)} EIO, {len(wrong2)} wrong data")
    try:
        pwrite_direct(vdev, 0, b"\xa5" * 4096, sync=True)
        wrote = "succeeded"
    except OSError as e:
        wrote = err_name(e)
    tap.diag(f"live: write to extent 0 (corrupted leaf): {wrote}")
    tap.result(ok1 and not wrong2 and not intact_failed and eio2,
               "live: reads give the right data or EIO, never other data; intact leaves still read",
               [f"first pass wrong: {wrong}, eio {eio}", f"wrong data: {wrong2}", f"intact failed: {intact_failed}"])
    dm_remove("sgx-v1")
    # The lookups that met the corrupted leaves put the pool in fail mode
    # (rust/target/fail.rs): the status says so, and every change is
    # refused with a logged reason, even one that would read no corrupted
    # block (deleting the snapshot only drops a count).
    status = pool_status()
    if "fail" not in status or "needs_check" not in status:
        live_problems.append(f"status after the corrupted lookups: {' '.join(status)}")
    failed = not expect_msg("delete 1", False)
    refused = not expect_msg("delete 2", False) and not expect_msg("create 9", False)
    log = b"\n".join(kmsg.new())
    dm_remove("sgx")
    tap.result(failed and refused and not live_problems,
               "live: corrupted lookups put the pool in fail mode (status fail, needs_check); changes refused with a message",
               live_problems)
    live_problems = []
    # The failed pool wrote needs_check to the superblock: reopened, it is
    # read-only and refuses changes; the check finds the corrupted leaves
    # and leaves the flag; with the leaves restored it clears it.
    dm_create("sgx", LTABLE)
    status = pool_status()
    if status[6:7] != ["ro"] or "needs_check" not in status:
        live_problems.append(f"status reopened with needs_check: {' '.join(status)}")
    expect_msg("create 9", False)
    dm_remove("sgx")
    r = subprocess.run([CLI, "pool", "check", "--clear-needs-check", LIVE], capture_output=True, text=True)
    if r.returncode != 1 or "needs_check not cleared" not in r.stderr:
        live_problems.append(f"check --clear-needs-check of the corrupted pool: {r.returncode} {r.stderr.strip()}")
    flip_leaves(lmap[:100])  # flipped back: restored
    r = subprocess.run([CLI, "pool", "check", "--clear-needs-check", LIVE], capture_output=True, text=True)
    if r.returncode != 0 or "needs_check: yes, cleared" not in r.stdout:
        live_problems.append(f"check --clear-needs-check with the leaves restored: {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
    # Reopened: at the last commit (nothing deleted), works.
    dm_create("sgx", LTABLE)
    expect_msg("create 1", False)  # volume 1 is still there
    expect_msg("create 9", True)
    dm_remove("sgx")
    tap.result(not live_problems,
               "live: reopened read-only (needs_check), not cleared while corrupt; leaves restored, cleared, "
               "reopened at the last commit, accepts changes", live_problems)
except OSError as e:
    tap.result(False, f"live corruption: {e}")
    for name in ("sgx-v1", "sgx"):
        try:
            dm_remove(name)
        except OSError:
            pass
while tap.n < 10:
    tap.result(False, "live corruption: not reached")
loop_detach(meta)
loop_detach(DATA)
bad_log = child_bad + [l.decode(errors="replace") for l in kmsg.complaints()]
tap.result(not bad_log, "no kernel complaint (BUG, WARNING, KASAN, ...)", bad_log)
tap.finish()
PYEOF
