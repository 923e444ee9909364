//! Fork latency: `zomg create --fork` against `podman container clone` + `podman start` and
//! a plain `cp -a` of the same data, in one run.
//!
//! Two scenarios, each measured `ZOMG_BENCH_RUNS` times (default 30) after one untimed
//! warm-up run:
//! - **root only**: a running busybox box with a few files written in its root;
//! - **root + 2 volumes**: the same with two data volumes of `ZOMG_BENCH_VOLUME_MB` MiB
//!   each (default 1024), filled with random data.
//!
//! What is timed:
//! - zomg: `POST /v1/projects/{p}/boxes` with `fork` until the answer, which comes once the
//!   clone runs (root and volume snapshots, container start); the clones are deleted after
//!   the last one is measured (as are podman's);
//! - podman: `podman --runtime runc container clone` + `podman start` of a container of the
//!   same busybox rootfs (`podman import`), with `--network none` like a zomg box (own
//!   network namespace, loopback only) and this process's limits (a generated
//!   `containers.conf`); in the second scenario with two podman volumes of the same size and
//!   content. Note that podman's clone copies configuration only: the clone starts from the
//!   image, without the source's written files, and it *shares* the volumes rather than
//!   copying them;
//! - cp: `cp -a --reflink=never` of a directory holding the busybox rootfs (and, in the
//!   second scenario, the two volumes' data) under `ZOMG_BENCH_TMP` (default `/var/tmp`):
//!   what copying the data costs without copy-on-write. The data is in the page cache and
//!   nothing is synced, which favours cp.
//!
//! Run it as root: `cargo run --release -p zomg-benches --bin fork` starts a server in this
//! process on a throwaway loop btrfs with the busybox base. To measure another server, set
//! `ZOMG_URL` and `ZOMG_TOKEN` (its default base must be the busybox one, or name the base
//! in `ZOMG_BENCH_BASE`):
//!
//! ```text
//! target/release/zomg-server serve --data-dir /tmp/zb --listen 127.0.0.1:7171 &
//! target/release/zomg-server base import bb <busybox rootfs dir> --data-dir /tmp/zb
//! ZOMG_URL=http://127.0.0.1:7171 ZOMG_TOKEN=$(cat /tmp/zb/admin-token) target/release/fork
//! ```
//!
//! It prints two Markdown tables (the format of the other benchmarks): medians, p95 and the
//! ratio zomg/peer (below 1 = zomg is faster), against podman and against cp.
//!
//! Everything the benchmark creates (boxes, volumes, containers, podman volumes and image,
//! temporary directories) carries the process id in its name and is removed at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;
use zomg_benches::{Row, Samples, print_table, runs};
use zomg_sdk::{BoxName, Client, CreateBox, CreateVolume, DataMountSpec, ExecRequest, ProjectName};
use zomg_server::testing::busybox_rootfs;

/// Settings from the environment.
struct Config {
    runs: usize,
    volume_mb: u64,
    base: Option<String>,
    project: ProjectName,
    tmp: PathBuf,
    tag: String,
}

impl Config {
    fn from_env() -> Result<Config> {
        let num = |key: &str, default: u64| -> Result<u64> {
            match std::env::var(key) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{key}={v:?} is not a number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Config {
            runs: runs(),
            volume_mb: num("ZOMG_BENCH_VOLUME_MB", 1024)?,
            base: std::env::var("ZOMG_BENCH_BASE").ok(),
            project: std::env::var("ZOMG_PROJECT")
                .unwrap_or_else(|_| "bench".to_owned())
                .parse()?,
            tmp: std::env::var("ZOMG_BENCH_TMP")
                .unwrap_or_else(|_| "/var/tmp".to_owned())
                .into(),
            tag: std::process::id().to_string(),
        })
    }
}

fn samples(times: Vec<Duration>) -> Samples {
    let mut s = Samples::default();
    for t in times {
        s.push(t);
    }
    s
}

/// Runs a command to completion, failing with its stderr.
async fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `containers.conf` every podman call of this run uses (see [`podman_conf`]).
static PODMAN_CONF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Writes a `containers.conf` whose default limits this process can grant. podman asks
/// for 1048576 open files by default, more than a container host may allow (runc then
/// fails with "error setting rlimit type 7"), and `container clone` does not carry a
/// container's `--ulimit` over, so the limits must be podman's defaults.
async fn podman_conf(dir: &Path) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    // "Max open files            20000                20000                files"
    let hard = |name: &str| -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().nth(1)?.parse().ok()
    };
    let nofile = hard("Max open files").unwrap_or(1024);
    let nproc = hard("Max processes").unwrap_or(4096).min(4096);
    let path = dir.join("containers.conf");
    std::fs::write(
        &path,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
        ),
    )?;
    PODMAN_CONF.set(path).ok();
    Ok(())
}

async fn podman(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"])
        .args(args)
        .stdin(Stdio::null());
    if let Some(conf) = PODMAN_CONF.get() {
        cmd.env("CONTAINERS_CONF", conf);
    }
    let out = cmd.output().await.context("running podman")?;
    if !out.status.success() {
        bail!(
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `script` with `sh -c` in a box; it must succeed.
async fn sh(client: &Client, project: &ProjectName, name: &str, script: &str) -> Result<()> {
    let request = ExecRequest {
        command: vec![script.to_owned()],
        shell: Some("sh".to_owned()),
        ..Default::default()
    };
    let result = client
        .exec_run(project, &name.parse::<BoxName>()?, &request)
        .await?;
    if result.exit_code != Some(0) {
        bail!("{script:?} in {name} failed: {}", result.stderr.trim());
    }
    Ok(())
}

/// What each scenario measured.
struct Results {
    zomg: [Samples; 2],
    podman: [Samples; 2],
    cp: [Samples; 2],
}

/// zomg: forks of a root-only box, then of a box with two filled volumes.
async fn bench_zomg(client: &Client, c: &Config) -> Result<[Samples; 2]> {
    let p = &c.project;
    let src = format!("fork-src-{}", c.tag);
    let vsrc = format!("fork-vsrc-{}", c.tag);
    let vols = [format!("fork-a-{}", c.tag), format!("fork-b-{}", c.tag)];
    let result = async {
        let create = CreateBox {
            name: src.clone(),
            base: c.base.clone(),
            ..Default::default()
        };
        client.create_box(p, &create).await?;
        sh(
            client,
            p,
            &src,
            "mkdir -p /root/app && echo hello > /root/app/state",
        )
        .await?;
        let root_only = forks(client, c, &src).await?;

        for v in &vols {
            let req = CreateVolume {
                name: v.clone(),
                ..Default::default()
            };
            client.create_volume(p, &req).await?;
        }
        let create = CreateBox {
            name: vsrc.clone(),
            base: c.base.clone(),
            data_mounts: vols
                .iter()
                .zip(["/a", "/b"])
                .map(|(v, path)| DataMountSpec {
                    name: v.parse().expect("volume name"),
                    path: path.into(),
                    read_only: false,
                })
                .collect(),
            ..Default::default()
        };
        client.create_box(p, &create).await?;
        eprintln!("filling two {} MiB volumes with random data", c.volume_mb);
        for dir in ["/a", "/b"] {
            let fill = format!(
                "dd if=/dev/urandom of={dir}/fill bs=1M count={} 2>/dev/null",
                c.volume_mb
            );
            sh(client, p, &vsrc, &fill).await?;
        }
        let with_volumes = forks(client, c, &vsrc).await?;
        anyhow::Ok([root_only, with_volumes])
    }
    .await;
    for name in [&src, &vsrc] {
        if let Ok(n) = name.parse::<BoxName>() {
            client.delete_box(p, &n, true).await.ok();
        }
    }
    for v in &vols {
        if let Ok(n) = v.parse() {
            client.delete_volume(p, &n).await.ok();
        }
    }
    result
}

/// `runs` forks of `source`, deleted (untimed) once all are measured: deleting a clone
/// makes btrfs account its shared extents in the background, which would slow the next
/// fork and measure the delete instead.
async fn forks(client: &Client, c: &Config, source: &str) -> Result<Samples> {
    let p = &c.project;
    let mut made = Vec::with_capacity(c.runs + 1);
    let result = fork_n(client, c, source, &mut made).await;
    for name in made {
        client.delete_box(p, &name, true).await?;
    }
    result
}

async fn fork_n(
    client: &Client,
    c: &Config,
    source: &str,
    made: &mut Vec<BoxName>,
) -> Result<Samples> {
    let p = &c.project;
    let mut times = Vec::with_capacity(c.runs);
    // One more than measured: the first run warms caches and is dropped.
    for i in 0..=c.runs {
        let name = format!("{source}-f{i}");
        let req = CreateBox {
            name: name.clone(),
            fork: Some(source.to_owned()),
            ..Default::default()
        };
        let t = Instant::now();
        let created = client.create_box(p, &req).await;
        let elapsed = t.elapsed();
        created.with_context(|| format!("forking {source}"))?;
        made.push(name.parse()?);
        if i > 0 {
            times.push(elapsed);
        }
    }
    Ok(samples(times))
}

/// podman: clone + start of a running container, without and with two filled volumes.
async fn bench_podman(c: &Config, rootfs_tar: &Path) -> Result<[Samples; 2]> {
    let image = format!("localhost/zomg-fork-bench-bb:{}", c.tag);
    let src = format!("zomg-fork-src-{}", c.tag);
    let vsrc = format!("zomg-fork-vsrc-{}", c.tag);
    let vols = [
        format!("zomg-fork-a-{}", c.tag),
        format!("zomg-fork-b-{}", c.tag),
    ];
    let tar = rootfs_tar.to_string_lossy().into_owned();
    let result = async {
        podman(&["import", &tar, &image]).await?;
        let base = ["run", "-d", "--network", "none", "--name"];
        let mut args: Vec<&str> = base.to_vec();
        args.extend([src.as_str(), image.as_str(), "/bin/sleep", "1000000000"]);
        podman(&args).await?;
        podman(&[
            "exec",
            &src,
            "sh",
            "-c",
            "mkdir -p /root/app && echo hello > /root/app/state",
        ])
        .await?;
        let root_only = clones(c, &src).await?;

        for v in &vols {
            podman(&["volume", "create", v]).await?;
        }
        let a = format!("{}:/a", vols[0]);
        let b = format!("{}:/b", vols[1]);
        let mut args: Vec<&str> = base.to_vec();
        args.extend([
            vsrc.as_str(),
            "-v",
            &a,
            "-v",
            &b,
            image.as_str(),
            "/bin/sleep",
            "1000000000",
        ]);
        podman(&args).await?;
        for dir in ["/a", "/b"] {
            let fill = format!(
                "dd if=/dev/urandom of={dir}/fill bs=1M count={} 2>/dev/null",
                c.volume_mb
            );
            podman(&["exec", &vsrc, "sh", "-c", &fill]).await?;
        }
        let with_volumes = clones(c, &vsrc).await?;
        anyhow::Ok([root_only, with_volumes])
    }
    .await;
    for name in [&src, &vsrc] {
        podman(&["rm", "-f", "-t", "0", name]).await.ok();
    }
    for v in &vols {
        podman(&["volume", "rm", "-f", v]).await.ok();
    }
    podman(&["rmi", "-f", &image]).await.ok();
    result
}

/// `runs` clones + starts of `source`, removed (untimed) once all are measured, like the
/// zomg forks.
async fn clones(c: &Config, source: &str) -> Result<Samples> {
    let mut times = Vec::with_capacity(c.runs);
    let result = clone_n(c, source, &mut times).await;
    for i in 0..=c.runs {
        podman(&["rm", "-f", "-t", "0", &format!("{source}-c{i}")])
            .await
            .ok();
    }
    result.map(|()| samples(times))
}

async fn clone_n(c: &Config, source: &str, times: &mut Vec<Duration>) -> Result<()> {
    for i in 0..=c.runs {
        let name = format!("{source}-c{i}");
        let t = Instant::now();
        let cloned = async {
            podman(&["container", "clone", source, &name]).await?;
            podman(&["start", &name]).await
        }
        .await;
        let elapsed = t.elapsed();
        cloned.with_context(|| format!("cloning {source}"))?;
        if i > 0 {
            times.push(elapsed);
        }
    }
    Ok(())
}

/// cp: `cp -a` of the rootfs, then of the rootfs plus two volumes' worth of random data.
async fn bench_cp(c: &Config, dir: &Path, rootfs: &Path) -> Result<[Samples; 2]> {
    let with_data = dir.join("with-data");
    run(
        "cp",
        &[
            "-a",
            &rootfs.to_string_lossy(),
            &with_data.to_string_lossy(),
        ],
    )
    .await?;
    for v in ["a", "b"] {
        std::fs::create_dir_all(with_data.join(v))?;
        let of = format!("of={}", with_data.join(v).join("fill").display());
        let count = format!("count={}", c.volume_mb);
        run("dd", &["if=/dev/urandom", &of, "bs=1M", &count]).await?;
    }
    let mut out = Vec::new();
    for src in [rootfs, &with_data] {
        let dst = dir.join("copy");
        let mut times = Vec::with_capacity(c.runs);
        for i in 0..=c.runs {
            let t = Instant::now();
            run(
                "cp",
                &[
                    "-a",
                    "--reflink=never",
                    &src.to_string_lossy(),
                    &dst.to_string_lossy(),
                ],
            )
            .await?;
            if i > 0 {
                times.push(t.elapsed());
            }
            std::fs::remove_dir_all(&dst)?;
        }
        out.push(samples(times));
    }
    let [a, b]: [Samples; 2] = out.try_into().expect("two scenarios");
    Ok([a, b])
}

fn print(c: &Config, r: Results) {
    println!(
        "fork latency: {} runs per cell; volumes 2 x {} MiB of random data",
        c.runs, c.volume_mb
    );
    println!("zomg: create --fork until the clone runs (snapshots of root and volumes + start)");
    println!();
    let names = ["fork, root only", "fork, root + 2 volumes"];
    let [z0, z1] = r.zomg;
    let [p0, p1] = r.podman;
    let [c0, c1] = r.cp;
    println!("podman: container clone + start (copies config only; the clone shares the volumes)");
    print_table(
        "podman clone+start",
        &[
            Row {
                op: names[0].into(),
                zomg: z0.clone(),
                peer: p0,
            },
            Row {
                op: names[1].into(),
                zomg: z1.clone(),
                peer: p1,
            },
        ],
    );
    println!();
    println!("cp: cp -a --reflink=never of the same files (page cache, no sync)");
    print_table(
        "cp -a",
        &[
            Row {
                op: names[0].into(),
                zomg: z0,
                peer: c0,
            },
            Row {
                op: names[1].into(),
                zomg: z1,
                peer: c1,
            },
        ],
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let c = Config::from_env()?;
    // Against the server named by ZOMG_URL/ZOMG_TOKEN, else a fresh one in this process
    // (loop btrfs, busybox base `bb` as the default), like the other benchmarks.
    let local = match std::env::var_os("ZOMG_URL") {
        Some(_) => None,
        None => Some(zomg_server::testing::TestServer::start().await),
    };
    let client = match &local {
        Some(ts) => ts.client(),
        None => Client::from_env().context("set ZOMG_URL and ZOMG_TOKEN")?,
    };
    client
        .version()
        .await
        .context("the zomg server does not answer")?;
    run("podman", &["--version"])
        .await
        .context("the benchmark compares with podman (apt-get install podman)")?;

    let dir = c.tmp.join(format!("zomg-fork-bench-{}", c.tag));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let rootfs = dir.join("rootfs");
        busybox_rootfs(&rootfs);
        std::fs::create_dir_all(rootfs.join("root/app"))?;
        std::fs::write(rootfs.join("root/app/state"), "hello\n")?;
        let tar = dir.join("rootfs.tar");
        run(
            "tar",
            &[
                "-C",
                &rootfs.to_string_lossy(),
                "-cf",
                &tar.to_string_lossy(),
                ".",
            ],
        )
        .await?;

        eprintln!("zomg: {} forks per scenario", c.runs);
        let zomg = bench_zomg(&client, &c).await?;
        podman_conf(&dir).await?;
        eprintln!("podman: {} clones per scenario", c.runs);
        let podman = bench_podman(&c, &tar).await?;
        eprintln!("cp: {} copies per scenario", c.runs);
        let cp = bench_cp(&c, &dir, &rootfs).await?;
        anyhow::Ok(Results { zomg, podman, cp })
    }
    .await;
    std::fs::remove_dir_all(&dir).ok();
    print(&c, result?);
    Ok(())
}
