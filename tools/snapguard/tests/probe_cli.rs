//! `snapguard probe` end to end: the built binary on fixture images made by
//! `tools/fixtures/mkimages.sh` with the real tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const NAMES: &[&str] = &[
    "ntfs-clean",
    "ntfs-hiberfil-HIBR",
    "ntfs-log-unclean",
    "fat32-dirty",
    "exfat-clean",
    "swap-S1SUSPEND-4096",
    "ntfs-truncated",
    "garbage",
    "ntfs-backup-hiberfil",
    "ntfs-4k-backup-hiberfil",
    "fat32-dirty-nojump",
];

fn fixtures() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-cli");
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mkimages.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .args(NAMES)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkimages.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn img(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.img"))
}

fn snapguard(args: &[&str], paths: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapguard"))
        .args(args)
        .args(paths)
        .output()
        .unwrap()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect()
}

#[test]
fn json_fields_per_volume() {
    let paths: Vec<PathBuf> = NAMES[..8].iter().map(|n| img(n)).collect();
    let o = snapguard(&["probe", "--json"], &paths);
    assert_eq!(o.status.code(), Some(1));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), paths.len());
    let want = [
        ("ntfs", "clean"),
        ("ntfs", "hibernated"),
        ("ntfs", "unclean"),
        ("fat32", "unclean"),
        ("exfat", "clean"),
        ("swap", "hibernated"),
        ("ntfs", "corrupt"),
        ("unknown", "unsupported"),
    ];
    for ((j, (fs, verdict)), path) in lines.iter().zip(want).zip(&paths) {
        assert_eq!(j["path"], path.display().to_string());
        assert_eq!(j["fs"], fs, "{j}");
        assert_eq!(j["verdict"], verdict, "{j}");
        for e in j["evidence"].as_array().unwrap() {
            assert!(
                e["kind"].is_string() && e["detail"].is_string() && e["offset"].is_u64(),
                "{e}"
            );
        }
    }
    let hib = &lines[1];
    assert_eq!(hib["sleeping_os"], true);
    assert!(hib["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "hiberfil_live"));
    assert!(hib["remedy"].as_str().unwrap().contains("Fast Startup"));
    assert_eq!(lines[3]["evidence"][0]["offset"], 0x41);
}

#[test]
fn exit_codes() {
    let ok = snapguard(
        &["probe"],
        &[img("ntfs-clean"), img("exfat-clean"), img("garbage")],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = snapguard(&["probe"], &[img("ntfs-clean"), img("fat32-dirty")]);
    assert_eq!(bad.status.code(), Some(1));
    let hib = snapguard(&["probe"], &[img("swap-S1SUSPEND-4096")]);
    assert_eq!(hib.status.code(), Some(1));
    let missing = snapguard(
        &["probe", "--json"],
        &[img("ntfs-hiberfil-HIBR"), fixtures().join("nope.img")],
    );
    assert_eq!(missing.status.code(), Some(2));
    let lines = json_lines(&missing);
    assert_eq!(
        lines[1]["error"]
            .as_str()
            .map(|s| s.starts_with("cannot open")),
        Some(true)
    );
    let usage = snapguard(&["probe"], &[]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = snapguard(&["probe", "--bogus"], &[img("ntfs-clean")]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn human_output_has_verdict_evidence_and_remedy() {
    let o = snapguard(&["probe"], &[img("ntfs-hiberfil-HIBR")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ntfs, hibernated"), "{text}");
    assert!(text.contains("hiberfil_live at byte"), "{text}");
    assert!(
        text.contains("remedy: resume Windows and shut it down fully"),
        "{text}"
    );
    let o = snapguard(&["probe"], &[img("ntfs-log-unclean")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("logfile_unclean") && text.contains("chkdsk"),
        "{text}"
    );
}

/// A volume whose primary boot sector is damaged is read through its
/// backup boot sector (as ntfs3 mounts it), which the evidence names with
/// its offset: the last 512 bytes, or the last 4 KiB sector (mkntfs -s
/// 4096). A FAT boot sector without a jump instruction is FAT.
#[test]
fn damaged_boot_sectors_are_recognised() {
    let names = [
        "ntfs-backup-hiberfil",
        "ntfs-4k-backup-hiberfil",
        "fat32-dirty-nojump",
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| img(n)).collect();
    let o = snapguard(&["probe", "--json"], &paths);
    assert_eq!(o.status.code(), Some(1));
    let lines = json_lines(&o);
    for (j, (path, back)) in lines.iter().zip(paths.iter().zip([512u64, 4096])).take(2) {
        assert_eq!(
            (j["fs"].as_str(), j["verdict"].as_str()),
            (Some("ntfs"), Some("hibernated")),
            "{j}"
        );
        let size = std::fs::metadata(path).unwrap().len();
        let ev = j["evidence"].as_array().unwrap();
        assert!(
            ev.iter().any(|e| e["kind"] == "info"
                && e["offset"] == size - back
                && e["detail"].as_str().unwrap().contains("backup boot sector")),
            "{j}"
        );
        assert!(ev.iter().any(|e| e["kind"] == "hiberfil_live"), "{j}");
    }
    assert_eq!(
        (lines[2]["fs"].as_str(), lines[2]["verdict"].as_str()),
        (Some("fat32"), Some("unclean"))
    );
}

#[test]
fn protect_ignores_image_files() {
    // `--protect` acts on block devices only; on files it changes nothing
    // and the exit codes stay those of `probe`.
    let hib = img("ntfs-hiberfil-HIBR");
    let before = std::fs::read(&hib).unwrap();
    let o = snapguard(&["probe", "--protect"], &[hib.clone(), img("ntfs-clean")]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("read-only at the block layer"), "{out}");
    assert_eq!(std::fs::read(&hib).unwrap(), before);
}

/// Runs `cmd`, returning its trimmed stdout, or `None` if it failed.
fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn protect_sets_blkroset_on_a_hibernated_loop_device() {
    // Needs root and loop devices; without the snapguard module the tool
    // sets the flag itself (`blockdev --setro`).
    if run("id", &["-u"]).as_deref() != Some("0")
        || std::path::Path::new("/sys/kernel/snapguard").exists()
    {
        eprintln!("skipped: needs root, and the snapguard module not loaded");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-protect");
    std::fs::create_dir_all(&dir).unwrap();
    let (hib, clean) = (dir.join("hib.img"), dir.join("clean.img"));
    std::fs::copy(img("ntfs-hiberfil-HIBR"), &hib).unwrap();
    std::fs::copy(img("ntfs-clean"), &clean).unwrap();
    let attach = |p: &Path| run("losetup", &["-f", "--show", p.to_str().unwrap()]);
    let (Some(l1), Some(l2)) = (attach(&hib), attach(&clean)) else {
        eprintln!("skipped: no loop devices");
        return;
    };
    // A loop device keeps its read-only flag across detach: start clean.
    let _ = run("blockdev", &["--setrw", &l1, &l2]);
    let o = snapguard(
        &["probe", "--protect"],
        &[l1.clone().into(), l2.clone().into()],
    );
    let ro1 = run("blockdev", &["--getro", &l1]);
    let ro2 = run("blockdev", &["--getro", &l2]);
    let dd = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={l1}"),
            "bs=512",
            "count=1",
            "conv=notrunc",
        ])
        .output()
        .unwrap();
    let _ = run("blockdev", &["--setrw", &l1, &l2]);
    let _ = run("losetup", &["-d", &l1, &l2]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "made read-only at the block layer; lift with: blockdev --setrw {l1}"
        )),
        "{out}"
    );
    assert_eq!(ro1.as_deref(), Some("1"));
    assert_eq!(ro2.as_deref(), Some("0"));
    assert!(!dd.status.success());
    assert!(String::from_utf8_lossy(&dd.stderr).contains("Operation not permitted"));
    assert_eq!(
        std::fs::read(&hib).unwrap(),
        std::fs::read(img("ntfs-hiberfil-HIBR")).unwrap()
    );
}
