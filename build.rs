//! Lays out the release binary's code so that what herald runs at start and
//! at idle sits together.
//!
//! A daemon's resident code is not the functions it runs but the pages
//! around them: on a page fault the kernel maps up to 64 KB of neighbouring
//! file pages already in the page cache ("fault-around"). The linker's
//! default layout scatters the ~1,100 functions (1.6 MB) herald runs at
//! start and at idle across its 7.1 MB of code, so nearly all of it was
//! resident: 7.3 MB of a 12 MB idle RSS. Handing LLD the list of those functions
//! (`packaging/link-order.txt`, made by `benches/link-order.sh` with
//! callgrind) puts them first, together, and idle RSS falls to ~8.5 MB.
//! Only where they sit changes, not what they do. Names the binary no
//! longer has (after `cargo update`, or LTO renumbering a local copy of a
//! small function after an edit) are only not placed: remake the list
//! before a release.
//!
//! Release builds for x86_64 Linux only: that target links with rustc's
//! own LLD since Rust 1.90 (this crate needs 1.91), and GNU ld does not
//! know the flag. A build told to use another linker, or run with
//! `HERALD_LINK_ORDER=off`, links as before.

use std::path::Path;

const ORDER_FILE: &str = "packaging/link-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=HERALD_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join(ORDER_FILE);
    match layout(&order) {
        Layout::Default => {}
        Layout::DefaultBecause(why) => {
            println!("cargo:warning=release binary linked without {ORDER_FILE}: {why}")
        }
        Layout::Ordered => {
            let listed = match expanded(&order) {
                Ok(listed) => listed,
                Err(e) => {
                    println!("cargo:warning=release binary linked without {ORDER_FILE}: {e}");
                    return;
                }
            };
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                listed.display()
            );
            // Functions renamed or gone since the list was made are skipped
            // without a warning each; `benches/link-order.sh` says how many.
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
            if let Some(made_with) = made_with_another_rustc(&order) {
                println!(
                    "cargo:warning={ORDER_FILE} was made with {made_with}: symbol names differ \
                     between compilers, so this binary's start-up code is not kept together \
                     (idle RSS ~12 MB instead of ~8.5); run `bash benches/link-order.sh`"
                );
            }
        }
    }
}

enum Layout {
    /// The linker's own: debug builds, and a release build with
    /// `HERALD_LINK_ORDER=off`.
    Default,
    /// The linker's own, where ordering was expected: said as a warning.
    DefaultBecause(String),
    Ordered,
}

fn layout(order: &Path) -> Layout {
    if env("PROFILE") != "release" || env("HERALD_LINK_ORDER") == "off" {
        return Layout::Default;
    }
    let target = env("TARGET");
    if target != "x86_64-unknown-linux-gnu" {
        return Layout::DefaultBecause(format!("target {target} may not link with LLD"));
    }
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker-features") || flags.contains("link-self-contained") {
        return Layout::DefaultBecause("RUSTFLAGS choose the linker".into());
    }
    if !env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty() {
        return Layout::DefaultBecause(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER chooses the linker".into(),
        );
    }
    if !order.exists() {
        return Layout::DefaultBecause("the file is missing".into());
    }
    Layout::Ordered
}

/// How far a local copy's number may have moved since the list was made.
const RENUMBERED_BY: u32 = 256;

/// The list as LLD gets it, in `OUT_DIR`. Fat LTO numbers the local copies
/// of some small generic functions (`…write_str.4151`) in the order it
/// meets them, so an edit elsewhere shifts those numbers a little (by 2 to
/// 4 for the edits that made this necessary). Each such name stands for
/// every copy numbered within [`RENUMBERED_BY`] of it: a name that is not
/// in the binary costs LLD nothing, and a copy of the same small function
/// placed with the others costs a few bytes.
fn expanded(order: &Path) -> std::io::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(order)?;
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with('#') {
            continue;
        }
        let Some((base, number)) = line.rsplit_once('.') else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        let low = number.saturating_sub(RENUMBERED_BY);
        for other in (low..=number + RENUMBERED_BY).filter(|n| *n != number) {
            out.push_str(&format!("{base}.{other}\n"));
        }
    }
    let path = Path::new(&env("OUT_DIR")).join("link-order.txt");
    std::fs::write(&path, out)?;
    Ok(path)
}

/// The compiler named in the file's header, when it is not this build's.
fn made_with_another_rustc(order: &Path) -> Option<String> {
    let header = std::fs::read_to_string(order).ok()?;
    let made_with = header
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix("# rustc "))?;
    let rustc = std::process::Command::new(env("RUSTC"))
        .arg("-V")
        .output()
        .ok()?;
    let this = String::from_utf8_lossy(&rustc.stdout);
    let this = this.trim().strip_prefix("rustc ")?;
    (made_with != this).then(|| format!("rustc {made_with}, not {this}"))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}
