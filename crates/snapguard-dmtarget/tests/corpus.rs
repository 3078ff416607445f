//! Replays the fuzz corpus (`tests/corpus/`: seeds and any regression
//! inputs the fuzzer found) through the fuzz oracle: nothing may panic and
//! everything that parses must round-trip. With `SNAPGUARD_GEN_CORPUS=1`
//! the seed files are (re)written first; otherwise they must be up to date.

use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Seeds: (file name, kind byte, line). Kind 0 pool table, 1 volume
/// table, 2 message, 3 pool status, 4 volume status.
const SEEDS: &[(&str, u8, &str)] = &[
    ("seed-pool-min", 0, "/dev/vdb /dev/vdc 128 0"),
    (
        "seed-pool-all",
        0,
        "253:1 253:2 2097152 18446744073709551615 5 skip_block_zeroing \
         no_discard_passdown read_only error_if_no_space cache_mib:1024",
    ),
    (
        "seed-pool-ignore",
        0,
        "m d 8 10 2 IGNORE_DISCARD cache_mib:1",
    ),
    ("seed-pool-bad-count", 0, "m d 8 10 3 read_only"),
    ("seed-pool-dup", 0, "m d 8 10 2 read_only read_only"),
    ("seed-volume", 1, "/dev/mapper/pool 16777215"),
    ("seed-msg-create", 2, "create 1"),
    ("seed-msg-snapshot", 2, "snapshot 1 2"),
    (
        "seed-msg-txid",
        2,
        "set_transaction_id 0 18446744073709551615",
    ),
    (
        "seed-pool-status",
        3,
        "7 10/1024 3/16 out_of_data_space ignore_discard error_if_no_space needs_check",
    ),
    ("seed-volume-status", 4, "1024 2047 512"),
    ("seed-volume-status-empty", 4, "0 - 0"),
    ("seed-volume-fail", 4, "Fail"),
];

fn encode(kind: u8, line: &str) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(line.as_bytes());
    v
}

#[test]
fn seeds_up_to_date() {
    let gen = std::env::var_os("SNAPGUARD_GEN_CORPUS").is_some();
    for (name, kind, line) in SEEDS {
        let path = dir().join(name);
        let want = encode(*kind, line);
        if gen {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let got = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            got,
            want,
            "{} is stale: run with SNAPGUARD_GEN_CORPUS=1",
            path.display()
        );
    }
}

#[test]
fn corpus_replays() {
    let mut n = 0;
    for e in std::fs::read_dir(dir()).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        snapguard_dmtarget::fuzz_one(&data);
        n += 1;
    }
    assert!(n >= SEEDS.len());
}
