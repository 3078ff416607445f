# SPDX-License-Identifier: GPL-2.0
"""Helpers for the crafted-input selftests (input_fuzz.sh, guard_corpus.sh,
target_unload.sh): KTAP output, a seeded PRNG, the kernel log read through
/dev/kmsg, and device-mapper status/table read back with the DM ioctl (one
syscall instead of a dmsetup run, which costs ~0.2 s under TCG). Inputs
always go in through the real tools (dmsetup, mount, losetup)."""

import fcntl
import os
import re
import struct
import sys

BAD = re.compile(rb"BUG:|Oops|WARNING:|Kernel panic|general protection fault|"
                 rb"Call Trace:|KASAN:|UBSAN:|possible circular locking|"
                 rb"possible recursive locking|inconsistent lock state|"
                 rb"suspicious RCU usage|ODEBUG:|unreferenced object")


def thorough():
    """SG_THOROUGH=1, or the debug kernel (kmemleak present: make check-debug)."""
    if os.environ.get("SG_THOROUGH") == "1":
        return True
    if os.environ.get("SG_THOROUGH") == "0":
        return False
    return os.path.exists("/sys/kernel/debug/kmemleak")


def seed():
    s = os.environ.get("SG_SEED")
    return int(s) if s else int.from_bytes(os.urandom(4), "little")


class Tap:
    def __init__(self, plan):
        self.n = 0
        self.failed = 0
        self.plan = plan
        print("TAP version 13")
        print(f"1..{plan}", flush=True)

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print(f"# {line}", flush=True)

    def result(self, ok, desc, details=()):
        self.n += 1
        if ok:
            print(f"ok {self.n} {desc}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} {desc}", flush=True)
            for d in list(details)[:20]:
                self.diag(d)
            if len(details) > 20:
                self.diag(f"... {len(details) - 20} more")

    def finish(self):
        if self.n != self.plan:
            print(f"# planned {self.plan} tests, ran {self.n}")
            sys.exit(1)
        sys.exit(1 if self.failed else 0)


def show(b, n=60):
    """A short printable form of an input."""
    r = repr(bytes(b[:n]))
    return r + (f"...({len(b)} bytes)" if len(b) > n else "")


class Kmsg:
    """The kernel log from now on (every level, whatever the console's)."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.bad = []

    def new(self):
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records: go on
                continue
            msg = rec.split(b";", 1)[-1].split(b"\n", 1)[0]
            out.append(msg)
        # Only complaints are kept: the log of a long run stays out of memory.
        self.bad.extend(m for m in out if BAD.search(m))
        return out

    def complaints(self):
        self.new()
        return self.bad


# struct dm_ioctl (include/uapi/linux/dm-ioctl.h): 312 bytes.
_DM_SIZE = 312
_DM_TABLE_STATUS = (3 << 30) | (_DM_SIZE << 16) | (0xfd << 8) | 12
_DM_STATUS_TABLE_FLAG = 1 << 4


def dm_read(name, table=False):
    """`dmsetup status NAME` (or `table`) as bytes, through DM_TABLE_STATUS."""
    buf = bytearray(16384)
    struct.pack_into("<3IIIIiII", buf, 0, 4, 0, 0, len(buf), 0, 0, 0,
                     _DM_STATUS_TABLE_FLAG if table else 0, 0)
    nm = name.encode()
    buf[48:48 + len(nm)] = nm
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, _DM_TABLE_STATUS, buf, True)
    finally:
        os.close(fd)
    start, count = struct.unpack_from("<II", buf, 16)[0], struct.unpack_from("<I", buf, 20)[0]
    lines = []
    off = start
    for _ in range(count):
        s, ln, _st, nxt = struct.unpack_from("<QQiI", buf, off)
        ty = bytes(buf[off + 24:off + 40]).split(b"\0")[0]
        params = bytes(buf[off + 40:]).split(b"\0")[0]
        lines.append(b"%d %d %s %s" % (s, ln, ty, params))
        off = start + nxt if nxt else off
    return b"\n".join(lines)


def dm_devices():
    """Names of the device-mapper devices, from sysfs."""
    out = []
    for b in os.listdir("/sys/block"):
        if b.startswith("dm-"):
            with open(f"/sys/block/{b}/dm/name") as f:
                out.append(f.read().strip())
    return sorted(out)


def _dm_ioctl(nr, name, flags=0, data=b"", target_count=0):
    """One DM ioctl on device NAME with DATA after the header (raises
    OSError with the kernel's errno)."""
    size = _DM_SIZE + len(data)
    buf = bytearray(max(size, 16384))
    struct.pack_into("<3IIIIiII", buf, 0, 4, 0, 0, len(buf), _DM_SIZE, target_count, 0, flags, 0)
    nm = name.encode()
    buf[48:48 + len(nm)] = nm
    buf[_DM_SIZE:size] = data
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, (3 << 30) | (_DM_SIZE << 16) | (0xfd << 8) | nr, buf, True)
    finally:
        os.close(fd)


def dm_create(name, line):
    """What `dmsetup create NAME` does with a one-target table LINE
    ("start length type params"): create, load, resume; removes the device
    again if the load fails."""
    start, length, ty, params = (line.split(None, 3) + [""])[:4]
    p = params.encode() + b"\0"
    p += b"\0" * (-len(p) % 8)
    spec = struct.pack("<QQiI16s", int(start), int(length), 0, 0, ty.encode()) + p
    _dm_ioctl(3, name)  # DM_DEV_CREATE
    try:
        _dm_ioctl(9, name, data=spec, target_count=1)  # DM_TABLE_LOAD
        _dm_ioctl(6, name)  # DM_DEV_SUSPEND without the suspend flag: resume
    except OSError:
        _dm_ioctl(4, name)
        raise


def dm_message(name, msg):
    """`dmsetup message NAME 0 MSG`."""
    _dm_ioctl(14, name, data=struct.pack("<Q", 0) + msg.encode() + b"\0")  # DM_TARGET_MSG


def dm_remove(name):
    _dm_ioctl(4, name)  # DM_DEV_REMOVE
