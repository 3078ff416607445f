//! What the growth capacities chosen at format cost, measured by
//! formatting pools on sparse in-memory metadata devices: for a metadata
//! device of `CAP_META_MIB` MiB (default 1024) and 64 KiB extents, data
//! devices of 100 GiB, 1 TiB and 4 TiB formatted with data capacity 1x,
//! 4x and 16x their size (and metadata capacity 1x, 4x and 16x the
//! device): the fixed area (`PoolStats::meta_fixed`, blocks reserved for
//! the space maps and never usable by tree nodes), its bytes per extent
//! of capacity, the dynamic blocks left, how many mapped extents those
//! hold (full leaves: 678 per block), the blocks format actually wrote and
//! the blocks the first provision of each 1018-extent space-map region
//! writes at commit.
//!
//! `cargo run --release -p snapguard-pool --example capacity_cost`

use snapguard_pool::host::{slots, SparseDevice};
use snapguard_pool::*;
use std::time::Instant;

fn main() {
    let meta_mib: u64 = std::env::var("CAP_META_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let meta_blocks = meta_mib << 8;
    let ext = DEFAULT_EXTENT_SIZE;
    println!(
        "metadata device {meta_mib} MiB ({meta_blocks} blocks), extent {} KiB",
        ext >> 10
    );
    println!(
        "{:>9} {:>5} {:>5} | {:>10} {:>7} {:>9} {:>7} | {:>11} {:>14} | {:>7} {:>9}",
        "data",
        "dcap",
        "mcap",
        "fixed blk",
        "fixed%",
        "B/cap ext",
        "B/extDv",
        "dyn blocks",
        "mappable ext",
        "fmt wr",
        "fmt ms"
    );
    let mut s = slots(64);
    for data_gib in [100u64, 1024, 4096] {
        let data = (data_gib << 30) / ext;
        for (dmul, mmul) in [(1u64, 1u64), (4, 1), (16, 1), (1, 4), (1, 16), (4, 4)] {
            let mut p = FormatParams::new(data);
            p.data_capacity = data * dmul;
            p.meta_capacity = meta_blocks * mmul;
            let t = Instant::now();
            let r = Pool::format(SparseDevice::new(meta_blocks), &mut s, p);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let label = format!("{:>8}G {:>4}x {:>4}x", data_gib, dmul, mmul);
            let mut pool = match r {
                Ok(p) => p,
                Err(e) => {
                    println!("{label} | does not fit: {e:?}");
                    continue;
                }
            };
            let st = pool.stats();
            let written = pool.device().blocks.len();
            let fixed = st.meta_fixed;
            let dynb = st.meta_blocks - fixed;
            // Bytes of fixed area per extent of data capacity (the metadata
            // capacity's own share is in the figure too).
            let per_cap = (fixed * BLOCK_SIZE as u64) as f64 / p.data_capacity as f64;
            // Bytes of fixed area per extent of the present data device.
            let per_dev = (fixed * BLOCK_SIZE as u64) as f64 / data as f64;
            // One provision in a fresh 1018-extent region, committed: the
            // data space-map block and its index block get written.
            pool.create_volume(0, data).unwrap();
            pool.commit().unwrap();
            let w0 = pool.stats().blocks_written;
            pool.provision(0, data / 2).unwrap();
            pool.commit().unwrap();
            let w1 = pool.stats().blocks_written - w0;
            println!(
                "{label} | {:>10} {:>6.2}% {:>9.3} {:>7.3} | {:>11} {:>14} | {:>7} {:>9.1}  (1st provision commit writes {} blocks)",
                fixed,
                fixed as f64 * 100.0 / meta_blocks as f64,
                per_cap,
                per_dev,
                dynb,
                dynb * 678,
                written,
                ms,
                w1
            );
        }
    }
}
