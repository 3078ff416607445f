//! Shrinks images to the blocks a probe reads, in the `sparse` format, as
//! `NAME.sgsp` files: `tools/vm.py` makes the guest's corpus
//! (`/fixtures/corpus`, for `selftests/guard_corpus.sh`) from the fixtures
//! with it.
//!
//! Usage: `cargo run --example mkcorpus -- OUT_DIR IMAGE...`

#[path = "../tests/common/shrink.rs"]
mod shrink;
use shrink::shrink;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, images) = args
        .split_first()
        .expect("usage: mkcorpus OUT_DIR IMAGE...");
    std::fs::create_dir_all(out).unwrap();
    for img in images {
        let data = std::fs::read(img).unwrap();
        let name = Path::new(img)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        std::fs::write(Path::new(out).join(format!("{name}.sgsp")), shrink(&data)).unwrap();
    }
}
