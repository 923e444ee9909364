//! Builds the in-box agent (`agent/zomg-agent.rs`) as a static executable with the same
//! rustc that builds the server, into `$OUT_DIR/zomg-agent`; the server embeds it with
//! `include_bytes!` (see `src/runtime/local/agent.rs`).
//!
//! The agent uses only `std`, so one `rustc` call suffices: no crates, no Cargo project.
//! It includes `agent/protocol.rs`, the wire constants the server includes too.
//! It is always optimised (it runs one copy per box, and a debug build is several times
//! bigger).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "agent/zomg-agent.rs";
    // The agent and the protocol constants it shares with the server (`agent/protocol.rs`).
    println!("cargo:rerun-if-changed=agent");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let output = out_dir.join("zomg-agent");
    let result = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-name",
            "zomg_agent",
            "--target",
        ])
        .arg(&target)
        .args([
            "-C",
            "opt-level=3",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "codegen-units=1",
            "-o",
        ])
        .arg(&output)
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    let diagnostics = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "building the box agent ({source}) failed: {}\n{diagnostics}",
        result.status
    );
    // Warnings of the agent's build show up like the crate's own.
    for line in diagnostics.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning={line}");
    }
}
