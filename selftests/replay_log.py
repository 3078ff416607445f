#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read and replay a dm-log-writes log (power-cut tests of the snapshot target).

The log format (the kernel's drivers/md/dm-log-writes.c, log version 1),
little-endian, in units of the logged device's logical block size ("block",
given in the super block):

  block 0:     super: u64 magic 0x6a736677736872, u64 version 1,
               u64 nr_entries, u32 block size
  then nr_entries entries, each: one header block (u64 sector, u64
  nr_sectors, both in blocks, u64 flags, u64 data_len; for a MARK the mark
  text, data_len bytes, follows the 32 header bytes in the same block),
  followed by nr_sectors blocks of written data, except for a DISCARD
  (no data) and a MARK or an empty flush (nr_sectors 0).

Flags: FLUSH 1 (REQ_PREFLUSH: every entry before it is on stable media),
FUA 2 (this entry is on stable media), DISCARD 4, MARK 8 (`dmsetup message
<log> 0 mark <name>`), METADATA 16 (REQ_META, informational). Writes are
logged once a later flush made them durable, FUA writes when they complete.

  replay_log.py list LOG                   one line per entry:
        <index> <sector> <nr_sectors> <flags> [<mark>]
        (sector and length in blocks; flags joined by ',' or '-')
  replay_log.py replay LOG DEV --end N [--start S] [--drop-unflushed]
        [--discard zero|skip]
        writes entries S..N (inclusive) to DEV. --drop-unflushed leaves out
        the writes and discards after the last FLUSH entry at or before N
        that are not FUA (a power cut lost what the disk cache held); FUA
        entries are kept. --discard zero (default) writes zeroes over a
        discarded range, skip leaves it as it was: a disk may do either.
  replay_log.py plan LOG --points K [--all] [--seed S]
        the replay points a power-cut test checks, sorted by the replay
        state they need: "<base> <end> keep|drop" per line. keep: entries
        0..end; drop: entries 0..base (base = the last FLUSH before end,
        -1 if none) on the disk, then the FUA entries of base+1..end with
        --drop-unflushed. By default K points: FLUSH/FUA entries spread
        over the log (first and last included) and, for about a third of
        them, an entry between two flushes with the unflushed writes
        dropped. --all: every FLUSH/FUA entry, and one dropped point in
        every interval between flushes that has unflushed writes. Also
        counts the ambiguous overlaps: a FUA write overlapped by a plain
        write logged after it before the next flush (dm-log-writes logs a
        FUA write at completion, a plain one at the next flush, so the plain
        one may be the older; a replay applies them in log order and may
        then show the older bytes).
  replay_log.py selftest                   build synthetic logs in a
        temporary directory and check list/replay/plan against them.

Every size in the log is checked against the log device's size before it
is used; a log that does not fit is refused with a message (exit 2).
"""

import argparse
import os
import random
import struct
import sys
import tempfile

MAGIC = 0x6A736677736872
VERSION = 1
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
FLAG_NAMES = [(FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"), (MARK, "MARK"),
              (METADATA, "META")]
KNOWN = FLUSH | FUA | DISCARD | MARK | METADATA
HEADER = struct.Struct("<QQQQ")
SUPER = struct.Struct("<QQQI")
CHUNK = 1 << 20


class LogError(Exception):
    pass


def dev_size(fd):
    return os.lseek(fd, 0, os.SEEK_END)


def pread_exact(fd, n, off):
    out = b""
    while len(out) < n:
        b = os.pread(fd, n - len(out), off + len(out))
        if not b:
            raise LogError(f"short read at byte {off + len(out)}")
        out += b
    return out


class Entry:
    __slots__ = ("index", "sector", "nr_sectors", "flags", "mark", "data_off")

    def __init__(self, index, sector, nr_sectors, flags, mark, data_off):
        self.index, self.sector, self.nr_sectors = index, sector, nr_sectors
        self.flags, self.mark, self.data_off = flags, mark, data_off

    def flag_text(self):
        words = [n for f, n in FLAG_NAMES if self.flags & f]
        return ",".join(words) if words else "-"

    def is_write(self):
        return not self.flags & (MARK | DISCARD) and self.nr_sectors > 0


class Log:
    """A dm-log-writes log opened read-only; entries() walks it."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        # The log device's page cache may hold pages read or written before
        # dm-log-writes wrote the log underneath it (bios bypass it).
        try:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        self.size = dev_size(self.fd)
        if self.size < SUPER.size:
            raise LogError(f"{path}: {self.size} bytes, too small for a log super block")
        magic, version, nr, bs = SUPER.unpack(pread_exact(self.fd, SUPER.size, 0))
        if magic != MAGIC:
            raise LogError(f"{path}: bad magic {magic:#x} (not a dm-log-writes log)")
        if version != VERSION:
            raise LogError(f"{path}: log version {version}, only {VERSION} is known")
        if bs < 512 or bs > 65536 or bs & (bs - 1):
            raise LogError(f"{path}: block size {bs} is not a power of two in 512..65536")
        # Each entry takes at least one block after the super block.
        if nr > self.size // bs - 1:
            raise LogError(f"{path}: {nr} entries cannot fit in {self.size} bytes")
        self.block, self.nr_entries, self.path = bs, nr, path

    def close(self):
        os.close(self.fd)

    def entries(self):
        bs = self.block
        off = bs
        for i in range(self.nr_entries):
            if off + bs > self.size:
                raise LogError(f"entry {i}: header at byte {off} is past the log's end")
            sector, nr, flags, dlen = HEADER.unpack(pread_exact(self.fd, HEADER.size, off))
            if flags & ~KNOWN:
                raise LogError(f"entry {i}: unknown flags {flags:#x}")
            mark = None
            if flags & MARK:
                if dlen > bs - HEADER.size:
                    raise LogError(f"entry {i}: mark of {dlen} bytes does not fit a block")
                mark = pread_exact(self.fd, dlen, off + HEADER.size).decode("utf-8", "replace")
            elif dlen:
                # Inline data: written only for marks by the kernel's map path.
                raise LogError(f"entry {i}: inline data ({dlen} bytes) is not supported")
            data_off = off + bs
            off = data_off + (0 if flags & DISCARD else nr * bs)
            if off > self.size:
                raise LogError(f"entry {i}: data runs past the log's end")
            yield Entry(i, sector, nr, flags, mark, data_off)


def cmd_list(args):
    log = Log(args.log)
    print(f"# block size {log.block}, {log.nr_entries} entries")
    out = []
    for e in log.entries():
        line = f"{e.index} {e.sector} {e.nr_sectors} {e.flag_text()}"
        if e.mark is not None:
            line += " " + e.mark
        out.append(line)
        if len(out) >= 4096:
            print("\n".join(out))
            out = []
    if out:
        print("\n".join(out))
    return 0


def replay(log_path, dev_path, start, end, drop_unflushed=False, discard="zero"):
    """Write entries start..end (inclusive) of the log to dev. Returns counts."""
    log = Log(log_path)
    if end >= log.nr_entries:
        raise LogError(f"end {end} is past the last entry ({log.nr_entries - 1})")
    entries = list(e for e in log.entries() if e.index <= end)
    last_flush = -1
    if drop_unflushed:
        for e in entries:
            if e.flags & FLUSH:
                last_flush = e.index
    fd = os.open(dev_path, os.O_RDWR)
    counts = {"writes": 0, "discards_zeroed": 0, "discards_skipped": 0, "dropped": 0,
              "bytes": 0}
    try:
        size = dev_size(fd)
        bs = log.block
        zero = bytes(CHUNK)
        for e in entries:
            if e.index < start or e.flags & MARK or e.nr_sectors == 0:
                continue
            if drop_unflushed and e.index > last_flush and not e.flags & FUA:
                counts["dropped"] += 1
                continue
            off, length = e.sector * bs, e.nr_sectors * bs
            if off + length > size:
                raise LogError(f"entry {e.index}: sectors {e.sector}+{e.nr_sectors} are past "
                               f"the end of {dev_path} ({size} bytes)")
            if e.flags & DISCARD:
                if discard == "skip":
                    counts["discards_skipped"] += 1
                    continue
                counts["discards_zeroed"] += 1
                done = 0
                while done < length:
                    n = min(CHUNK, length - done)
                    os.pwrite(fd, zero[:n], off + done)
                    done += n
                continue
            done = 0
            while done < length:
                n = min(CHUNK, length - done)
                data = pread_exact(log.fd, n, e.data_off + done)
                os.pwrite(fd, data, off + done)
                done += n
            counts["writes"] += 1
            counts["bytes"] += length
        os.fsync(fd)
    finally:
        os.close(fd)
        log.close()
    return counts


def cmd_replay(args):
    c = replay(args.log, args.dev, args.start, args.end, args.drop_unflushed, args.discard)
    print(f"replayed entries {args.start}..{args.end}: {c['writes']} writes ({c['bytes']} bytes), "
          f"{c['discards_zeroed']} discards zero-filled, {c['discards_skipped']} discards "
          f"skipped, {c['dropped']} unflushed writes/discards dropped")
    return 0


def ambiguous(entries):
    """Pairs (fua, later) where a non-FUA write or discard logged after a
    FUA write, before the next FLUSH, overlaps it. dm-log-writes logs a FUA
    write when it completes but a plain write only at the next flush, so
    such a plain write may have completed (and reached the disk's cache)
    before the FUA write was issued: the log does not tell which of the two
    the disk holds. Replays apply them in log order."""
    fuas, out = [], []
    for e in entries:
        if e.flags & FLUSH:
            fuas = []
        if e.flags & MARK or e.nr_sectors == 0:
            continue
        lo, hi = e.sector, e.sector + e.nr_sectors
        if e.flags & FUA:
            fuas.append((e.index, lo, hi))
            continue
        out += [(i, e.index) for i, flo, fhi in fuas if lo < fhi and flo < hi]
    return out


def plan(log_path, points, every=False, seed=0):
    """Returns (points, number of FLUSH entries, number of FUA-only entries)
    with points a sorted list of (base, end, mode)."""
    log = Log(log_path)
    ents = list(log.entries())
    log.close()
    flags = [e.flags for e in ents]
    durable = [i for i, f in enumerate(flags) if f & (FLUSH | FUA)]
    flushes = [i for i, f in enumerate(flags) if f & FLUSH]
    # Intervals between flushes holding non-FUA writes or discards: a power
    # cut there may lose them.
    between = []
    prev = -1
    for f in flushes + [len(flags)]:
        cand = [i for i in range(prev + 1, f) if not flags[i] & (FUA | MARK)]
        if cand:
            between.append((prev, cand))
        prev = f
    rng = random.Random(seed)
    if every or points >= len(durable):
        keep = durable
    else:
        n = max(2, points - points // 3)
        keep = sorted({durable[round(k * (len(durable) - 1) / (n - 1))] for k in range(n)})
    if every:
        drops = [(base, rng.choice(cand)) for base, cand in between]
    else:
        n = min(len(between), max(1, points // 3))
        step = len(between) / n if n else 1
        drops = [(between[int(k * step)][0], rng.choice(between[int(k * step)][1]))
                 for k in range(n)]
    out = [(e, e, "keep") for e in keep] + [(b, e, "drop") for b, e in drops]
    out.sort()
    return out, len(flushes), len(durable) - len(flushes), ambiguous(ents)


def cmd_plan(args):
    pts, nflush, nfua, amb = plan(args.log, args.points, args.all, args.seed)
    print(f"# {nflush} flush entries, {nfua} FUA entries without a flush, {len(pts)} points, "
          f"{len(amb)} ambiguous overlaps")
    for fua, later in amb[:10]:
        print(f"# ambiguous: FUA entry {fua} overlapped by entry {later} before the next flush")
    for base, end, mode in pts:
        print(f"{base} {end} {mode}")
    return 0


# --- host self-test ---------------------------------------------------------

def build_log(path, bs, entries, size=None):
    """entries: (sector, nr, flags, mark or data bytes). Writes a log file."""
    blocks = [b""]
    for sector, nr, flags, payload in entries:
        if flags & MARK:
            m = payload.encode()
            blocks.append(HEADER.pack(sector, 0, flags, len(m)) + m)
        else:
            blocks.append(HEADER.pack(sector, nr, flags, 0))
            if not flags & DISCARD and nr:
                assert len(payload) == nr * bs
                blocks.append(payload)
    blocks[0] = SUPER.pack(MAGIC, VERSION, len(entries), bs)
    with open(path, "wb") as f:
        for b in blocks:
            f.write(b + bytes(-len(b) % bs))
        if size:
            f.truncate(size)


def selftest():
    failures = 0

    def check(cond, what):
        nonlocal failures
        print(("ok   " if cond else "FAIL ") + what)
        failures += 0 if cond else 1

    with tempfile.TemporaryDirectory() as d:
        for bs in (512, 4096):
            lp, dp = os.path.join(d, "log"), os.path.join(d, "dev")

            def blk(c, n=1):
                return bytes([c]) * (bs * n)
            ents = [
                (0, 0, MARK, "start"),
                (1, 2, 0, blk(0xA1, 2)),        # 1 write, unflushed until 3
                (5, 1, 0, blk(0xA2)),           # 2
                (0, 0, FLUSH, b""),             # 3 flush
                (7, 1, FUA, blk(0xA3)),         # 4 FUA
                (1, 1, 0, blk(0xB1)),           # 5 unflushed overwrite
                (5, 1, DISCARD, b""),           # 6 unflushed discard
                (0, 0, MARK, "mid"),            # 7
                (9, 1, FUA | METADATA, blk(0xA4)),  # 8 FUA
                (3, 1, 0, blk(0xC1)),           # 9 unflushed
            ]
            build_log(lp, bs, ents)
            log = Log(lp)
            got = [(e.index, e.sector, e.nr_sectors, e.flag_text(), e.mark) for e in log.entries()]
            log.close()
            check(got[0] == (0, 0, 0, "MARK", "start") and got[7][4] == "mid"
                  and got[3][3] == "FLUSH" and got[8][3] == "FUA,META"
                  and got[6][3] == "DISCARD" and len(got) == 10, f"bs {bs}: list")

            def image(end, start=0, **kw):
                with open(dp, "wb") as f:
                    f.write(bytes([0xEE]) * (16 * bs))
                replay(lp, dp, start, end, **kw)
                with open(dp, "rb") as f:
                    raw = f.read()
                return [raw[i * bs] for i in range(16)]
            full = image(9)
            check(full[1] == 0xB1 and full[2] == 0xA1 and full[3] == 0xC1 and full[5] == 0
                  and full[7] == 0xA3 and full[9] == 0xA4 and full[0] == 0xEE,
                  f"bs {bs}: full replay, discard zero-filled")
            check(image(9, discard="skip")[5] == 0xA2, f"bs {bs}: discard skipped")
            part = image(4)
            check(part[1] == 0xA1 and part[7] == 0xA3 and part[9] == 0xEE,
                  f"bs {bs}: replay to entry 4 stops there")
            drop = image(9, drop_unflushed=True)
            check(drop[1] == 0xA1 and drop[3] == 0xEE and drop[5] == 0xA2 and drop[7] == 0xA3
                  and drop[9] == 0xA4, f"bs {bs}: unflushed writes and discard dropped, FUA kept")
            check(image(9, start=5)[1] == 0xB1 and image(9, start=5)[7] == 0xEE,
                  f"bs {bs}: --start skips earlier entries")
            pts, nflush, nfua, amb = plan(lp, 10, every=True)
            check(nflush == 1 and nfua == 2 and (3, 3, "keep") in pts and (8, 8, "keep") in pts
                  and [p for p in pts if p[2] == "drop"][0][0] == -1
                  and len([p for p in pts if p[2] == "drop"]) == 2,
                  f"bs {bs}: plan --all: {pts}")
            check(amb == [], f"bs {bs}: no ambiguous overlap")
            build_log(os.path.join(d, "amb"), bs, [(4, 2, FUA, blk(1, 2)), (5, 1, 0, blk(2)),
                                                   (0, 0, FLUSH, b""), (4, 1, 0, blk(3))])
            check(plan(os.path.join(d, "amb"), 4)[3] == [(0, 1)],
                  f"bs {bs}: a FUA write overlapped before the next flush is ambiguous")
            bases = [p[0] for p in pts]
            check(bases == sorted(bases), f"bs {bs}: plan sorted by base")
            # Damaged logs are refused, not followed.
            build_log(lp, bs, ents[:3])
            with open(lp, "r+b") as f:
                f.truncate(2 * bs)
            try:
                list(Log(lp).entries())
                check(False, f"bs {bs}: truncated log refused")
            except LogError as e:
                check(True, f"bs {bs}: truncated log refused ({e})")
            with open(lp, "r+b") as f:
                f.write(SUPER.pack(MAGIC, VERSION, 1 << 40, bs))
            try:
                Log(lp)
                check(False, f"bs {bs}: absurd entry count refused")
            except LogError as e:
                check(True, f"bs {bs}: absurd entry count refused ({e})")
            build_log(lp, bs, [(0, 1, 1 << 9, blk(1))])
            try:
                list(Log(lp).entries())
                check(False, f"bs {bs}: unknown flag refused")
            except LogError as e:
                check(True, f"bs {bs}: unknown flag refused ({e})")
            build_log(lp, bs, [(20, 1, 0, blk(1))])
            try:
                replay(lp, dp, 0, 0)
                check(False, f"bs {bs}: write past the device refused")
            except LogError as e:
                check(True, f"bs {bs}: write past the device refused ({e})")
    print("selftest: " + ("all passed" if not failures else f"{failures} failed"))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("list")
    p.add_argument("log")
    p = sub.add_parser("replay")
    p.add_argument("log")
    p.add_argument("dev")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, required=True)
    p.add_argument("--drop-unflushed", action="store_true")
    p.add_argument("--discard", choices=("zero", "skip"), default="zero")
    p = sub.add_parser("plan")
    p.add_argument("log")
    p.add_argument("--points", type=int, default=24)
    p.add_argument("--all", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("selftest")
    args = ap.parse_args()
    try:
        if args.verb == "selftest":
            return selftest()
        return {"list": cmd_list, "replay": cmd_replay, "plan": cmd_plan}[args.verb](args)
    except LogError as e:
        print(f"replay_log: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
