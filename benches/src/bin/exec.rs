//! Running code: exec round trip of `true` through the SDK and through the CLI, stdout
//! streaming throughput (`cat` of 1 GiB), and an ephemeral `exec - -- true` end to end —
//! next to `podman exec`, `podman exec cat` and `podman run --rm`, in one run.
//!
//! Run as root after building the CLI:
//! `cargo build --release -p zomg-cli && cargo run --release -p zomg-benches --bin exec`
//! (`ZOMG_BENCH_RUNS` sets the iterations, default 30).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use zomg_benches::{Podman, Row, Samples, print_table, runs, time, time_cmd};
use zomg_sdk::{BoxName, CreateBox, ExecStart, ProjectName};
use zomg_server::testing::{TestServer, busybox_rootfs};

const GIB: u64 = 1 << 30;

#[tokio::main]
async fn main() -> Result<()> {
    let n = runs();
    let zomg_cli = std::env::current_exe()?
        .parent()
        .context("bench binary has a directory")?
        .join("zomg");
    if !zomg_cli.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p zomg-cli` first",
            zomg_cli.display()
        );
    }
    let ts = TestServer::start().await;
    let client = ts.client();
    let project: ProjectName = "default".parse()?;
    let name: BoxName = "bench".parse()?;
    client
        .create_box(
            &project,
            &CreateBox {
                name: name.to_string(),
                ..Default::default()
            },
        )
        .await?;

    let rootfs = std::env::temp_dir().join(format!("zomg-bench-exec-{}", std::process::id()));
    busybox_rootfs(&rootfs);
    let podman = Podman::import(&rootfs, "localhost/zomg-bench-bb")?;
    let c = "zomg-bench-exec";
    podman.remove(c);
    time_cmd(&mut podman.cmd(&podman.run_args(c)))?;

    let true_cmd = ExecStart {
        command: vec!["true".into()],
        ..Default::default()
    };
    let (mut sdk, mut cli, mut peer) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..n {
        sdk.push(
            time(async { Ok(client.exec_output(&project, &name, &true_cmd, None).await?) })
                .await?
                .1,
        );
        cli.push(time_cmd(
            Command::new(&zomg_cli)
                .args(["exec", "bench", "--", "true"])
                .env("ZOMG_URL", ts.url())
                .env("ZOMG_TOKEN", ts.token())
                .env("ZOMG_PROJECT", "default"),
        )?);
        peer.push(time_cmd(&mut podman.cmd(&["exec", c, "true"]))?);
    }

    // 1 GiB through stdout.
    let make = ExecStart {
        command: vec![
            "sh".into(),
            "-c".into(),
            "dd if=/dev/zero of=/root/big bs=1M count=1024 2>/dev/null".into(),
        ],
        ..Default::default()
    };
    client.exec_output(&project, &name, &make, None).await?;
    time_cmd(&mut podman.cmd(&[
        "exec",
        c,
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1M count=1024 2>/dev/null",
    ]))?;
    let cat = ExecStart {
        command: vec!["cat".into(), "/root/big".into()],
        ..Default::default()
    };
    let throughput_runs = 3;
    let (mut z_mbs, mut p_mbs) = (Vec::new(), Vec::new());
    for _ in 0..throughput_runs {
        let start = Instant::now();
        let mut session = client.exec(&project, &name, &cat).await?;
        let (_, stdout, _) = session.take_streams();
        let mut stdout = stdout.context("stdout")?;
        let mut bytes = 0u64;
        while let Some(chunk) = stdout.next().await {
            bytes += chunk.len() as u64;
        }
        session.wait().await?;
        if bytes != GIB {
            bail!("read {bytes} bytes instead of 1 GiB");
        }
        z_mbs.push(GIB as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        let status = podman
            .cmd(&["exec", c, "cat", "/big"])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("podman exec cat failed");
        }
        p_mbs.push(GIB as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64());
    }

    // Ephemeral: create, run, delete in one command.
    let (mut eph, mut peer_rm) = (Samples::default(), Samples::default());
    for _ in 0..n {
        eph.push(time_cmd(
            Command::new(&zomg_cli)
                .args(["exec", "-", "--", "true"])
                .env("ZOMG_URL", ts.url())
                .env("ZOMG_TOKEN", ts.token())
                .env("ZOMG_PROJECT", "default"),
        )?);
        let mut args = podman.run_args("zomg-bench-rm");
        args[1] = "--rm";
        args.truncate(args.len() - 3);
        args.push("true");
        peer_rm.push(time_cmd(&mut podman.cmd(&args))?);
    }
    podman.remove(c);
    let _ = std::fs::remove_dir_all(&rootfs);

    println!("\nrunning code, {n} runs each (zomg server in this process, release build)\n");
    print_table(
        "podman",
        &[
            Row {
                op: "exec `true` via SDK (podman exec)".into(),
                zomg: sdk,
                peer: peer.clone(),
            },
            Row {
                op: "exec `true` via CLI (podman exec)".into(),
                zomg: cli,
                peer,
            },
            Row {
                op: "ephemeral `exec - -- true` (podman run --rm)".into(),
                zomg: eph,
                peer: peer_rm,
            },
        ],
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (z, p) = (median(&mut z_mbs), median(&mut p_mbs));
    println!(
        "\nstdout throughput, `cat` of 1 GiB, median of {throughput_runs}: zomg {z:.0} MB/s, podman exec {p:.0} MB/s, ratio {:.2}",
        z / p
    );
    Ok(())
}
