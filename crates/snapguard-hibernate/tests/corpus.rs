//! The probe's corpus: every fixture (`tools/fixtures/mkimages.sh`, made
//! here with the real mkfs tools) shrunk to the blocks the probe reads, in
//! the `sparse` format, must keep its fixture's verdict when probed from
//! the shrunk form; the inputs the fuzzer found (`tests/corpus/fuzz-*`,
//! kept in git) must keep the read bounds and not panic. With
//! `SNAPGUARD_SEED_DIR=DIR` the shrunk fixtures are also written into DIR
//! as `NAME.sgsp` (`tools/fuzz.sh` does that for the fuzzer's working
//! corpus).

mod common;
#[path = "common/shrink.rs"]
mod shrink;

use snapguard_hibernate::sparse::SparseDev;
use snapguard_hibernate::{probe, Report, MAX_BYTES, MAX_READS, SCRATCH_LEN};
use std::path::{Path, PathBuf};

fn probe_sparse(data: &[u8]) -> Report {
    let mut dev = SparseDev::new(data);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let rep = probe(&mut dev, &mut scratch).unwrap();
    assert!(rep.reads() <= MAX_READS && rep.bytes_read() <= MAX_BYTES);
    rep
}

#[test]
fn shrunk_fixtures_keep_their_verdicts() {
    let fixtures = common::fixtures("corpus");
    let out = std::env::var_os("SNAPGUARD_SEED_DIR").map(PathBuf::from);
    if let Some(out) = &out {
        std::fs::create_dir_all(out).unwrap();
    }
    for f in fixtures {
        let small = shrink::shrink(&std::fs::read(&f.path).unwrap());
        let rep = probe_sparse(&small);
        assert_eq!(
            (rep.fs().as_str(), rep.verdict().as_str()),
            (f.fs.as_str(), f.verdict.as_str()),
            "{}: {:?}",
            f.name,
            rep.evidence()
        );
        assert_eq!(rep.sleeping_os(), f.sleeping_os, "{}", f.name);
        if let Some(out) = &out {
            std::fs::write(out.join(format!("{}.sgsp", f.name)), &small).unwrap();
        }
    }
    assert!(fixtures.len() >= 40, "{} fixtures", fixtures.len());
}

#[test]
fn fuzzer_finds_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("fuzz-"),
            "{name}: tests/corpus holds only fuzzer finds (the fixtures are shrunk at test time)"
        );
        probe_sparse(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 20, "{n} fuzzer finds");
}
