//! Upload and download throughput of a 1 GiB file: zomg (SDK → server → box on btrfs)
//! next to `podman cp` (runc, same busybox rootfs), in one run.
//!
//! ```text
//! cargo build --release -p zomg-server -p zomg-benches
//! sudo target/release/files_throughput [--size-mib 1024] [--runs 3]
//! ```
//!
//! Starts `zomg-server` (next to this binary, or `$ZOMG_SERVER_BIN`) on a temporary data
//! directory with a loop btrfs image, imports a busybox rootfs as base `bb` there and as an
//! image into podman, then times each transfer `runs` times and prints medians in MB/s and
//! zomg/podman ratios (above 1 = zomg faster). Needs root, runc, podman, a static busybox.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use zomg_sdk::{BoxName, CreateBox, ProjectName};
use zomg_server::testing::{ChildServer, busybox_rootfs};

const IMAGE: &str = "localhost/zomg-files-bench-bb";
const CONTAINER: &str = "zomg-files-bench";

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn sha256(p: &Path) -> Result<String> {
    Ok(run(Command::new("sha256sum").arg(p))?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).context("flag needs a value")?.parse()?),
            None => Ok(default),
        }
    };
    let size = flag("--size-mib", 1024)? << 20;
    let runs = flag("--runs", 3)? as usize;
    let bin = match std::env::var_os("ZOMG_SERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("zomg-server"),
    };
    ensure!(
        bin.is_file(),
        "no zomg-server at {} (set ZOMG_SERVER_BIN)",
        bin.display()
    );

    let dir = tempfile::Builder::new()
        .prefix("zomg-files-bench-")
        .tempdir_in("/var/tmp")?;
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let payload = dir.path().join("payload");
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c {size} /dev/urandom > '{}'",
        payload.display()
    )))?;
    let want = sha256(&payload)?;

    // zomg
    let server = ChildServer::start(&bin, dir.path(), 6);
    let client = server.client();
    let project = ProjectName::new("default")?;
    let name = BoxName::new("bench")?;
    client
        .create_box(
            &project,
            &CreateBox {
                name: name.to_string(),
                ..Default::default()
            },
        )
        .await?;
    let (mut zu, mut zd) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        client
            .upload_file(&project, &name, &payload, "/big", None)
            .await?;
        zu.push(mbps(size, t.elapsed()));
        let back = dir.path().join(format!("zomg-back-{i}"));
        let t = Instant::now();
        client
            .download_file(&project, &name, "/big", &back, None)
            .await?;
        zd.push(mbps(size, t.elapsed()));
        ensure!(sha256(&back)? == want, "zomg round trip differs");
        std::fs::remove_file(&back)?;
    }
    client.delete_box(&project, &name, true).await?;

    // podman cp, same rootfs, runc
    let tar = dir.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    run(Command::new("podman").arg("import").arg(&tar).arg(IMAGE))?;
    let _ = Command::new("podman")
        .args(["rm", "-f", CONTAINER])
        .output();
    // Created, not started: `podman cp` copies through the container's storage either way,
    // and starting it fails on machines where runc may not set the rlimits podman asks for.
    run(Command::new("podman").args([
        "create",
        "--runtime",
        "runc",
        "--name",
        CONTAINER,
        IMAGE,
        "sleep",
        "1000000",
    ]))?;
    let (mut pu, mut pd) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        run(Command::new("podman")
            .arg("cp")
            .arg(&payload)
            .arg(format!("{CONTAINER}:/big")))?;
        pu.push(mbps(size, t.elapsed()));
        let back = dir.path().join(format!("podman-back-{i}"));
        let t = Instant::now();
        run(Command::new("podman")
            .arg("cp")
            .arg(format!("{CONTAINER}:/big"))
            .arg(&back))?;
        pd.push(mbps(size, t.elapsed()));
        ensure!(sha256(&back)? == want, "podman round trip differs");
        std::fs::remove_file(&back)?;
    }
    let _ = Command::new("podman")
        .args(["rm", "-f", CONTAINER])
        .output();
    let _ = Command::new("podman").args(["rmi", IMAGE]).output();

    let (zu, zd, pu, pd) = (median(zu), median(zd), median(pu), median(pd));
    println!("{} MiB file, median of {runs} runs", size >> 20);
    println!(
        "upload:   zomg {zu:7.0} MB/s   podman cp {pu:7.0} MB/s   ratio {:.2}",
        zu / pu
    );
    println!(
        "download: zomg {zd:7.0} MB/s   podman cp {pd:7.0} MB/s   ratio {:.2}",
        zd / pd
    );
    Ok(())
}
