//! The release build's inputs stay in step with the tree.
//!
//! `packaging/link-order.txt` lists, by symbol name, the functions herald
//! runs at start and idle, so that the linker keeps them together (build.rs
//! says why: it is most of the idle RSS target). Symbol names carry a hash
//! of each crate's version, so after a dependency update or a version bump
//! the list names functions that no longer exist and the release binary
//! quietly idles ~3.5 MB larger. CI builds no release binary to measure;
//! what it can tell is that the list was made from another Cargo.lock.

use sha2::{Digest, Sha256};
use std::path::Path;

/// The `# key value` lines that open the order file.
fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key} ")))
        .map(str::to_string)
}

#[test]
fn link_order_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = std::fs::read_to_string(root.join("packaging/link-order.txt"))
        .expect("packaging/link-order.txt: make it with `bash benches/link-order.sh`");
    let lock = std::fs::read(root.join("Cargo.lock")).expect("Cargo.lock");
    let lock_sha: String = Sha256::digest(&lock)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let remake = "run `bash benches/link-order.sh` (needs valgrind and a release build, \
                  ~5 min) and commit packaging/link-order.txt";
    assert_eq!(
        header(&order, "Cargo.lock sha256").as_deref(),
        Some(lock_sha.as_str()),
        "packaging/link-order.txt was made from another Cargo.lock: {remake}"
    );
    assert_eq!(
        header(&order, "herald").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "packaging/link-order.txt was made from another herald version: {remake}"
    );
    let symbols: Vec<&str> = order.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        symbols.len() > 500,
        "packaging/link-order.txt lists only {} functions: {remake}",
        symbols.len()
    );
    assert!(
        symbols
            .iter()
            .all(|s| !s.is_empty() && !s.contains(char::is_whitespace)),
        "packaging/link-order.txt has a line that is not one symbol name: {remake}"
    );
}
