//! Replays the fuzz seeds (below) and any regression inputs the fuzzer
//! found (`tests/corpus/`) through the fuzz oracle: nothing may panic and
//! everything that parses must round-trip. With `SNAPGUARD_SEED_DIR=DIR`
//! the seeds are also written into DIR (`tools/fuzz.sh` does that for the
//! fuzzer's working corpus).

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
fn seeds_replay() {
    for (_, kind, line) in SEEDS {
        snapguard_dmtarget::fuzz_one(&encode(*kind, line));
    }
    if let Some(out) = std::env::var_os("SNAPGUARD_SEED_DIR") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        for (name, kind, line) in SEEDS {
            std::fs::write(out.join(name), encode(*kind, line)).unwrap();
        }
        eprintln!("{} seeds written to {}", SEEDS.len(), out.display());
    }
}

#[test]
fn regression_corpus_replays() {
    // Inputs the fuzzer found, if any (`tests/corpus/`, kept in git).
    let Ok(rd) = std::fs::read_dir(dir()) else {
        return;
    };
    for e in rd {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        snapguard_dmtarget::fuzz_one(&data);
    }
}
