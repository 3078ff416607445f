//! `snapguard pool` on images made here: format with the tool, populate
//! through the library, then check, ls and dump with the tool; corrupted
//! images must make `check` exit 1.

use snapguard_pool::host::{slots, FileDevice};
use snapguard_pool::{Mapping, Pool, BLOCK_SIZE};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snapguard"))
}

fn image(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("snapguard-pool-{}-{name}.img", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run snapguard")
}

/// The JSON a command printed.
fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs the tool and requires exit code `code` and `needle` in its output.
fn says(args: &[&str], code: i32, needle: &str) {
    let o = run(args);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    assert!(text(&o).contains(needle), "{}", text(&o));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn format_image(p: &Path) {
    let o = run(&[
        "pool",
        "format",
        p.to_str().unwrap(),
        "--meta-size",
        "4m",
        "--data-size",
        "1g",
        "--extent-size",
        "64k",
        "--max-volumes",
        "1000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("16384 data extents"), "{}", text(&o));
}

fn open_dev(p: &Path) -> FileDevice {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    let len = f.metadata().unwrap().len();
    FileDevice::new(f, len)
}

/// Volume 1: 3000 extents, 2000 provisioned; volume 2: its snapshot with
/// 10 extents un-shared; volume 3: 100 extents copied from volume 1.
fn populate(p: &Path) {
    let mut arena = slots(256);
    let mut pool = Pool::open(open_dev(p), &mut arena).unwrap();
    pool.create_volume(1, 3000).unwrap();
    for v in 0..2000 {
        pool.provision(1, v).unwrap();
    }
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    for v in 0..10 {
        pool.break_sharing(2, v).unwrap();
    }
    pool.create_volume(3, 500).unwrap();
    pool.copy_range(1, 1000, 3, 0, 100).unwrap();
    pool.commit().unwrap();
}

#[test]
fn format_populate_check_ls_dump() {
    let p = image("good");
    format_image(&p);
    let ps = p.to_str().unwrap();
    let o = run(&["pool", "check", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    populate(&p);

    let o = run(&["pool", "check", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("clean"), "{}", text(&o));
    assert!(text(&o).contains("3 volumes"), "{}", text(&o));

    let o = run(&["pool", "check", "--json", ps]);
    assert_eq!(o.status.code(), Some(0));
    let j = json(&o);
    assert_eq!(j["clean"], true);
    assert_eq!(j["data_used"], 2010);

    let o = run(&["pool", "ls", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert_eq!(t.lines().count(), 4, "{t}");

    let o = run(&["pool", "ls", "--json", ps]);
    let j = json(&o);
    let vols = j["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 3);
    assert_eq!(vols[0]["id"], 1);
    assert_eq!(vols[0]["mapped"], 2000);
    assert_eq!(vols[0]["shared"], 1990);
    assert_eq!(vols[1]["shared"], 1990);
    assert_eq!(vols[2]["mapped"], 100);
    assert_eq!(vols[2]["shared"], 100);

    let o = run(&["pool", "dump", "--json", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["data_free"], 16384 - 2010);
    // Every dumped run agrees with the library's lookups.
    let mut arena = slots(64);
    let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
    let mut total = 0;
    for v in j["volumes"].as_array().unwrap() {
        let id = v["id"].as_u64().unwrap() as u32;
        for r in v["mappings"].as_array().unwrap() {
            let (vext, pext, len) = (
                r["vext"].as_u64().unwrap(),
                r["pext"].as_u64().unwrap(),
                r["len"].as_u64().unwrap(),
            );
            for i in 0..len {
                assert_eq!(
                    pool.lookup(id, vext + i).unwrap(),
                    Mapping::Mapped {
                        pext: pext + i,
                        shared: r["shared"].as_bool().unwrap()
                    }
                );
            }
            total += len;
        }
    }
    assert_eq!(total, 2000 + 2000 + 100);

    let o = run(&["pool", "dump", "--volume", "3", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("volume 3 size 500 mapped 100 shared 100"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("  0+100 -> 1000 shared"), "{}", text(&o));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn corrupted_images_fail_check() {
    let p = image("bad");
    format_image(&p);
    populate(&p);
    let ps = p.to_str().unwrap().to_string();
    let fixed = {
        let mut arena = slots(64);
        Pool::open(open_dev(&p), &mut arena)
            .unwrap()
            .stats()
            .meta_fixed
    };
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let blocks = f.metadata().unwrap().len() / BLOCK_SIZE as u64;

    // A flipped byte in every dynamic block: checksums fail.
    let good = std::fs::read(&p).unwrap();
    for b in fixed..blocks {
        let off = b * BLOCK_SIZE as u64 + 100;
        let mut byte = [0u8];
        f.read_exact_at(&mut byte, off).unwrap();
        f.write_all_at(&[byte[0] ^ 0x40], off).unwrap();
    }
    let o = run(&["pool", "check", &ps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("problem"), "{}", text(&o));

    // A reference count changed (valid checksum): refcount mismatch.
    let mut img = good.clone();
    corrupt_space_map(&mut img, fixed);
    std::fs::write(&p, &img).unwrap();
    let o = run(&["pool", "check", "--json", &ps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["clean"], false);

    // Both superblocks destroyed: no valid superblock.
    let mut img = good.clone();
    img[..2 * BLOCK_SIZE].fill(0);
    std::fs::write(&p, &img).unwrap();
    let o = run(&["pool", "check", &ps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no valid superblock"), "{}", text(&o));

    // One superblock destroyed: the other (previous commit) still opens.
    let mut img = good.clone();
    img[..BLOCK_SIZE].fill(0);
    std::fs::write(&p, &img).unwrap();
    let o = run(&["pool", "check", &ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Missing file: usage/I-O error.
    let o = run(&["pool", "check", "/nonexistent/snapguard.img"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let _ = std::fs::remove_file(&p);
}

/// Bumps one reference count in every copy of the data space map's first
/// block and re-seals the checksum, so that only the refcount check fails.
fn corrupt_space_map(img: &mut [u8], fixed: u64) {
    let mut n = 0;
    for b in 2..fixed as usize {
        let blk = &mut img[b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE];
        let tag = u16::from_le_bytes([blk[4], blk[5]]);
        if tag != 0x4453 {
            continue;
        }
        let c = snapguard_pool::crc32c(&blk[4..]);
        if u32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]) != c {
            continue;
        }
        // Entry 7 of this block gains a reference.
        blk[24 + 4 * 7] = blk[24 + 4 * 7].wrapping_add(1);
        let c = snapguard_pool::crc32c(&blk[4..]);
        blk[..4].copy_from_slice(&c.to_le_bytes());
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn check_names_the_format_version() {
    let p = image("version");
    format_image(&p);
    let o = run(&["pool", "check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "format version {}",
            snapguard_pool::FORMAT_VERSION
        )),
        "{}",
        text(&o)
    );
    // A pool of another version (here: 1, whose layout this code does not
    // read) is named as such, not as corrupt garbage.
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    for nr in 0..2u64 {
        let mut b = vec![0u8; BLOCK_SIZE];
        f.read_exact_at(&mut b, nr * BLOCK_SIZE as u64).unwrap();
        if b[24..32] != *b"SGPOOLMD" {
            continue;
        }
        b[32..36].copy_from_slice(&1u32.to_le_bytes());
        let c = snapguard_pool::crc32c(&b[4..]);
        b[..4].copy_from_slice(&c.to_le_bytes());
        f.write_all_at(&b, nr * BLOCK_SIZE as u64).unwrap();
    }
    let o = run(&["pool", "check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("format version 1 found"), "{}", text(&o));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn format_too_large_names_limit_and_fitting_extent_size() {
    let p = image("toolarge");
    // 4 MiB of metadata cannot hold the space maps of 1 TiB in 4 KiB
    // extents (2^28 extents, 2 GiB of space maps).
    let o = run(&[
        "pool",
        "format",
        p.to_str().unwrap(),
        "--meta-size",
        "4m",
        "--data-size",
        "1t",
        "--extent-size",
        "4k",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("holds at most"), "{t}");
    assert!(t.contains("--extent-size 4m fits"), "{t}");
    assert!(t.contains("or a metadata device of at least"), "{t}");
    let _ = std::fs::remove_file(&p);
}

#[test]
fn format_with_capacity_then_grow() {
    let p = image("grow");
    let o = run(&[
        "pool",
        "format",
        p.to_str().unwrap(),
        "--meta-size",
        "4m",
        "--data-size",
        "1g",
        "--max-data-size",
        "4g",
        "--max-meta-size",
        "8m",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // 65536 extents asked; the space maps hold whole blocks of 1018 counts.
    assert!(text(&o).contains("(capacity 66170)"), "{}", text(&o));
    // The metadata device grows (the file here), then the pool.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    {
        let mut arena = slots(64);
        let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
        // Within what the space maps hold: no extension.
        pool.grow(66170, 2048).unwrap();
        assert_eq!(pool.stats().extensions, 0);
        // Beyond: a growth extension, here in free metadata blocks (the
        // metadata device did not grow this time).
        pool.grow(70_000, 2048).unwrap();
        let st = pool.stats();
        assert_eq!((st.extensions, st.data_extents), (1, 70_000));
        assert!(st.data_capacity >= 2 * 65536, "{st:?}");
        assert_eq!(pool.grow(69_999, 2048), Err(snapguard_pool::Error::Invalid));
        pool.create_volume(1, 70_000).unwrap();
        for v in 0..20_000 {
            pool.provision(1, v).unwrap();
        }
        pool.commit().unwrap();
    }
    let o = run(&["pool", "check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("data 20000/70000 extents"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_file(&p);
}

/// A volume whose deletion in steps was interrupted (committed half done)
/// is listed as deleting, checks clean, and can be finished later.
#[test]
fn half_deleted_volume_is_listed() {
    let p = image("halfdel");
    format_image(&p);
    populate(&p);
    {
        let mut arena = slots(256);
        let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
        // Volume 1 maps 2000 extents (3 leaves): one leaf per step.
        assert_eq!(pool.delete_volume_step(1, 1).unwrap(), 678);
        pool.commit().unwrap();
    }
    let ps = p.to_str().unwrap();
    let o = run(&["pool", "check", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["pool", "ls", ps]);
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(line.ends_with(" deleting"), "{t}");
    assert_eq!(t.matches("deleting").count(), 1, "{t}");
    let o = run(&["pool", "ls", "--json", ps]);
    let j = json(&o);
    let vols = j["volumes"].as_array().unwrap();
    assert_eq!(vols[0]["id"], 1);
    assert_eq!(vols[0]["deleting"], true);
    assert_eq!(vols[0]["mapped"], 2000 - 678);
    assert!(vols[1].get("deleting").is_none());
    // Resumed after the reopen: finished in steps, the id is free again.
    let mut arena = slots(256);
    let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
    assert_eq!(
        pool.create_volume(1, 10),
        Err(snapguard_pool::Error::Exists)
    );
    assert_eq!(pool.lookup(1, 700), Err(snapguard_pool::Error::NotFound));
    assert_eq!(pool.volume(1), Err(snapguard_pool::Error::NotFound));
    while pool.delete_volume_step(1, 1).unwrap() < 3000 {}
    pool.create_volume(1, 10).unwrap();
    pool.commit().unwrap();
    drop(pool);
    let o = run(&["pool", "check", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn check_and_dump_print_the_transaction_id() {
    let p = image("txid");
    format_image(&p);
    let ps = p.to_str().unwrap();
    let o = run(&["pool", "check", ps]);
    assert!(text(&o).contains("transaction id 0,"), "{}", text(&o));
    {
        let mut arena = slots(64);
        let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
        pool.set_transaction_id(0, 42).unwrap();
        pool.commit().unwrap();
    }
    let o = run(&["pool", "check", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("transaction id 42,"), "{}", text(&o));
    let o = run(&["pool", "check", "--json", ps]);
    let j = json(&o);
    assert_eq!(j["transaction_id"], 42);
    let o = run(&["pool", "dump", ps]);
    assert!(text(&o).contains("transaction_id 42 "), "{}", text(&o));
    let o = run(&["pool", "dump", "--json", ps]);
    let j = json(&o);
    assert_eq!(j["transaction_id"], 42);
    let _ = std::fs::remove_file(&p);
}

fn flag_of(p: &Path) -> bool {
    let mut arena = slots(64);
    Pool::open(open_dev(p), &mut arena).unwrap().needs_check()
}

/// The `needs_check` flag: `check` and `dump` say it; `check
/// --clear-needs-check` clears it only when the check is clean.
#[test]
fn needs_check_flag_shown_and_cleared_only_when_clean() {
    let p = image("needs-check");
    format_image(&p);
    populate(&p);
    let ps = p.to_str().unwrap().to_string();
    says(&["pool", "check", &ps], 0, "needs_check: no");
    {
        let mut arena = slots(64);
        let mut pool = Pool::open(open_dev(&p), &mut arena).unwrap();
        pool.set_needs_check().unwrap();
    }
    assert!(flag_of(&p));
    // A plain check reports it and leaves it (clean: exit 0).
    says(&["pool", "check", &ps], 0, "needs_check: yes\n");
    assert!(flag_of(&p));
    let o = run(&["pool", "check", "--json", &ps]);
    let j = json(&o);
    assert_eq!(j["needs_check"], true);
    assert_eq!(j["needs_check_cleared"], false);
    let o = run(&["pool", "dump", &ps]);
    assert!(text(&o).contains(" needs_check yes "), "{}", text(&o));
    let o = run(&["pool", "dump", "--json", &ps]);
    let j = json(&o);
    assert_eq!(j["needs_check"], true);

    // Corrupt: refused, exit 1, the flag stays.
    let good = std::fs::read(&p).unwrap();
    let fixed = {
        let mut arena = slots(64);
        Pool::open(open_dev(&p), &mut arena)
            .unwrap()
            .stats()
            .meta_fixed
    };
    let mut img = good.clone();
    corrupt_space_map(&mut img, fixed);
    std::fs::write(&p, &img).unwrap();
    says(
        &["pool", "check", "--clear-needs-check", &ps],
        1,
        "needs_check not cleared: the metadata has",
    );
    assert_eq!(std::fs::read(&p).unwrap(), img, "nothing written");
    assert!(flag_of(&p));

    // Clean: cleared.
    std::fs::write(&p, &good).unwrap();
    says(
        &["pool", "check", "--clear-needs-check", &ps],
        0,
        "needs_check: yes, cleared",
    );
    assert!(!flag_of(&p));
    let o = run(&["pool", "check", &ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("clean"), "{}", text(&o));
    assert!(text(&o).contains("needs_check: no"), "{}", text(&o));
    // Not set: nothing to do, exit 0.
    says(
        &["pool", "check", "--clear-needs-check", &ps],
        0,
        "needs_check: no",
    );
    let _ = std::fs::remove_file(&p);
}
