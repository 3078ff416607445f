//! `snapguard pool`: format, check, dump and list snapshot pool metadata
//! (a metadata device or an image file), like thin_check and thin_dump.
//!
//! Exit codes: 0 success (`check`: clean; with `--clear-needs-check`,
//! clean and the `needs_check` flag cleared or not set), 1 corrupt
//! metadata (`--clear-needs-check`: the flag is left set), 2 usage or I/O
//! error.

use clap::{Args, Subcommand};
use serde::Serialize;
use snapguard_pool::host::{slots, FileDevice};
use snapguard_pool::{
    max_data_extents, min_meta_blocks, Error, FormatParams, Mapping, MetaDevice, Pool, PoolStats,
    BLOCK_SIZE, DEFAULT_MAX_VOLUMES, FORMAT_VERSION, MAX_EXTENT_SIZE, MIN_EXTENT_SIZE,
};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `snapguard pool`.
#[derive(Args, Debug)]
pub(crate) struct PoolArgs {
    #[command(subcommand)]
    cmd: PoolCmd,
}

#[derive(Subcommand, Debug)]
enum PoolCmd {
    /// Write an empty pool to a metadata device or image file.
    Format {
        /// Metadata device or image file.
        path: PathBuf,
        /// Extent size: power of two from 4k to 1g.
        #[arg(long, default_value = "64k", value_parser = parse_size)]
        extent_size: u64,
        /// Number of data extents.
        #[arg(long, conflicts_with = "data_size")]
        data_extents: Option<u64>,
        /// Data device size (rounded down to whole extents).
        #[arg(long, value_parser = parse_size)]
        data_size: Option<u64>,
        /// Create or resize the image file to this size first.
        #[arg(long, value_parser = parse_size)]
        meta_size: Option<u64>,
        /// Maximum number of volumes (ids 0..N).
        #[arg(long, default_value_t = DEFAULT_MAX_VOLUMES)]
        max_volumes: u32,
        /// Data device size the pool may grow to later at no cost (the
        /// metadata reserves 8 bytes per extent of it); beyond, growing
        /// adds a growth extension.
        #[arg(long, value_parser = parse_size)]
        max_data_size: Option<u64>,
        /// Metadata device size the pool may grow to later at no cost;
        /// beyond, growing adds a growth extension.
        #[arg(long, value_parser = parse_size)]
        max_meta_size: Option<u64>,
    },
    /// Verify checksums, tree shape and every reference count; say
    /// whether the `needs_check` flag is set.
    Check {
        /// Metadata device or image file.
        path: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// If the check is clean, clear the `needs_check` flag (the
        /// kernel's pool then opens read-write again); if it is not, leave
        /// it set and exit 1. Writes the superblock.
        #[arg(long)]
        clear_needs_check: bool,
    },
    /// Print the pool, its volumes and their mappings.
    Dump {
        /// Metadata device or image file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only this volume.
        #[arg(long)]
        volume: Option<u32>,
    },
    /// List the volumes.
    Ls {
        /// Metadata device or image file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Test support (hidden): write corrupted pool images and their
    /// manifest for selftests/target_crafted.sh (see
    /// Documentation/testing.rst, "Crafted input").
    #[command(hide = true)]
    Craft {
        /// Output directory.
        outdir: PathBuf,
        /// Also decode this fuzz corpus directory (the pool fuzz target's
        /// input format) and the generated fuzz seeds into images.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Random mutants of the base pool (checksums recomputed).
        #[arg(long, default_value_t = 0)]
        mutants: usize,
        /// Seed of the mutants.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Skip the host checker (faster; the check column says `-`).
        #[arg(long)]
        no_check: bool,
    },
}

/// Cache arena for the tools: 16 MiB.
const CACHE_SLOTS: usize = 4096;

/// Parses a size with an optional binary suffix (k, m, g, t).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("invalid size {s:?}"))
}

enum Fail {
    /// Exit 1.
    Corrupt(String),
    /// Exit 2.
    Other(String),
}

impl Fail {
    fn from_pool(what: &str, e: Error) -> Fail {
        match e {
            Error::Corrupt => Fail::Corrupt(format!("{what}: {e}")),
            _ => Fail::Other(format!("{what}: {e}")),
        }
    }
}

fn open_file(path: &Path, write: bool) -> Result<FileDevice, Fail> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| Fail::Other(format!("{}: {e}", path.display())))?;
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Fail::Other(format!("{}: {e}", path.display())))?;
    Ok(FileDevice::new(f, len))
}

pub(crate) fn run(args: PoolArgs) -> ExitCode {
    let r = match args.cmd {
        PoolCmd::Format {
            path,
            extent_size,
            data_extents,
            data_size,
            meta_size,
            max_volumes,
            max_data_size,
            max_meta_size,
        } => format(
            &path,
            extent_size,
            data_extents,
            data_size,
            meta_size,
            max_volumes,
            (max_data_size, max_meta_size),
        ),
        PoolCmd::Check {
            path,
            json,
            clear_needs_check,
        } => check(&path, json, clear_needs_check),
        PoolCmd::Dump { path, json, volume } => dump(&path, json, volume),
        PoolCmd::Ls { path, json } => ls(&path, json),
        PoolCmd::Craft {
            outdir,
            corpus,
            mutants,
            seed,
            no_check,
        } => crate::craft::run(&outdir, corpus.as_deref(), mutants, seed, !no_check)
            .map(|n| {
                println!("{n} images in {}", outdir.display());
                0
            })
            .map_err(Fail::Other),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(Fail::Corrupt(m)) => {
            eprintln!("snapguard pool: {m}");
            ExitCode::from(1)
        }
        Err(Fail::Other(m)) => {
            eprintln!("snapguard pool: {m}");
            ExitCode::from(2)
        }
    }
}

fn format(
    path: &Path,
    extent_size: u64,
    data_extents: Option<u64>,
    data_size: Option<u64>,
    meta_size: Option<u64>,
    max_volumes: u32,
    (max_data_size, max_meta_size): (Option<u64>, Option<u64>),
) -> Result<u8, Fail> {
    let data_extents = match (data_extents, data_size) {
        (Some(n), _) => n,
        (None, Some(bytes)) => bytes / extent_size.max(1),
        (None, None) => {
            return Err(Fail::Other(
                "format: give --data-extents or --data-size".into(),
            ))
        }
    };
    if let Some(sz) = meta_size {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Fail::Other(format!("{}: {e}", path.display())))?;
        f.set_len(sz)
            .map_err(|e| Fail::Other(format!("{}: {e}", path.display())))?;
    }
    let dev = open_file(path, true)?;
    let mut arena = slots(CACHE_SLOTS);
    let mut p = FormatParams::new(data_extents);
    p.extent_size = extent_size;
    p.max_volumes = max_volumes;
    p.data_capacity = max_data_size.map(|b| b / extent_size.max(1)).unwrap_or(0);
    p.meta_capacity = max_meta_size.map(|b| b / BLOCK_SIZE as u64).unwrap_or(0);
    let meta_blocks = dev.nr_blocks();
    let pool = Pool::format(dev, &mut arena, p).map_err(|e| {
        Fail::Other(format!(
            "format: {e}{}",
            size_hint(meta_blocks, extent_size, data_extents, data_size)
        ))
    })?;
    let st = pool.stats();
    println!(
        "formatted {}: format version {}, extent size {}, {} data extents (capacity {}), {} metadata blocks (capacity {}, {} fixed), {} volumes max",
        path.display(),
        FORMAT_VERSION,
        st.extent_size,
        st.data_extents,
        st.data_capacity,
        st.meta_blocks,
        st.meta_capacity,
        st.meta_fixed,
        st.max_volumes
    );
    Ok(0)
}

/// Says why a pool of `data_extents` does not fit and what would: the
/// limit for this metadata device, the smallest extent size that fits the
/// data size, the metadata size the extent count needs.
fn size_hint(
    meta_blocks: u64,
    extent_size: u64,
    data_extents: u64,
    data_size: Option<u64>,
) -> String {
    let max = max_data_extents(meta_blocks);
    if data_extents <= max {
        return String::new();
    }
    let bs = BLOCK_SIZE as u64;
    let mut out = format!(
        "\n{data_extents} data extents do not fit: a metadata device of {} bytes holds at most {max} data extents ({} bytes at extent size {extent_size})",
        meta_blocks * bs,
        u128::from(max) * u128::from(extent_size),
    );
    if let Some(bytes) = data_size {
        let mut es = extent_size.max(MIN_EXTENT_SIZE);
        while es <= MAX_EXTENT_SIZE && bytes / es > max {
            es *= 2;
        }
        if es <= MAX_EXTENT_SIZE {
            out += &format!("; --extent-size {} fits", human(es));
        }
    }
    match min_meta_blocks(data_extents) {
        Some(m) => {
            out += &format!(
                "; or a metadata device of at least {} bytes (space maps: 8 bytes per data extent, plus trees: about 6 bytes per mapped extent)",
                m * bs
            )
        }
        None => out += "; this many extents is beyond the format's limit at any metadata size",
    }
    out
}

fn human(n: u64) -> String {
    for (s, sh) in [("g", 30), ("m", 20), ("k", 10)] {
        if n >= 1 << sh && n % (1 << sh) == 0 {
            return format!("{}{s}", n >> sh);
        }
    }
    n.to_string()
}

#[derive(Serialize)]
struct JsonProblem {
    kind: String,
    block: u64,
    index: u64,
    found: u64,
    expected: u64,
}

#[derive(Serialize)]
struct JsonCheck {
    clean: bool,
    format_version: u32,
    errors: u64,
    problems: Vec<JsonProblem>,
    generation: u64,
    transaction_id: u64,
    /// The superblock's `needs_check` flag as found.
    needs_check: bool,
    /// `--clear-needs-check` cleared it.
    needs_check_cleared: bool,
    volumes: u64,
    nodes: u64,
    mapped: u64,
    meta_used: u64,
    data_used: u64,
}

fn check(path: &Path, json: bool, clear: bool) -> Result<u8, Fail> {
    let dev = open_file(path, clear)?;
    let mut arena = slots(CACHE_SLOTS);
    let mut probe = open_file(path, false)?;
    let mut buf = [0u8; BLOCK_SIZE];
    let found = Pool::probe_version(&mut probe, &mut buf);
    let mut pool = Pool::open(dev, &mut arena).map_err(|e| match (e, found) {
        (Error::Corrupt, Some(v)) if v != FORMAT_VERSION => Fail::Corrupt(format!(
            "format version {v} found; this snapguard reads format version {FORMAT_VERSION} only"
        )),
        (Error::Corrupt, _) => Fail::Corrupt("no valid superblock".into()),
        (e, _) => Fail::from_pool("open", e),
    })?;
    let st = pool.stats();
    // Reference counters for every metadata block and up to 64 Mi data
    // extents per walk.
    let len = st
        .meta_blocks
        .saturating_add(st.data_extents.min(64 << 20))
        .max(st.meta_blocks + 1);
    let mut scratch = vec![0u32; len as usize];
    let rep = pool
        .check(&mut scratch)
        .map_err(|e| Fail::from_pool("check", e))?;
    let problems: Vec<JsonProblem> = rep
        .problems
        .iter()
        .flatten()
        .map(|p| JsonProblem {
            kind: format!("{:?}", p.kind),
            block: p.block,
            index: p.index,
            found: p.found,
            expected: p.expected,
        })
        .collect();
    let flag = pool.needs_check();
    // Cleared only after a clean check of the committed state (the pool
    // was just opened: nothing else is in the transaction).
    let cleared = if clear && flag && rep.is_clean() {
        pool.clear_needs_check()
            .map_err(|e| Fail::from_pool("clearing needs_check", e))?;
        true
    } else {
        false
    };
    if json {
        let j = JsonCheck {
            clean: rep.is_clean(),
            format_version: pool.format_version(),
            errors: rep.errors,
            problems,
            generation: st.generation,
            transaction_id: st.transaction_id,
            needs_check: flag,
            needs_check_cleared: cleared,
            volumes: rep.volumes,
            nodes: rep.nodes,
            mapped: rep.mapped,
            meta_used: rep.meta_used,
            data_used: rep.data_used,
        };
        println!("{}", serde_json::to_string(&j).unwrap_or_default());
    } else {
        for p in &problems {
            println!(
                "problem: {} block {} index {} found {} expected {}",
                p.kind, p.block, p.index, p.found, p.expected
            );
        }
        if rep.errors > problems.len() as u64 {
            println!("... {} more problems", rep.errors - problems.len() as u64);
        }
        println!(
            "{}: format version {}, generation {}, transaction id {}, {} volumes, {} nodes, {} mapped entries, metadata {}/{} blocks, data {}/{} extents: {}",
            path.display(),
            pool.format_version(),
            st.generation,
            st.transaction_id,
            rep.volumes,
            rep.nodes,
            rep.mapped,
            rep.meta_used,
            st.meta_blocks,
            rep.data_used,
            st.data_extents,
            if rep.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", rep.errors)
            }
        );
        println!(
            "needs_check: {}",
            match (flag, cleared) {
                (false, _) => "no",
                (true, false) => "yes",
                (true, true) => "yes, cleared",
            }
        );
    }
    if clear && flag && !cleared {
        eprintln!(
            "snapguard pool: needs_check not cleared: the metadata has {} problems",
            rep.errors
        );
    }
    Ok(if rep.is_clean() { 0 } else { 1 })
}

#[derive(Serialize)]
struct JsonRun {
    vext: u64,
    pext: u64,
    len: u64,
    shared: bool,
}

#[derive(Serialize)]
struct JsonVolume {
    id: u32,
    size: u64,
    mapped: u64,
    shared: u64,
    bg_cursor: u64,
    bg_done: u64,
    /// Being deleted in steps (a half-deleted volume after a crash).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mappings: Option<Vec<JsonRun>>,
}

#[derive(Serialize)]
struct JsonPool {
    generation: u64,
    transaction_id: u64,
    needs_check: bool,
    extent_size: u64,
    data_extents: u64,
    data_free: u64,
    meta_blocks: u64,
    meta_free: u64,
    data_capacity: u64,
    meta_capacity: u64,
    growth_extensions: usize,
    volumes: Vec<JsonVolume>,
}

fn open_ro(path: &Path) -> Result<(FileDevice, Vec<snapguard_pool::CacheSlot>), Fail> {
    Ok((open_file(path, false)?, slots(CACHE_SLOTS)))
}

/// Walks a volume's mappings into runs of consecutive extents.
fn volume_json(
    pool: &mut Pool<'_, FileDevice>,
    id: u32,
    with_maps: bool,
) -> Result<JsonVolume, Fail> {
    // Listed, so that a volume being deleted in steps shows too.
    let info = pool
        .next_volume(id)
        .map_err(|e| Fail::from_pool("volume", e))?
        .filter(|v| v.id == id)
        .ok_or_else(|| Fail::from_pool("volume", snapguard_pool::Error::NotFound))?;
    let mut runs: Vec<JsonRun> = vec![];
    let (mut mapped, mut shared_n) = (0u64, 0u64);
    let mut pos = 0;
    while let Some((k, m)) = pool
        .next_mapping(id, pos)
        .map_err(|e| Fail::from_pool("mapping", e))?
    {
        pos = k + 1;
        let Mapping::Mapped { pext, shared } = m else {
            continue;
        };
        mapped += 1;
        shared_n += u64::from(shared);
        if !with_maps {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.vext + r.len == k && r.pext + r.len == pext && r.shared == shared => {
                r.len += 1
            }
            _ => runs.push(JsonRun {
                vext: k,
                pext,
                len: 1,
                shared,
            }),
        }
    }
    Ok(JsonVolume {
        id,
        size: info.size,
        mapped,
        shared: shared_n,
        bg_cursor: info.bg_cursor,
        bg_done: info.bg_done,
        deleting: info.deleting,
        mappings: with_maps.then_some(runs),
    })
}

fn volumes_json(
    pool: &mut Pool<'_, FileDevice>,
    only: Option<u32>,
    with_maps: bool,
) -> Result<Vec<JsonVolume>, Fail> {
    let mut out = vec![];
    if let Some(id) = only {
        out.push(volume_json(pool, id, with_maps)?);
        return Ok(out);
    }
    let mut from = 0u32;
    while let Some(v) = pool
        .next_volume(from)
        .map_err(|e| Fail::from_pool("directory", e))?
    {
        out.push(volume_json(pool, v.id, with_maps)?);
        match v.id.checked_add(1) {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(out)
}

fn pool_json(st: &PoolStats, volumes: Vec<JsonVolume>) -> JsonPool {
    JsonPool {
        generation: st.generation,
        transaction_id: st.transaction_id,
        needs_check: st.needs_check,
        extent_size: st.extent_size,
        data_extents: st.data_extents,
        data_free: st.data_free,
        meta_blocks: st.meta_blocks,
        meta_free: st.meta_free,
        data_capacity: st.data_capacity,
        meta_capacity: st.meta_capacity,
        growth_extensions: st.extensions,
        volumes,
    }
}

fn dump(path: &Path, json: bool, only: Option<u32>) -> Result<u8, Fail> {
    let (dev, mut arena) = open_ro(path)?;
    let mut pool = Pool::open(dev, &mut arena).map_err(|e| Fail::from_pool("open", e))?;
    let st = pool.stats();
    let vols = volumes_json(&mut pool, only, true)?;
    let j = pool_json(&st, vols);
    let mut out = std::io::stdout().lock();
    let w = if json {
        writeln!(out, "{}", serde_json::to_string(&j).unwrap_or_default())
    } else {
        write_dump(&mut out, &j)
    };
    w.map_err(|e| Fail::Other(format!("stdout: {e}")))?;
    Ok(0)
}

fn write_dump(out: &mut impl std::io::Write, j: &JsonPool) -> std::io::Result<()> {
    writeln!(
        out,
        "pool generation {} transaction_id {} needs_check {} extent_size {} data_extents {} data_free {} meta_blocks {} meta_free {} volumes {}",
        j.generation,
        j.transaction_id,
        if j.needs_check { "yes" } else { "no" },
        j.extent_size,
        j.data_extents,
        j.data_free,
        j.meta_blocks,
        j.meta_free,
        j.volumes.len()
    )?;
    writeln!(
        out,
        "space maps hold {} data extents and {} metadata blocks; growth extensions {}",
        j.data_capacity, j.meta_capacity, j.growth_extensions
    )?;
    for v in &j.volumes {
        writeln!(
            out,
            "volume {} size {} mapped {} shared {} bg_cursor {} bg_done {}{}",
            v.id,
            v.size,
            v.mapped,
            v.shared,
            v.bg_cursor,
            v.bg_done,
            if v.deleting { " deleting" } else { "" }
        )?;
        for r in v.mappings.iter().flatten() {
            writeln!(
                out,
                "  {}+{} -> {}{}",
                r.vext,
                r.len,
                r.pext,
                if r.shared { " shared" } else { "" }
            )?;
        }
    }
    Ok(())
}

fn ls(path: &Path, json: bool) -> Result<u8, Fail> {
    let (dev, mut arena) = open_ro(path)?;
    let mut pool = Pool::open(dev, &mut arena).map_err(|e| Fail::from_pool("open", e))?;
    let st = pool.stats();
    let vols = volumes_json(&mut pool, None, false)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&pool_json(&st, vols)).unwrap_or_default()
        );
    } else {
        println!(
            "{:>8} {:>14} {:>12} {:>12} {:>12}",
            "ID", "SIZE", "MAPPED", "SHARED", "BG_DONE"
        );
        for v in &vols {
            println!(
                "{:>8} {:>14} {:>12} {:>12} {:>12}{}",
                v.id,
                v.size,
                v.mapped,
                v.shared,
                v.bg_done,
                if v.deleting { " deleting" } else { "" }
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("x").is_err());
    }
}
