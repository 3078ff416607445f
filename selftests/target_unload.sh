#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Unloading with a live snapguard-pool, and create/remove cycles:
#  1. with a pool live and fio writing through it, `rmmod snapguard` and a
#     bare delete_module(2) fail (kmod says "in use", the kernel EAGAIN or
#     EBUSY) and change nothing: module loaded, pool status and table
#     unchanged, fio unharmed; after `dmsetup remove` the module unloads;
#  2. N create/remove cycles of a pool (formatting a zeroed metadata device
#     every other cycle, reopening it in between) with create, snapshot and
#     delete messages: slab objects per cache and vmalloc use must not grow
#     with N. The counts are taken after N/2 and after N cycles (caches
#     shrunk first): a leak of one object per cycle grows a cache by N/2 in
#     each half, noise does not do so in both. N is 50, 1000 with
#     SG_THOROUGH=1 or on the debug kernel (where kmemleak is also asked,
#     after the module is unloaded); SG_CYCLES=N sets it.
export DM_DISABLE_UDEV=1
modprobe snapguard || exit 1
cd "$(dirname "$0")" && exec python3 - <<'PYEOF'
import ctypes, errno, os, re, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from sg_fuzzlib import Tap, Kmsg, dm_read, dm_devices, dm_create, dm_message, dm_remove, thorough
import fcntl, struct

BIG = thorough()
N = int(os.environ.get("SG_CYCLES") or (1000 if BIG else 50))
N -= N % 2
# The runner kills a program after 600 s (selftests/settings): a thorough
# run on a slow guest stops cycling at this budget and says so.
BUDGET = 420
LEAK = "/sys/kernel/debug/kmemleak"
tap = Tap(12 + (1 if os.access(LEAK, os.W_OK) else 0))
kmsg = Kmsg()


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, **kw)


def loaded():
    return os.path.exists("/sys/module/snapguard")


def mkloop(path, mib):
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    return sh(f"losetup -f --show {path}").stdout.decode().strip()


META = mkloop("/tmp/sgu-meta", 4)
DATA = mkloop("/tmp/sgu-data", 16)
TABLE = f"0 32768 snapguard-pool {META} {DATA} 128 10\n".encode()


def create():
    return sh("dmsetup --noudevsync create sgu", input=TABLE)


def msg(m):
    return sh(f"dmsetup message sgu 0 {m}")


def remove():
    return sh("dmsetup --noudevsync remove sgu")


# ---------------------------------------------------------------- unload
r = create()
ok = r.returncode == 0 and msg("create 1").returncode == 0
tap.result(ok, "pool created, volume 1 made", [r.stderr.decode()])
state = (dm_read("sgu"), dm_read("sgu", table=True))
fio = subprocess.Popen(["fio", "--name=w", "--filename=/dev/mapper/sgu", "--rw=randrw", "--bs=4k",
                        "--direct=1", "--ioengine=psync", "--size=8M", "--time_based", "--runtime=4",
                        "--output=/tmp/sgu-fio.log"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
time.sleep(1)
r = sh("rmmod snapguard")
tap.result(r.returncode != 0 and loaded(), "rmmod refused while the pool is live and fio writes to it",
           [r.stdout.decode() + r.stderr.decode()])
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.syscall(176, b"snapguard", os.O_NONBLOCK)  # delete_module(2), x86_64
err = ctypes.get_errno()
tap.diag(f"delete_module: rc={rc} errno={errno.errorcode.get(err, err)}")
tap.result(rc == -1 and err in (errno.EBUSY, errno.EAGAIN) and loaded(),
           "delete_module(2) fails with EAGAIN/EBUSY, module stays")
fio_rc = fio.wait()
tap.result(fio_rc == 0, "fio through the pool unharmed", [open("/tmp/sgu-fio.log").read()[-800:]])
now = (dm_read("sgu"), dm_read("sgu", table=True))
tap.result(now == state, "pool status and table unchanged", [f"{state} -> {now}"])
r = sh("rmmod snapguard")
tap.result(r.returncode != 0 and loaded() and msg("delete 1").returncode == 0,
           "rmmod refused again with fio stopped; pool still works (delete 1)")
remove()
r = sh("rmmod snapguard")
tap.result(r.returncode == 0 and not loaded(), "after dmsetup remove the module unloads",
           [r.stderr.decode()])
sh("modprobe snapguard")
if os.access(LEAK, os.W_OK):
    with open(LEAK, "w") as f:
        f.write("clear")

# ---------------------------------------------------------------- cycles
def shrink():
    """Free what the caches only hold for reuse, so counts show live objects."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    for c in os.listdir("/sys/kernel/slab"):
        p = f"/sys/kernel/slab/{c}"
        if not os.path.islink(p):
            try:
                with open(p + "/shrink", "w") as f:
                    f.write("1")
            except OSError:
                pass


def counts():
    """Live objects per slab cache, and /proc/meminfo. Objects freed after
    an RCU grace period (device-mapper's, maple nodes) need a moment; each
    count is the least of three readings, so that a transient allocation
    elsewhere does not count."""
    objs, mem = {}, {}
    for _ in range(3):
        time.sleep(0.5)
        shrink()
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                w = line.split()
                n = int(w[1])
                objs[w[0]] = (min(n, objs[w[0]][0]) if w[0] in objs else n, int(w[3]))
        with open("/proc/meminfo") as f:
            for l in f:
                k, v = l.split(":")[0], int(l.split()[1])
                mem[k] = min(v, mem.get(k, v))
    return objs, mem


def ioctl_ok(f, *a):
    try:
        f(*a)
        return None
    except OSError as e:
        return f"{f.__name__}{a}: {errno.errorcode.get(e.errno, e.errno)}"


def zero_meta():
    fd = os.open(META, os.O_WRONLY)
    try:
        fcntl.ioctl(fd, 0x127f, struct.pack("QQ", 0, 4 << 20))  # BLKZEROOUT
    finally:
        os.close(fd)


# The cycles use the DM ioctls directly (what dmsetup does: create, load,
# resume; message; remove): a dmsetup run costs ~0.2 s under TCG, which
# would make 1000 cycles take most of an hour.
def cycle(i):
    if i % 2 == 0:  # a zeroed metadata device: formatted by the ctr
        zero_meta()
        steps = [(dm_message, "sgu", "create 1"), (dm_message, "sgu", "snapshot 1 2")]
    else:  # reopened
        steps = [(dm_message, "sgu", "delete 1"), (dm_message, "sgu", "delete 2")]
    steps = [(dm_create, "sgu", TABLE.decode())] + steps + [(dm_remove, "sgu")]
    return [e for e in (ioctl_ok(*s) for s in steps) if e]


tap.diag(f"{N} cycles planned ({'thorough' if BIG else 'normal'} mode)")
errs = []
for i in range(4):  # warm-up: first-use allocations (caches, sysfs) settle
    errs += cycle(i)
base = counts()
t0 = time.time()
done = 0
half = None
while done < N:
    errs += cycle(done)
    done += 1
    if done == N // 2:
        half = counts()
    if done % 2 == 0 and time.time() - t0 > BUDGET and half is None:
        N = done * 2  # the second half as long as the first
        half = counts()
        tap.diag(f"time budget: {N} cycles instead of the planned ones")
end = counts()
took = time.time() - t0
tap.diag(f"{done} cycles in {took:.0f}s ({took / max(done, 1):.2f}s each)")
tap.result(not errs, f"{done} create/remove cycles with create/snapshot/delete messages, every step succeeded",
           [e if isinstance(e, str) else e.decode() for e in errs])

# Growth per cache in each half.
h = done // 2
grow = []
for c in sorted(set(base[0]) | set(end[0])):
    b, m, e = (x[0].get(c, (0, 0))[0] for x in (base, half, end))
    size = (end[0].get(c) or base[0].get(c))[1]
    grow.append((e - b, m - b, e - m, size, c))
grow.sort(reverse=True)
tap.diag("largest slab growth (objects: all, 1st half, 2nd half; object size; cache):")
for g in grow[:6]:
    tap.diag(f"  {g[0]:+6d} {g[1]:+6d} {g[2]:+6d} {g[3]:6d} {g[4]}")
# A leak of one object per cycle adds h objects in each half. Allow a
# quarter of that in either half (and at least 8 objects: what a cache's
# per-CPU and partial slabs jitter by after a shrink, measured below 8).
lim = max(8, h // 4)
leaky = [g for g in grow if g[1] >= lim and g[2] >= lim]
tap.result(not leaky, f"no slab cache grows in both halves by {lim}+ objects ({h} cycles each)",
           [f"{g[4]}: {g[1]:+d} then {g[2]:+d} objects of {g[3]} bytes" for g in leaky])
vb, vm, ve = (x[1].get("VmallocUsed", 0) for x in (base, half, end))
sb, sm, se = (x[1].get("Slab", 0) for x in (base, half, end))
tap.diag(f"Slab: {sb} -> {sm} -> {se} kB; VmallocUsed: {vb} -> {vm} -> {ve} kB")
# vmalloc is page-granular: a leak per cycle is at least 4 kB per cycle.
vlim = max(64, 4 * h // 4)
tap.result(not (vm - vb >= vlim and ve - vm >= vlim),
           f"vmalloc use does not grow in both halves by {vlim}+ kB")
r = sh("rmmod snapguard")
tap.result(r.returncode == 0 and not loaded() and not dm_devices(), "module unloads after the cycles, no device left",
           [r.stderr.decode(), str(dm_devices())])
if os.access(LEAK, os.W_OK):
    with open(LEAK, "w") as f:
        f.write("scan")
    time.sleep(6)
    with open(LEAK, "w") as f:
        f.write("scan")
    rep = open(LEAK).read()
    tap.result("unreferenced object" not in rep, "kmemleak silent after the cycles and the unload", rep.splitlines()[:40])
sh("modprobe snapguard")
sh(f"losetup -d {META} {DATA}")
c = kmsg.complaints()
tap.result(not c, "no kernel complaint", [m.decode(errors="replace") for m in c])
tap.finish()
PYEOF
