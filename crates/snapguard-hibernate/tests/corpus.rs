//! Replays the regression corpus (`tests/corpus/`: real fixtures shrunk to
//! the blocks the probe reads, in the `sparse` format, and inputs the
//! fuzzer found) through the probe. Files named in `expect.tsv` must keep
//! their fixture's verdict; all must keep the read bounds and not panic.

use snapguard_hibernate::sparse::SparseDev;
use snapguard_hibernate::{probe, MAX_BYTES, MAX_READS, SCRATCH_LEN};
use std::path::Path;

#[test]
fn replay_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let expect = std::fs::read_to_string(dir.join("expect.tsv")).unwrap();
    let mut n = 0;
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "tsv") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let mut dev = SparseDev::new(&data);
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let rep = probe(&mut dev, &mut scratch).unwrap();
        assert!(rep.reads() <= MAX_READS && rep.bytes_read() <= MAX_BYTES);
        n += 1;
        let stem = path.file_stem().unwrap().to_str().unwrap();
        if let Some(row) = expect.lines().find(|l| l.split('\t').next() == Some(stem)) {
            let c: Vec<&str> = row.split('\t').collect();
            assert_eq!(
                (rep.fs().as_str(), rep.verdict().as_str()),
                (c[1], c[2]),
                "{stem}: {:?}",
                rep.evidence()
            );
            assert_eq!(rep.sleeping_os().to_string(), c[3], "{stem}");
            checked += 1;
        }
    }
    assert!(
        n >= 40 && checked >= 40,
        "{n} files, {checked} with expectations"
    );
}
