//! Benchmark harness helpers: timing, statistics, the result table, and the podman peer.
//!
//! The runnable benchmarks live in `src/bin/`; each prints a table of medians and p95 for
//! zomg next to the same operation done by `podman --runtime runc`, measured in the same
//! run on the same root filesystem, with the ratio zomg/podman (below 1 = zomg is faster).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Latency samples of one operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.values.clone();
        v.sort();
        v
    }

    /// The nearest-rank percentile `p` (0–100).
    pub fn percentile(&self, p: f64) -> Duration {
        let v = self.sorted();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 95th percentile.
    pub fn p95(&self) -> Duration {
        self.percentile(95.0)
    }
}

/// Times one async operation.
pub async fn time<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<(T, Duration)> {
    let start = Instant::now();
    let v = f.await?;
    Ok((v, start.elapsed()))
}

/// Runs a command to completion, failing with its stderr; returns its wall time.
pub fn time_cmd(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One row of the result table: an operation timed for zomg and for the peer.
#[derive(Debug)]
pub struct Row {
    /// What was measured.
    pub op: String,
    /// zomg's samples.
    pub zomg: Samples,
    /// The peer's samples (empty when the peer has no equivalent).
    pub peer: Samples,
}

/// Prints a Markdown table of medians, p95 and the ratios zomg/peer.
pub fn print_table(peer_name: &str, rows: &[Row]) {
    println!(
        "| operation | n | zomg median | zomg p95 | {peer_name} median | {peer_name} p95 | ratio median | ratio p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let ratio = |a: Duration, b: Duration| {
            if b.is_zero() {
                "-".to_owned()
            } else {
                format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
            }
        };
        let (pm, pp) = if r.peer.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (ms(r.peer.median()), ms(r.peer.p95()))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.op,
            r.zomg.len(),
            ms(r.zomg.median()),
            ms(r.zomg.p95()),
            pm,
            pp,
            ratio(r.zomg.median(), r.peer.median()),
            ratio(r.zomg.p95(), r.peer.p95()),
        );
    }
}

/// How many iterations to run: `ZOMG_BENCH_RUNS`, default 30.
pub fn runs() -> usize {
    std::env::var("ZOMG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// The peer: podman with runc, on the same root filesystem imported as an image.
#[derive(Debug, Clone)]
pub struct Podman {
    /// The image name.
    pub image: String,
}

impl Podman {
    /// Imports `rootfs` (a directory) as image `image`.
    pub fn import(rootfs: &Path, image: &str) -> Result<Podman> {
        if Command::new("podman").arg("--version").output().is_err() {
            bail!("the benchmark needs podman as the peer (apt-get install podman)");
        }
        let tar = std::env::temp_dir().join(format!("{}.tar", image.replace('/', "_")));
        time_cmd(
            Command::new("tar")
                .arg("-C")
                .arg(rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        time_cmd(Command::new("podman").arg("import").arg(&tar).arg(image))?;
        std::fs::remove_file(&tar).ok();
        Ok(Podman {
            image: image.to_owned(),
        })
    }

    /// `podman --runtime runc` with the arguments.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(["--runtime", "runc"]).args(args);
        c
    }

    /// Arguments of `podman run -d` for a long-running container like a zomg box: pid 1
    /// exits on SIGTERM. The rlimits are pinned because podman's defaults exceed what root
    /// may set on this kind of machine (no CAP_SYS_RESOURCE).
    pub fn run_args<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        vec![
            "run",
            "-d",
            "--name",
            name,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            &self.image,
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2147483647 & wait",
        ]
    }

    /// Removes a container, ignoring failure.
    pub fn remove(&self, name: &str) {
        let _ = self.cmd(&["rm", "-f", name]).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = Samples::default();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.median(), Duration::from_millis(50));
        assert_eq!(s.p95(), Duration::from_millis(95));
        let mut one = Samples::default();
        one.push(Duration::from_millis(7));
        assert_eq!(one.p95(), Duration::from_millis(7));
    }
}
