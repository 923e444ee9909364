//! Box lifecycle latency: create→running, stop, resume, delete — zomg (through the SDK,
//! against a real server in this process on a loop-mounted btrfs) next to podman with runc
//! (run -d / stop / start / rm -f) on the same busybox root filesystem.
//!
//! Run as root: `cargo run --release -p zomg-benches --bin lifecycle`
//! (`ZOMG_BENCH_RUNS` sets the iterations, default 30).

use anyhow::Result;
use zomg_benches::{Podman, Row, Samples, print_table, runs, time, time_cmd};
use zomg_sdk::{BoxName, CreateBox, ProjectName};
use zomg_server::testing::{TestServer, busybox_rootfs};

#[tokio::main]
async fn main() -> Result<()> {
    let n = runs();
    let ts = TestServer::start().await;
    let client = ts.client();
    let project: ProjectName = "bench".parse()?;

    let rootfs = tempfile_dir()?;
    busybox_rootfs(&rootfs);
    let podman = Podman::import(&rootfs, "localhost/zomg-bench-bb")?;

    let (mut create, mut stop, mut resume, mut delete) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut p_create, mut p_stop, mut p_start, mut p_rm) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for i in 0..n {
        // Interleave zomg and podman so that both see the same machine state.
        let name: BoxName = format!("b{i}").parse()?;
        let req = CreateBox {
            name: name.to_string(),
            termination_grace_period_seconds: Some(10),
            ..Default::default()
        };
        create.push(
            time(async { Ok(client.create_box(&project, &req).await?) })
                .await?
                .1,
        );
        stop.push(
            time(async { Ok(client.stop_box(&project, &name).await?) })
                .await?
                .1,
        );
        resume.push(
            time(async { Ok(client.resume_box(&project, &name).await?) })
                .await?
                .1,
        );
        delete.push(
            time(async { Ok(client.delete_box(&project, &name, true).await?) })
                .await?
                .1,
        );

        let c = format!("zomg-bench-{i}");
        podman.remove(&c);
        p_create.push(time_cmd(&mut podman.cmd(&podman.run_args(&c)))?);
        p_stop.push(time_cmd(&mut podman.cmd(&["stop", "-t", "10", &c]))?);
        p_start.push(time_cmd(&mut podman.cmd(&["start", &c]))?);
        p_rm.push(time_cmd(&mut podman.cmd(&["rm", "-f", &c]))?);
    }
    println!("\nbox lifecycle, {n} runs each (zomg: SDK over HTTP; podman: CLI, runc)\n");
    print_table(
        "podman",
        &[
            Row {
                op: "create → running (podman run -d)".into(),
                zomg: create,
                peer: p_create,
            },
            Row {
                op: "stop".into(),
                zomg: stop,
                peer: p_stop,
            },
            Row {
                op: "resume (podman start)".into(),
                zomg: resume,
                peer: p_start,
            },
            Row {
                op: "delete (podman rm -f)".into(),
                zomg: delete,
                peer: p_rm,
            },
        ],
    );
    let _ = std::fs::remove_dir_all(&rootfs);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("zomg-bench-rootfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
