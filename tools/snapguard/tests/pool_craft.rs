//! `snapguard pool craft` (the hidden generator of corrupted pool images
//! for `selftests/target_crafted.sh`): it runs with the host checker (it
//! fails if an image does not do what it was made for: refused, opened,
//! or a corruption the checker must see), its manifest agrees with
//! `snapguard pool check` on every image, the output is deterministic and
//! the live-corruption pool is what the guest test expects.

use std::path::{Path, PathBuf};
use std::process::Command;

fn craft(dir: &Path, extra: &[&str]) {
    let _ = std::fs::remove_dir_all(dir);
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/snapguard-pool/tests/corpus");
    let o = Command::new(env!("CARGO_BIN_EXE_snapguard"))
        .args(["pool", "craft"])
        .arg(dir)
        .arg("--corpus")
        .arg(&corpus)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("snapguard-craft-{}-{name}", std::process::id()))
}

fn check_exit(p: &Path) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_snapguard"))
        .args(["pool", "check"])
        .arg(p)
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn craft_images_agree_with_check() {
    let dir = tmp("a");
    craft(&dir, &["--mutants", "5", "--seed", "7"]);
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = manifest
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    let count = |f: &dyn Fn(&Vec<&str>) -> bool| rows.iter().filter(|r| f(r)).count();
    let deliberate = count(&|r| !r[0].starts_with("corpus-") && !r[0].starts_with("mutant-"));
    let refused = count(&|r| r[1] == "refuse");
    let opened = count(&|r| r[1] == "open");
    eprintln!(
        "{} images: {deliberate} deliberate, {refused} refused, {opened} opened",
        rows.len()
    );
    assert!(deliberate >= 70 && refused >= 20 && opened >= 40);
    assert_eq!(count(&|r| r[0].starts_with("mutant-")), 5);
    // 4 fuzzer finds from the directory, 4 seeds the pool core builds.
    assert_eq!(count(&|r| r[0].starts_with("corpus-fuzz-")), 4);
    assert_eq!(count(&|r| r[0].starts_with("corpus-seed-")), 4);
    for r in &rows {
        assert_eq!(r.len(), 7, "{r:?}");
        let img = dir.join(format!("{}.img", r[0]));
        assert!(img.exists(), "{}", r[0]);
        // The tool reads the image as the kernel does: a refused image
        // has no valid superblock for it either (exit 1), an opened one
        // checks clean exactly when the manifest says so.
        let code = check_exit(&img);
        match (r[1], r[5]) {
            ("refuse", _) => assert_eq!(code, Some(1), "{}", r[0]),
            ("open", "clean") => assert_eq!(code, Some(0), "{}", r[0]),
            ("open", e) if e.starts_with("error:") => {
                assert!(matches!(code, Some(1 | 2)), "{}", r[0])
            }
            ("open", _) => assert_eq!(code, Some(1), "{}: {}", r[0], r[5]),
            _ => {}
        }
    }
    // The base pool and one corruption per block type are there.
    for name in [
        "base",
        "sb-both-bitflip",
        "sidx-bitflip",
        "msm-bitflip",
        "dsm-bitflip",
        "dint-bitflip",
        "dleaf-bitflip",
        "vint-root-bitflip",
        "vint-level1-bitflip",
        "vleaf-bitflip",
        "tree-loop-to-root",
        "refcount-data-minus1",
        "truncated-one-block",
        "sb-second-zeroed",
    ] {
        assert!(rows.iter().any(|r| r[0] == name), "{name}");
    }
    // The live-corruption pool: clean, 400 extents in 400 leaves.
    assert_eq!(check_exit(&dir.join("live.img")), Some(0));
    let map = std::fs::read_to_string(dir.join("live-map.tsv")).unwrap();
    let leaves: std::collections::BTreeSet<&str> =
        map.lines().map(|l| l.split('\t').nth(2).unwrap()).collect();
    assert_eq!(map.lines().count(), 400);
    assert_eq!(leaves.len(), 400);
    // Deterministic: the guest makes the images the host tested.
    let again = tmp("b");
    craft(&again, &["--mutants", "5", "--seed", "7", "--no-check"]);
    // Without the checker the check column is "-".
    let strip = |m: &str| -> Vec<String> {
        m.lines()
            .map(|l| {
                let mut c: Vec<&str> = l.split('\t').collect();
                if c.len() == 7 {
                    c[5] = "-";
                }
                c.join("\t")
            })
            .collect()
    };
    let m2 = std::fs::read_to_string(again.join("manifest.tsv")).unwrap();
    assert_eq!(strip(&m2), strip(&manifest));
    for r in &rows {
        let f = format!("{}.img", r[0]);
        assert!(
            std::fs::read(dir.join(&f)).unwrap() == std::fs::read(again.join(&f)).unwrap(),
            "{f}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}
