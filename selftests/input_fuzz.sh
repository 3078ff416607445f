#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Crafted input through every parser userspace can reach:
#  1. every file under /sys/kernel/snapguard/ (found at run time, so new
#     knobs are covered): boundary inputs (empty, whitespace, 1 byte,
#     4095/4096/4097 bytes, 64 KiB, NUL, 0xff, invalid UTF-8, numbers 0,
#     -1, 2^64-1, 2^64, huge, leading +/0, missing devices and MAJ:MIN...)
#     and seeded random ones. A write succeeds only for a valid value, and a
#     refused write leaves every file's content unchanged;
#  2. snapguard-pool and snapguard table lines through `dmsetup create`:
#     random and boundary argument words, long lines, binary. Each fails,
#     the kernel logs why, no device is left behind, the live pool's status
#     and table are unchanged and the junk devices offered are unwritten;
#  3. pool messages through `dmsetup message` on a live pool, checked
#     against a model of the documented grammar and the pool's volumes: a
#     bad one fails, is logged and changes neither status nor table.
# SG_SEED=N reproduces a run (the seed is printed); SG_THOROUGH=1 (or the
# debug kernel) feeds 5x the sysfs and 4x the dm inputs. The runner checks
# the console too.
export DM_DISABLE_UDEV=1
# dmsetup must not take message words such as "-1" for options.
export POSIXLY_CORRECT=1
modprobe snapguard || exit 1
cd "$(dirname "$0")" && exec python3 - <<'PYEOF'
import errno, os, random, re, stat, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from sg_fuzzlib import Tap, Kmsg, dm_read, dm_devices, show, seed, thorough

SEED = seed()
BIG = thorough()
MULT = 5 if BIG else 1
# dmsetup runs are slow under TCG: fewer of them in the thorough mode.
MULT_DM = 4 if BIG else 1
rng = random.Random(SEED)
K = "/sys/kernel/snapguard"
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(K) for f in fs)
writable = [f for f in files if os.stat(f).st_mode & 0o200]
readonly = [f for f in files if f not in writable]
# sysfs tests: per writable knob 2 (valid values, fuzz), read-only files 1,
# allow_once full 1; dm: table 3, messages 3, reload 1, complaints 1.
tap = Tap(2 * len(writable) + 1 + 1 + 3 + 3 + 1 + 1)
tap.diag(f"seed {SEED} (SG_SEED={SEED} reproduces), {'thorough' if BIG else 'normal'} mode")
tap.diag(f"writable: {' '.join(f[len(K) + 1:] for f in writable)}; read-only: {' '.join(f[len(K) + 1:] for f in readonly)}")
kmsg = Kmsg()
total = 0
T0 = time.time()


def read(f):
    with open(f, "rb") as fh:
        return fh.read()


PROTECT = K + "/guard/protect"


def snapshot(skip=()):
    return b"".join(f.encode() + b"\0" + read(f) + b"\0" for f in files if f not in skip)


def snapshot_skip(snap):
    """A snapshot without the protect file's part."""
    parts = snap.split(b"\0")
    out = b""
    for i in range(0, len(parts) - 1, 2):
        if parts[i] != PROTECT.encode():
            out += parts[i] + b"\0" + parts[i + 1] + b"\0"
    return out


def write(path, data):
    """One write(2) of data: (bytes accepted, None) or (None, errno)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return None, e.errno
    try:
        return os.write(fd, data), None
    except OSError as e:
        return None, e.errno
    finally:
        os.close(fd)


WORD = re.compile(rb"^(\S+ )*\[\S+\]( \S+)*\n$")


def kind(f, content):
    if os.path.basename(f) == "allow_once":
        return "allow_once"
    if os.path.basename(f) in ("protect", "unprotect"):
        return "device"
    if WORD.match(content):
        return "choice"
    return "unknown"


def strip1(b):
    return b[:-1] if b.endswith(b"\n") else b


def majmin_ok(s):
    m = re.fullmatch(rb"(\d+):(\d+)", s)
    return bool(m) and int(m.group(1)) < 4096 and int(m.group(2)) < (1 << 20)


def is_blockdev(s):
    try:
        p = s.decode()
    except UnicodeDecodeError:
        return False
    if "\0" in p:
        return False
    p = p if p.startswith("/") else "/dev/" + p
    try:
        return stat.S_ISBLK(os.stat(p).st_mode)
    except OSError:
        return False


def devt_of(s):
    if majmin_ok(s):
        a, b = s.split(b":")
        return b"%d:%d" % (int(a), int(b))
    p = s.decode()
    st = os.stat(p if p.startswith("/") else "/dev/" + p)
    return b"%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))


COMMON = [b"", b"\n", b" ", b"\t", b"\n\n", b"\r\n", b" \n", b"\x00", b"\xff", b"a", b"0",
          b"x" * 4095, b"x" * 4096, b"x" * 4097, b"x" * 65536, b"\x00" * 4096, b"\xff" * 65536,
          bytes(range(256)), b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
          b"0", b"-1", b"18446744073709551615", b"18446744073709551616", b"9" * 100, b"+1", b"00",
          b"0x10", b"1e9", b"-0", b"4294967296", b"nonexistent", b"/dev/nonexistent", b"/dev/null",
          b"/dev/zero", b"/", b"/dev/", b"/dev", b"../../dev/loop0", b"/dev/loop0/", b"sdz99",
          b"/proc/self/fd/0", b"a" * 63, b"a" * 64, b"a" * 65, b"/" * 64, b"loop0\x00",
          b"0:0", b"4095:1048575", b"4096:0", b"0:1048576", b"7:", b":0", b":", b"7:0:0",
          b"-7:0", b"7:-0", b"+7:0", b"99999999:0", b"18446744073709551615:18446744073709551615",
          b"7 :0", b"7: 0", b"7:0 ", b" 7:0", b"7\x00:0", b"clear\n\n", b"clearx", b"CLEAR",
          b" clear", b"clear\x00", b"cle", b"clear clear", b"enforce\nx", b"[enforce]"]


def mutants(words):
    out = []
    for w in words:
        out += [w.upper(), w.capitalize(), w + b"\n\n", b" " + w, w + b" ", w + b"\x00", w + b"\x00junk",
                w[:-1], w + b"x", b"\t" + w, w + b"\r", w + b"\r\n", w + b"\n" + w, w + b" " + w,
                b"[" + w + b"]", b"\xef\xbb\xbf" + w, w + b"\xff", w * 300]
    return out


def random_input(words):
    r = rng.random()
    if r < 0.35 and words:  # a valid word, mutated
        w = bytearray(rng.choice(words))
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(3)
            pos = rng.randint(0, len(w))
            if op == 0:
                w.insert(pos, rng.randrange(256))
            elif op == 1 and w:
                del w[min(pos, len(w) - 1)]
            elif w:
                w[min(pos, len(w) - 1)] ^= 1 << rng.randrange(8)
        return bytes(w)
    n = rng.choice([rng.randint(0, 8), rng.randint(0, 80), rng.randint(4090, 4100), rng.randint(0, 70000)])
    alpha = rng.choice([None, b"0123456789:", b"abcdefghijklmnopqrstuvwxyz0123456789/_-.:\n ",
                        bytes(range(32, 127))])
    if alpha is None:
        return os.urandom(n) if n < 4096 else bytes(rng.getrandbits(8) for _ in range(64)) * (n // 64)
    return bytes(rng.choice(alpha) for _ in range(min(n, 200))) * max(1, n // 200)


# allow_once takes only devices that exist now and have a medium (issue 9):
# nine small loop devices for its valid values and its 8-entry limit.
LOOPS = []
for i in range(9):
    path = f"/tmp/sg-ao-{i}.img"
    with open(path, "wb") as fh:
        fh.truncate(1 << 20)
    r = subprocess.run(["losetup", "-f", "--show", path], capture_output=True, text=True)
    LOOPS.append(r.stdout.strip().encode())
LOOP0 = LOOPS[0].rsplit(b"/", 1)[-1]


def exists_dev(s):
    """A block device that exists now and has a medium."""
    try:
        d = devt_of(s)
        with open(f"/sys/dev/block/{d.decode()}/size") as fh:
            return int(fh.read()) > 0
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def restored(inp, base, bad):
    """Puts the knob under test (globals k, restore) back after an accepted
    write; returns the new baseline. A device knob may remember devices
    (an override knob guard/protect lines): that is its new baseline;
    anything else must be as before."""
    restore()
    if k == "device" or (k == "override" and snapshot([PROTECT]) == snapshot_skip(base)):
        return snapshot()
    if snapshot() != base:
        bad.append(f"restoring after {show(inp)} did not give back the old contents")
        return snapshot()
    return base


base = snapshot()
for f in writable:
    name = f[len(K) + 1:]
    content = read(f)
    k = kind(f, content)
    if k == "choice":
        words = [w.strip(b"[]") for w in content.split()]
        current = [w.strip(b"[]") for w in content.split() if w.startswith(b"[")][0]
        valid = lambda inp: strip1(inp) in words
        good = [w + nl for w in words for nl in (b"", b"\n")]
        restore = lambda: write(f, current)
        def applied(inp):
            return b"[" + strip1(inp) + b"]" in read(f).split()
    elif k == "allow_once":
        words = [b"clear", LOOP0, b"/dev/" + LOOP0, devt_of(LOOP0), b"vda"]
        def valid(inp):
            s = strip1(inp)
            return s == b"clear" or ((majmin_ok(s) or is_blockdev(s)) and exists_dev(s))
        good = [b"clear", b"clear\n", LOOP0 + b"\n", b"/dev/" + LOOP0, devt_of(LOOP0) + b"\n"]
        restore = lambda: write(f, b"clear")
        # A valid allow_once also lifts (and remembers lifting) block-layer
        # protection of that device (mount-guard.rst): guard/protect may
        # gain an "unprotected" line for it, nothing else may change.
        k = "override"
        def applied(inp):
            s = strip1(inp)
            return s == b"clear" or any(l.split(b" ")[0] == devt_of(s) for l in read(f).splitlines())
    elif k == "device":
        # protect/unprotect: a device name, path or MAJ:MIN. A valid write
        # acts on that device (a probe, an override): the knobs may change.
        words = [b"loop0", b"/dev/loop0", b"7:0", b"vda", b"254:0"]
        valid = lambda inp: majmin_ok(strip1(inp)) or is_blockdev(strip1(inp))
        good = [b"vda\n", b"/dev/vdb", b"%s\n" % devt_of(b"vdc")] if name.endswith("/protect") else []
        restore = lambda: None
        applied = lambda inp: True
    else:
        words = [content.strip()] if content.strip() else []
        valid = lambda inp: b"\x00" not in inp and strip1(inp).strip() == strip1(inp) and \
            all(32 < c < 127 for c in strip1(inp))
        good = []
        restore = lambda: write(f, content.strip())
        applied = lambda inp: True
    tap.diag(f"{name}: {k} knob, content {show(content)}")
    # Valid values are accepted and take effect.
    bad = []
    for inp in good:
        n, err = write(f, inp)
        if err is not None or n != len(inp):
            bad.append(f"valid {show(inp)} refused: {errno.errorcode.get(err, err)}")
        elif not applied(inp):
            bad.append(f"valid {show(inp)} accepted but not shown: {show(read(f))}")
        base = restored(inp, base, bad)
    tap.result(not bad, f"{name}: {len(good)} valid values accepted and applied", bad)
    # Boundary and random input: refused ones change nothing.
    inputs = COMMON + mutants(words) + [random_input(words) for _ in range(100 * MULT)]
    bad, accepted, errs = [], 0, {}
    for inp in inputs:
        total += 1
        n, err = write(f, inp)
        after = snapshot()
        if err is None and n == 0:
            # An empty write never reaches the knob.
            if after != base:
                bad.append(f"empty write {show(inp)} changed the knobs")
            continue
        if err is None:
            accepted += 1
            if not valid(inp[:4096]):
                bad.append(f"invalid {show(inp)} accepted ({n} bytes): now {show(read(f))}")
            base = restored(inp, base, bad)
            continue
        errs[errno.errorcode.get(err, err)] = errs.get(errno.errorcode.get(err, err), 0) + 1
        if after != base:
            bad.append(f"refused {show(inp)} ({errno.errorcode.get(err, err)}) changed the knobs: "
                       f"{show(after, 300)}")
            base = after
    tap.diag(f"{name}: {len(inputs)} inputs, {accepted} accepted, refused: {errs}")
    tap.result(not bad, f"{name}: {len(inputs)} boundary and random inputs: only valid ones accepted, "
               "refused ones changed nothing", bad)

# Read-only files refuse every write and keep their content.
bad = []
n_ro = 0
for f in readonly:
    for inp in COMMON[:20] + [random_input([]) for _ in range(20 * MULT)]:
        n_ro += 1
        total += 1
        n, err = write(f, inp)
        if err is None and n:
            bad.append(f"{f}: {show(inp)} accepted")
        if snapshot() != base:
            bad.append(f"{f}: {show(inp)} changed the knobs")
            base = snapshot()
tap.result(not bad, f"{len(readonly)} read-only files: {n_ro} writes refused, nothing changed", bad)

# allow_once holds at most 8 entries: the 9th is refused with ENOSPC and
# changes nothing; a duplicate is accepted without a new entry.
AO = K + "/guard/allow_once"
bad, full = [], b""
if AO in writable:
    write(AO, b"clear")
    for dev in LOOPS[:8]:
        if write(AO, devt_of(dev))[1] is not None:
            bad.append(f"{dev.decode()} refused")
    full = read(AO)
    n, err = write(AO, devt_of(LOOPS[8]))
    if err != errno.ENOSPC:
        bad.append(f"9th entry: {n}, {errno.errorcode.get(err, err)}, expected ENOSPC")
    if write(AO, devt_of(LOOPS[3]))[1] is not None:
        bad.append("duplicate refused")
    if read(AO) != full:
        bad.append(f"allow_once changed: {show(read(AO), 300)}")
    write(AO, b"clear")
    total += 11
tap.result(not bad and len(full.splitlines()) == 8, "allow_once: 8 entries, the 9th refused (ENOSPC), nothing changed", bad)
if snapshot() != base:
    tap.diag("knobs differ from the start: guard/protect remembers devices written to protect, unprotect, allow_once")

subprocess.run(["losetup", "-d"] + [d.decode() for d in LOOPS], capture_output=True)
tap.diag(f"sysfs part: {time.time() - T0:.1f}s")
# ------------------------------------------------------------ device-mapper
def sh(cmd, **kw):
    # bash, not /bin/sh: busybox sh would run its own applets (losetup).
    return subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, **kw)


def mkfile(path, mib, junk=False):
    with open(path, "wb") as fh:
        fh.truncate(mib << 20)
        if junk:
            fh.write(os.urandom(4096))
    return sh(f"losetup -f --show {path}").stdout.decode().strip()


META = mkfile("/tmp/sgf-meta", 4)
# Junk at the start of the pool's data: the pool device (which maps onto
# it) offered as a metadata device must not look zeroed.
DATA = mkfile("/tmp/sgf-data", 16, True)
JUNK1 = mkfile("/tmp/sgf-junk1", 4, True)
JUNK2 = mkfile("/tmp/sgf-junk2", 16, True)
TINY = mkfile("/tmp/sgf-tiny", 0)
LEN = 32768
r = sh(f"dmsetup --noudevsync create sgf", input=f"0 {LEN} snapguard-pool {META} {DATA} 128 10\n".encode())
if r.returncode:
    tap.diag(f"cannot create the pool: {r.stderr.decode()}")
    tap.diag(b"\n".join(kmsg.new()).decode(errors="replace"))
    tap.finish()
POOL = "/dev/mapper/sgf"


def devt(p):
    st = os.stat(p)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def junk_sums():
    return [read(p) for p in ("/tmp/sgf-junk1", "/tmp/sgf-junk2")]


junk0 = junk_sums()
state = (dm_read("sgf"), dm_read("sgf", table=True))
tap.diag(f"pool: {state[0].decode()} / {state[1].decode()}")
devs0 = dm_devices()

NUMS = ["0", "1", "8", "127", "128", "4096", "2097152", "4194304", "65535", "65536", "16777215",
        "16777216", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
        "99999999999999999999999", "-1", "-0", "+1", "01", "00", "0x80", "1e3", "1.5", "", "\\ "]
FEATS = ["read_only", "READ_ONLY", "skip_block_zeroing", "ignore_discard", "no_discard_passdown",
         "error_if_no_space", "cache_mib:1", "cache_mib:0", "cache_mib:1024", "cache_mib:1025",
         "cache_mib:", "cache_mib:-1", "cache_mib:18446744073709551616", "cache_mib"]
DEVS = [JUNK1, JUNK2, META, DATA, TINY, POOL, devt(JUNK1), devt(META), "/dev/nonexistent",
        "/dev/null", "/dev/loop99", "7:9999", "0:0", "4095:1048575", "4096:0", "/", "/tmp/sgf-junk1",
        "/proc/self/fd/0", "sgf"]


def word(pool):
    r = rng.random()
    if r < 0.3:
        return rng.choice(DEVS)
    if r < 0.55:
        return rng.choice(NUMS)
    if r < 0.7:
        return rng.choice(FEATS)
    if r < 0.8:
        return "".join(chr(rng.randint(33, 126)) for _ in range(rng.randint(1, 12)))
    if r < 0.9:  # binary: anything but NUL and newline, as Latin-1
        return "".join(chr(rng.choice([c for c in range(1, 256) if c != 10])) for _ in range(rng.randint(1, 8)))
    if r < 0.95:
        return "x" * rng.choice([255, 256, 4095, 4096, 4097])
    return rng.choice(["\\", "\\\\", "a\\ b", "\xa0", "\t", "\x0b", "\x0c", "\r"])


def table_line():
    ty = rng.choice(["snapguard-pool", "snapguard"])
    if ty == "snapguard-pool":
        args = [rng.choice(DEVS), rng.choice(DEVS), rng.choice(NUMS[:8] + NUMS), rng.choice(NUMS)]
        if rng.random() < 0.5:
            feats = [rng.choice(FEATS) for _ in range(rng.randint(0, 6))]
            args += [rng.choice([str(len(feats)), rng.choice(NUMS)])] + feats
    else:
        # The pool has no volumes: a volume table can never be valid here.
        args = [rng.choice(DEVS), rng.choice(NUMS)]
    # Replace, drop or add words at random.
    for _ in range(rng.randint(0, 3)):
        op = rng.randrange(3)
        i = rng.randrange(len(args) + 1)
        if op == 0 and args:
            args[min(i, len(args) - 1)] = word(ty)
        elif op == 1 and args:
            del args[min(i, len(args) - 1)]
        else:
            args.insert(i, word(ty))
    if rng.random() < 0.03:
        args += ["x"] * rng.choice([1000, 30000])  # a long line, many arguments
    length = LEN if rng.random() < 0.9 else rng.choice([1, 64, 65536, 4294967295, 18446744073709551615])
    return f"0 {length} {ty} " + " ".join(args)


FIXED_TABLES = [
    f"0 {LEN} snapguard-pool", f"0 {LEN} snapguard", f"0 {LEN} snapguard-pool " + "x" * 65536,
    f"0 {LEN} snapguard-pool {JUNK1} {JUNK2} 128 0", f"0 {LEN} snapguard-pool {JUNK1} {JUNK2} 128 0 1 read_only",
    f"0 {LEN} snapguard-pool {META} {JUNK2} 128 0", f"0 {LEN} snapguard-pool {JUNK1} {DATA} 128 0",
    f"0 {LEN} snapguard-pool {POOL} {JUNK2} 128 0", f"0 {LEN} snapguard {POOL} 0",
    f"0 {LEN} snapguard {POOL} 16777215", f"0 {LEN} snapguard {JUNK1} 0", f"0 {LEN} snapguard {META} 0",
    f"0 {LEN} snapguard-pool {JUNK1} {JUNK2} 128 0 5 a b c d e", f"0 {LEN} snapguard-pool \xff\xfe {DATA} 128 0",
]
tables = FIXED_TABLES + [table_line() for _ in range(25 * MULT_DM)]
bad_reject, bad_log, bad_left, nkernel, nuser = [], [], [], 0, 0
slow = []
for t in tables:
    total += 1
    t1 = time.time()
    kmsg.new()
    r = sh("dmsetup --noudevsync create sgf-t", input=t.encode("latin-1") + b"\n")
    log = kmsg.new()
    if r.returncode == 0:
        bad_reject.append(f"table accepted: {show(t.encode('latin-1'), 200)}")
        sh("dmsetup --noudevsync remove sgf-t")
        continue
    if b"ioctl on sgf-t" in r.stderr:
        nkernel += 1
        if not any(b"snapguard" in m or b"device-mapper" in m for m in log):
            bad_log.append(f"nothing logged for {show(t.encode('latin-1'), 200)}: {r.stderr.decode(errors='replace')}")
    else:
        nuser += 1
    if dm_devices() != devs0:
        bad_left.append(f"devices {dm_devices()} after {show(t.encode('latin-1'), 200)}")
        sh("dmsetup --noudevsync remove sgf-t")
    if (dm_read("sgf"), dm_read("sgf", table=True)) != state:
        bad_left.append(f"pool changed by {show(t.encode('latin-1'), 200)}: {dm_read('sgf')}")
        state = (dm_read("sgf"), dm_read("sgf", table=True))
    slow.append((time.time() - t1, len(t)))
tap.diag(f"slowest table lines (s, length): {sorted(slow)[-3:]}")
tap.diag(f"table part: {time.time() - T0:.1f}s")
tap.diag(f"{len(tables)} table lines: {nkernel} refused by the kernel, {nuser} by dmsetup itself")
tap.result(not bad_reject, f"{len(tables)} bad table lines refused", bad_reject)
tap.result(not bad_log, "each kernel refusal logged", bad_log)
tap.result(not bad_left and junk_sums() == junk0,
           "no device left behind, live pool unchanged, offered junk devices unwritten",
           bad_left + ([] if junk_sums() == junk0 else ["a junk device was written"]))

# Messages, against a model: the documented grammar (rust/shared/dmtarget/
# message.rs, Documentation/snapshot-target.rst) and the pool's volumes.
SPACE = b" \t\n\x0b\x0c\r\xa0"  # the kernel's isspace(), which dm_split_args uses


def split_args(s):
    out, i = [], 0
    while True:
        while i < len(s) and s[i] in SPACE:
            i += 1
        if i >= len(s):
            return out
        w = bytearray()
        while i < len(s):
            if s[i] == 0x5c and i + 1 < len(s):
                w.append(s[i + 1])
                i += 2
                continue
            if s[i] in SPACE:
                break
            w.append(s[i])
            i += 1
        out.append(bytes(w))


def num(w, limit):
    if len(w) > 20 or not re.fullmatch(rb"0|[1-9][0-9]*", w) or int(w) >= 1 << 64:
        return None
    v = int(w)
    return v if v <= limit else None


MAX_VOLUMES = 65536  # a pool formatted by the target (snapshot-target.rst)
volumes = set()


def expect(msg):
    """True: must succeed; False: must fail; None: either (documented
    future behaviour)."""
    argv = split_args(msg)
    if not argv:
        return False
    cmd = argv[0].lower()
    arity = {b"create": 1, b"delete": 1, b"snapshot": 2, b"set_transaction_id": 2}.get(cmd)
    if arity is None or len(argv) != arity + 1:
        return False
    if cmd == b"set_transaction_id":
        old, new = num(argv[1], (1 << 64) - 1), num(argv[2], (1 << 64) - 1)
        tid = int(dm_read("sgf").split()[3])
        return None if old == tid and new is not None else False
    ids = [num(a, 16777215) for a in argv[1:]]
    if None in ids:
        return False
    if cmd == b"create":
        return ids[0] not in volumes and ids[0] < MAX_VOLUMES
    if cmd == b"delete":
        return ids[0] in volumes
    o, n = ids
    return o != n and o in volumes and n not in volumes and n < MAX_VOLUMES


def apply(msg):
    argv = split_args(msg)
    cmd = argv[0].lower()
    if cmd == b"create":
        volumes.add(int(argv[1]))
    elif cmd == b"delete":
        volumes.discard(int(argv[1]))
    elif cmd == b"snapshot":
        volumes.add(int(argv[2]))


IDS = ["0", "1", "2", "3", "7", "65535", "65536", "16777215", "16777216", "18446744073709551615",
       "18446744073709551616", "-1", "+1", "01", "0x1", "1.0", "", "4294967296", "99999999999999999999999"]
VERBS = ["create", "delete", "snapshot", "set_transaction_id", "CREATE", "Delete", "SNAPSHOT", "frobnicate",
         "reserve_metadata_snap", "release_metadata_snap", "creat", "create\\ 1", "create\xa01", "trim"]


def message():
    if rng.random() < 0.1:
        return word("") + " " + word("")
    words = [rng.choice(VERBS)] + [rng.choice(IDS) if rng.random() < 0.8 else word("")
                                   for _ in range(rng.choice([0, 1, 1, 2, 2, 3]))]
    if rng.random() < 0.03:
        words.append("9" * rng.choice([4096, 65000]))
    return " ".join(words).lstrip("@")


FIXED_MSGS = ["", " ", "create", "create 1 2", "snapshot 1 1", "snapshot 0", "delete 0", "create 65536",
              "create 16777216", "create 18446744073709551616", "set_transaction_id 0", "set_transaction_id 1 2",
              "set_transaction_id 18446744073709551616 0", "create " + "1" * 65536, "x" * 65536,
              "create 0", "create 0", "snapshot 0 0", "snapshot 0 65536", "snapshot 0 1", "delete 0", "delete 1"]
msgs = FIXED_MSGS + [message() for _ in range(40 * MULT_DM)]
bad_model, bad_log, bad_change, nok, nref = [], [], [], 0, 0
state = (dm_read("sgf"), dm_read("sgf", table=True))
for m in msgs:
    total += 1
    raw = m.encode("latin-1")
    want = expect(raw)
    kmsg.new()
    # One argument: dmsetup sends it as is (it joins its arguments with spaces).
    r = subprocess.run(["dmsetup", "message", "sgf", "0", raw], capture_output=True)
    log = kmsg.new()
    now = (dm_read("sgf"), dm_read("sgf", table=True))
    if r.returncode == 0:
        nok += 1
        if want is False:
            bad_model.append(f"bad message accepted: {show(raw, 120)}")
        if now[1] != state[1]:
            bad_change.append(f"table changed by {show(raw, 120)}")
        apply(raw)
        state = now
        continue
    nref += 1
    if want is True:
        bad_model.append(f"valid message refused: {show(raw, 120)}: {r.stderr.decode(errors='replace')}")
    if b"ioctl on sgf" in r.stderr and not any(b"snapguard" in l or b"device-mapper" in l for l in log):
        bad_log.append(f"nothing logged for {show(raw, 120)}")
    if now != state:
        bad_change.append(f"refused {show(raw, 120)} changed the pool: {now[0].decode()}")
        state = now
tap.diag(f"message part: {time.time() - T0:.1f}s")
tap.diag(f"{len(msgs)} messages: {nok} accepted (valid), {nref} refused; volumes now {sorted(volumes)}")
tap.result(not bad_model, f"{len(msgs)} messages: each accepted exactly when the model says it is valid", bad_model)
tap.result(not bad_log, "each refused message logged", bad_log)
tap.result(not bad_change, "refused messages changed neither status nor table", bad_change)

# The pool reopens with what the accepted messages made: each model volume
# exists (create refused as existing), nothing else does (delete refused).
status = dm_read("sgf")
sh("dmsetup --noudevsync remove sgf")
r = sh("dmsetup --noudevsync create sgf", input=state[1] + b"\n")
bad = [] if r.returncode == 0 and dm_read("sgf") == status else [f"reopen: {r.stderr} {dm_read('sgf') if r.returncode == 0 else ''}"]
for i in range(8):
    r = subprocess.run(["dmsetup", "message", "sgf", "0", f"delete {i}"], capture_output=True)
    if (r.returncode == 0) != (i in volumes):
        bad.append(f"volume {i}: model says {'present' if i in volumes else 'absent'}, delete rc={r.returncode}")
tap.result(not bad, "reopened pool holds exactly the volumes the accepted messages made", bad)
sh("dmsetup --noudevsync remove sgf")
sh(f"losetup -d {META} {DATA} {JUNK1} {JUNK2} {TINY}")
c = kmsg.complaints()
tap.result(not c, "no kernel complaint", [m.decode(errors="replace") for m in c])
tap.diag(f"{total} inputs in all (seed {SEED})")
tap.finish()
PYEOF
