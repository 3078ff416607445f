//! Every fixture made by `tools/fixtures/mkimages.sh` with the real tools
//! gets the file system, verdict, sleeping-OS flag and evidence its state
//! stands for (see Documentation/hibernation-evidence.rst, "Fixtures").

mod common;

use common::{fixtures, kinds, probe_bytes};

#[test]
fn every_fixture_gets_its_verdict() {
    let all = fixtures("fixtures-verdicts");
    assert!(all.len() >= 45, "only {} fixtures", all.len());
    let mut failures = vec![];
    for f in all {
        let data = std::fs::read(&f.path).unwrap();
        let rep = probe_bytes(&data);
        let mut want = f.kinds.clone();
        want.sort();
        let got = (
            rep.fs().as_str(),
            rep.verdict().as_str(),
            rep.sleeping_os(),
            kinds(&rep),
        );
        if got
            != (
                f.fs.as_str(),
                f.verdict.as_str(),
                f.sleeping_os,
                want.clone(),
            )
        {
            failures.push(format!(
                "{}: want {} {} {} {:?}, got {:?}\n  {:#?}",
                f.name,
                f.fs,
                f.verdict,
                f.sleeping_os,
                want,
                got,
                rep.evidence()
            ));
        }
        // Evidence offsets lie on the device.
        for e in rep.evidence() {
            assert!(
                e.offset() <= data.len() as u64,
                "{}: offset {} past the end",
                f.name,
                e.offset()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The probe stays cheap on real layouts (the per-probe bound is far above).
#[test]
fn probes_are_cheap() {
    for f in fixtures("fixtures-verdicts") {
        let rep = probe_bytes(&std::fs::read(&f.path).unwrap());
        assert!(rep.reads() <= 24, "{}: {} reads", f.name, rep.reads());
        assert!(
            rep.bytes_read() <= 64 * 1024,
            "{}: {} bytes",
            f.name,
            rep.bytes_read()
        );
    }
}

/// The fragmented fixture really has what it is meant to exercise: an
/// $ATTRIBUTE_LIST and many runs for hiberfil.sys, and a root directory
/// with an $INDEX_ALLOCATION (checked with ntfs-3g's ntfsinfo).
#[test]
fn fragmented_fixture_is_fragmented() {
    let f = common::fixture(fixtures("fixtures-verdicts"), "ntfs-hiberfil-frag");
    let out = common::tool("ntfsinfo")
        .args(["-v", "-F", "hiberfil.sys"])
        .arg(&f.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("$ATTRIBUTE_LIST"), "{text}");
    let runs: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("Total runs: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(runs > 100, "{runs} runs");
    let root = common::tool("ntfsinfo")
        .args(["-i", "5"])
        .arg(&f.path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&root.stdout).contains("$INDEX_ALLOCATION"));
}

/// mkimages.sh finds $LogFile with its own od-based runlist reading; it
/// must agree with ntfsinfo.
#[test]
fn fixture_script_finds_logfile_like_ntfsinfo() {
    let f = common::fixture(fixtures("fixtures-verdicts"), "ntfs-log-unclean");
    let out = common::tool("ntfsinfo")
        .args(["-v", "-i", "2"])
        .arg(&f.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let run = text
        .lines()
        .skip_while(|l| !l.contains("Runlist:"))
        .nth(1)
        .unwrap();
    let lcn = u64::from_str_radix(
        run.split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let data = std::fs::read(&f.path).unwrap();
    // 4 KiB clusters on the default mkntfs image: the restart page is there.
    assert_eq!(&data[(lcn * 4096) as usize..][..4], b"RSTR");
}
