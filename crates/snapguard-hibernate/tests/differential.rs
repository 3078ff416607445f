//! Differential checks on the same fixture images against real peers:
//! ntfs-3g's own mount-time verdict, `fsck.fat -n` for FAT dirty bits,
//! `blkid -p` for swap hibernation signatures. Where snapguard deliberately
//! differs from a peer, the table says so and why, and the test asserts the
//! difference (so a change on either side is noticed).

mod common;

use common::{fixtures, kinds, probe_bytes, tool};
use std::path::Path;
use std::process::Command;

/// What `ntfs-3g -o rw` did: the mount state in /proc/mounts ("rw", "ro" or
/// "none" when it refused) and its messages.
fn ntfs3g(img: &Path, dir: &Path) -> (String, String) {
    // ntfs-3g may write (it resets an unclean $LogFile): use a copy.
    let copy = dir.join("copy.img");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(img)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = tool("ntfs-3g")
        .arg("-o")
        .arg("rw")
        .arg(&copy)
        .arg(&mnt)
        .output()
        .unwrap();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let mnt_s = mnt.to_str().unwrap();
    let state = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt_s))
        .and_then(|l| l.split(' ').nth(3))
        .map(|o| o.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| "none".to_string());
    if state != "none" {
        let u = tool("fusermount").arg("-u").arg(&mnt).status().unwrap();
        assert!(u.success(), "fusermount -u failed");
    }
    let msg =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (state, msg)
}

/// (fixture, ntfs-3g mount state, a message ntfs-3g prints or "", why the
/// two agree or differ)
const NTFS: &[(&str, &str, &str, &str)] = &[
    ("ntfs-clean", "rw", "", "agree: clean"),
    (
        "ntfs-hiberfil-HIBR",
        "ro",
        "Windows is hibernated",
        "agree: hibernated",
    ),
    (
        "ntfs-hiberfil-hibr",
        "ro",
        "Windows is hibernated",
        "agree: hibernated",
    ),
    (
        "ntfs-hiberfil-frag",
        "ro",
        "Windows is hibernated",
        "agree: hibernated, header through a fragmented runlist",
    ),
    (
        "ntfs-hiberfil-tiny",
        "ro",
        "Hibernated non-system partition",
        "agree: short hiberfil.sys",
    ),
    (
        "ntfs-hiberfil-3k",
        "ro",
        "Hibernated non-system partition",
        "agree: short hiberfil.sys",
    ),
    ("ntfs-hiberfil-wake", "rw", "", "agree: spent image"),
    ("ntfs-hiberfil-WAKE", "rw", "", "agree: spent image"),
    ("ntfs-hiberfil-zero", "rw", "", "agree: spent image"),
    // DIFFERS: ntfs-3g only refuses hibr/HIBR. RSTR means Windows began
    // resuming from the image and did not finish; Windows may still try to
    // resume from it, so snapguard stays on the safe side.
    (
        "ntfs-hiberfil-RSTR",
        "rw",
        "",
        "differs: snapguard says hibernated",
    ),
    // DIFFERS: an unknown non-zero header is "hibernated" for the kernel's
    // own fs/ntfs (check_windows_hibernation_status), which snapguard
    // follows; ntfs-3g mounts read-write.
    (
        "ntfs-hiberfil-junk",
        "rw",
        "",
        "differs: snapguard says hibernated",
    ),
    ("ntfs-log-clean", "rw", "", "agree: clean log"),
    // DIFFERS: ntfs-3g prints that the log is unclean, then resets
    // $LogFile and mounts read-write (its `recover` default); snapguard
    // reports the volume unclean, because replaying is Windows' job and a
    // reset throws away what Windows would have replayed.
    (
        "ntfs-log-unclean",
        "rw",
        "The disk contains an unclean file system",
        "differs: snapguard says unclean",
    ),
    (
        "ntfs-log-faststartup",
        "ro",
        "Metadata kept in Windows cache",
        "agree: hibernated (Fast Startup)",
    ),
    (
        "ntfs-log-v2-clean",
        "ro",
        "Metadata kept in Windows cache",
        "agree: hibernated (log v2.0)",
    ),
    (
        "ntfs-faststartup-full",
        "ro",
        "Windows is hibernated",
        "agree: hibernated",
    ),
    // DIFFERS: restart pages that fail the consistency checks; ntfs-3g
    // resets the log and mounts read-write, snapguard calls the volume
    // corrupt (it cannot tell what state the journal is in).
    (
        "ntfs-log-garbage",
        "rw",
        "",
        "differs: snapguard says corrupt",
    ),
    // DIFFERS: ntfs-3g does not look at $Volume's dirty flag at mount;
    // snapguard reports it (chkdsk is pending).
    (
        "ntfs-volume-dirty",
        "rw",
        "",
        "differs: snapguard says unclean",
    ),
    ("ntfs-truncated", "none", "", "agree: unusable (corrupt)"),
    (
        "ntfs-root-zeroed",
        "none",
        "Record 5 has no FILE magic",
        "agree: unusable (corrupt)",
    ),
    (
        "ntfs-bootsector-only",
        "none",
        "",
        "agree: unusable (corrupt)",
    ),
    // DIFFERS: a damaged primary boot sector. ntfs-3g mounts only from
    // the primary; the kernel's ntfs3 mounts from the backup boot sector
    // at the end of the device (and rewrites the primary; in 7.3 on a
    // device with 4096-byte logical blocks), so snapguard reads the volume
    // through the backup as well.
    (
        "ntfs-backup-clean",
        "none",
        "NTFS signature is missing",
        "differs: ntfs3 mounts it from the backup; snapguard says clean",
    ),
    (
        "ntfs-backup-hiberfil",
        "none",
        "NTFS signature is missing",
        "differs: ntfs3 mounts it from the backup; snapguard says hibernated",
    ),
    (
        "ntfs-backup-bps-hiberfil",
        "none",
        "",
        "differs: ntfs3 mounts it from the backup; snapguard says hibernated",
    ),
    // The backup where mkntfs -s 4096 (and Windows on 4Kn disks) puts it,
    // at the start of the last 4 KiB sector.
    (
        "ntfs-4k-backup-hiberfil",
        "none",
        "NTFS signature is missing",
        "differs: a backup boot sector is there; snapguard says hibernated",
    ),
    (
        "ntfs-no55aa-hiberfil",
        "ro",
        "Windows is hibernated",
        "agree: no driver needs the 0x55AA end marker",
    ),
    (
        "ntfs-bps-nobackup",
        "none",
        "",
        "agree: unusable (corrupt), both boot sectors damaged",
    ),
];

#[test]
fn ntfs_3g_verdicts() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is required for the ntfs-3g differential test"
    );
    let all = fixtures("differential");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-ntfs3g");
    std::fs::create_dir_all(&dir).unwrap();
    let ntfs: Vec<_> = all.iter().filter(|f| f.fs == "ntfs").collect();
    assert_eq!(
        ntfs.len(),
        NTFS.len(),
        "every NTFS fixture has a row in the table"
    );
    let mut failures = vec![];
    for &(name, state, msg, why) in NTFS {
        let f = common::fixture(all, name);
        let rep = probe_bytes(&std::fs::read(&f.path).unwrap());
        let (got_state, got_msg) = ntfs3g(&f.path, &dir);
        if got_state != state || !got_msg.contains(msg) {
            failures.push(format!(
                "{name}: ntfs-3g {got_state} {got_msg:?}, expected {state} with {msg:?}"
            ));
        }
        let sg = rep.verdict().as_str();
        // Where both agree, ntfs-3g's fallback to read-only means
        // hibernated, a read-write mount clean, no mount corrupt.
        let agreed = match state {
            "ro" => "hibernated",
            "rw" => "clean",
            _ => "corrupt",
        };
        let consistent = match why.split(':').next().unwrap() {
            "agree" => sg == agreed,
            _ => sg != agreed && why.ends_with(&format!("snapguard says {sg}")),
        };
        if !consistent {
            failures.push(format!("{name}: snapguard {sg}, ntfs-3g {state}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fsck_fat_dirty_bits() {
    for f in fixtures("differential")
        .iter()
        .filter(|f| f.fs.starts_with("fat"))
    {
        let out = tool("fsck.fat").arg("-n").arg(&f.path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let rep = probe_bytes(&std::fs::read(&f.path).unwrap());
        let k = kinds(&rep);
        let fsck_dirty = text.contains("Dirty bit is set");
        // dosfstools reads both the boot-sector flag and FAT entry 1's
        // clean-shutdown bit as "dirty": so does snapguard.
        let sg_dirty = k
            .iter()
            .any(|k| k == "fat_dirty" || k == "fat_unclean_shutdown");
        assert_eq!(
            fsck_dirty, sg_dirty,
            "{}: fsck.fat says {text:?}, snapguard {k:?}",
            f.name
        );
        match f.name.as_str() {
            // DIFFERS: fsck.fat ignores FAT entry 1's hard-error bit
            // (Windows sets it after I/O errors and runs chkdsk); snapguard
            // reports it as unclean.
            n if n.ends_with("-hard-error") => {
                assert!(out.status.success(), "{n}: {text}");
                assert_eq!(rep.verdict().as_str(), "unclean");
            }
            // DIFFERS: a DOS 1.x floppy has no BPB; fsck.fat cannot
            // check it, vfat mounts it with -o dos1xfloppy, snapguard
            // recognises it (and finds no state to check).
            n if n.ends_with("-dos1x") => {
                assert!(!out.status.success(), "{n}: {text}");
                assert!(text.contains("Logical sector size is zero"), "{n}: {text}");
                assert_eq!(rep.verdict().as_str(), "clean");
            }
            // A truncated copy: fsck.fat cannot read it either.
            n if n.ends_with("-truncated") => {
                assert!(!out.status.success());
                assert_eq!(rep.verdict().as_str(), "corrupt");
            }
            n => assert_eq!(
                out.status.success(),
                rep.verdict().as_str() == "clean",
                "{n}: {text}"
            ),
        }
    }
}

#[test]
fn blkid_swsuspend() {
    for f in fixtures("differential").iter().filter(|f| f.fs == "swap") {
        let out = tool("blkid")
            .args(["-p", "-o", "export"])
            .arg(&f.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let ty = text
            .lines()
            .find_map(|l| l.strip_prefix("TYPE="))
            .unwrap_or("")
            .to_string();
        let rep = probe_bytes(&std::fs::read(&f.path).unwrap());
        let want = if rep.verdict().as_str() == "hibernated" {
            "swsuspend"
        } else {
            "swap"
        };
        assert_eq!(
            ty,
            want,
            "{}: blkid {text:?}, snapguard {:?}",
            f.name,
            rep.evidence()
        );
        assert_eq!(rep.sleeping_os(), ty == "swsuspend");
    }
}

/// DIFFERS: exfatprogs' `fsck.exfat -n` reports a volume with VolumeDirty
/// or MediaFailure set as clean (it checks the structures, not the flags);
/// the kernel's exfat driver and snapguard treat both flags as unclean.
#[test]
fn fsck_exfat_ignores_volume_flags() {
    for f in fixtures("differential").iter().filter(|f| f.fs == "exfat") {
        let out = tool("fsck.exfat").arg("-n").arg(&f.path).output().unwrap();
        assert!(out.status.success(), "{}", f.name);
        let rep = probe_bytes(&std::fs::read(&f.path).unwrap());
        assert_eq!(
            rep.verdict().as_str(),
            if f.name == "exfat-clean" {
                "clean"
            } else {
                "unclean"
            }
        );
    }
}
