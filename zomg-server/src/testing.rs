//! A real server for end-to-end tests: real btrfs (a loop image in a temporary data dir),
//! real runc, a tiny busybox base, the HTTP API on a free port.
//!
//! ```no_run
//! # async fn t() {
//! let server = zomg_server::testing::TestServer::start().await;
//! let client = server.client();
//! // ... create boxes through the SDK or run the `zomg` binary against server.url() ...
//! # }
//! ```
//!
//! The server runs on its own tokio runtime, so tests may use any flavour of runtime (or
//! none: [`TestServer::start_blocking`]). Dropping the `TestServer` deletes every box,
//! stops the server, unmounts the loop image, removes the instance's cgroup directories
//! and the data dir — also when the test failed. Prerequisites (root, runc, tini-static,
//! a static busybox, btrfs-progs) are checked first, and a missing one fails the test with
//! its name: these tests never pass by skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use zomg_sdk::{Client, ProjectName, Target};

use crate::core::BoxService;
use crate::server::{self, RunningServer, ServerConfig};
use crate::storage::btrfs::BtrfsStorage;

/// The busybox the base is made of (Debian: `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// The static tini every box runs as pid 1 (Debian: `tini`).
pub const TINI: &str = "/usr/bin/tini-static";
/// The alias of the base [`TestServer`] imports and makes the default.
pub const BASE: &str = "bb";

/// Panics, naming what is missing, unless this host can run real boxes.
pub fn require_prerequisites() {
    assert!(
        rustix::process::geteuid().is_root(),
        "end-to-end tests need root (btrfs loop mounts, runc, cgroups)"
    );
    for (tool, package) in [
        ("runc", "runc"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("losetup", "mount"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "end-to-end tests need {tool} in PATH (apt-get install {package})"
        );
    }
    assert!(
        Path::new(TINI).is_file(),
        "end-to-end tests need {TINI} (apt-get install tini)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "end-to-end tests need a static {BUSYBOX} for their base (apt-get install busybox-static)"
    );
}

/// Fills `root` with a minimal root filesystem: busybox, a symlink per applet, `/etc/passwd`.
pub fn make_busybox_rootfs(root: &Path) -> std::io::Result<()> {
    for dir in ["bin", "etc", "root", "tmp", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// A running server on a temporary data dir; everything it made is removed on drop.
#[derive(Debug)]
pub struct TestServer {
    rt: Option<tokio::runtime::Runtime>,
    server: Option<RunningServer>,
    service: BoxService,
    url: String,
    token: String,
    data_dir: Option<TempDir>,
    data_path: PathBuf,
}

impl TestServer {
    /// Size of the loop image, in GB (sparse: only what is written takes disk space).
    pub const STORAGE_GB: u64 = 4;

    /// Starts a server from an async test.
    pub async fn start() -> TestServer {
        require_prerequisites();
        let (rt, data_dir, config) = Self::prepare();
        let launched = rt.spawn(Self::launch(config)).await;
        Self::finish(rt, data_dir, launched.expect("server start task panicked"))
    }

    /// Starts a server from a test without a runtime (e.g. one running the `zomg` binary).
    pub fn start_blocking() -> TestServer {
        require_prerequisites();
        let (rt, data_dir, config) = Self::prepare();
        let launched = rt.block_on(Self::launch(config));
        Self::finish(rt, data_dir, launched)
    }

    fn prepare() -> (tokio::runtime::Runtime, TempDir, ServerConfig) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("test-server")
            .build()
            .expect("build the server runtime");
        let data_dir = tempfile::Builder::new()
            .prefix("zomg-e2e-")
            .tempdir()
            .expect("create a temporary data dir");
        let mut config = ServerConfig::new(data_dir.path());
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.storage_size_gb = Self::STORAGE_GB;
        config.default_base = BASE.to_owned();
        config.tini = PathBuf::from(TINI);
        (rt, data_dir, config)
    }

    async fn launch(config: ServerConfig) -> anyhow::Result<RunningServer> {
        let server = server::start(config.clone()).await?;
        let rootfs = config.data_dir.join("busybox-rootfs");
        make_busybox_rootfs(&rootfs)?;
        server.service.import_base(BASE, &rootfs, false).await?;
        std::fs::remove_dir_all(&rootfs)?;
        Ok(server)
    }

    fn finish(
        rt: tokio::runtime::Runtime,
        data_dir: TempDir,
        launched: anyhow::Result<RunningServer>,
    ) -> TestServer {
        let data_path = data_dir.path().to_path_buf();
        let server = match launched {
            Ok(s) => s,
            Err(e) => {
                drop(rt);
                let _ = BtrfsStorage::unmount_loop(&data_path);
                panic!("starting the test server failed: {e:#}");
            }
        };
        TestServer {
            url: server.url(),
            token: server.token.clone(),
            service: server.service.clone(),
            server: Some(server),
            rt: Some(rt),
            data_dir: Some(data_dir),
            data_path,
        }
    }

    /// The API base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// An SDK client for this server.
    pub fn client(&self) -> Client {
        let target = Target::new(self.url.parse().expect("server URL")).with_token(&self.token);
        Client::new(&target).expect("build a client")
    }

    /// The box service behind the API, for checks the API does not offer.
    pub fn service(&self) -> &BoxService {
        &self.service
    }

    /// The data dir (database, token, loop image, runtime state).
    pub fn data_dir(&self) -> &Path {
        &self.data_path
    }

    /// The name of this server's runtime instance: box cgroups are
    /// `/sys/fs/cgroup/<controller>/zomg-<instance>/<box id>`.
    pub fn instance(&self) -> String {
        server::instance_id(&self.data_path)
    }

    /// The project tests use unless they need another.
    pub fn project(&self) -> ProjectName {
        zomg_sdk::DEFAULT_PROJECT.parse().expect("default project")
    }

    /// Deletes every box, stops the server and releases the loop image; returns what went
    /// wrong.
    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let (Some(rt), Some(server)) = (self.rt.take(), self.server.take()) {
            let service = self.service.clone();
            // Its own thread: drop may run inside a test's runtime, where block_on panics.
            let result = std::thread::spawn(move || {
                let problems = rt.block_on(async move {
                    let mut problems = Vec::new();
                    let boxes = service
                        .store_backend()
                        .list_boxes(&Default::default())
                        .unwrap_or_default();
                    for b in boxes {
                        match service.delete(&b.project, &b.name, true).await {
                            Ok(s) if s.status == zomg_sdk::DeleteState::Deleted => {}
                            Ok(s) => problems.push(format!("box {}: {:?}", b.name, s)),
                            Err(e) => problems.push(format!("box {}: {e}", b.name)),
                        }
                    }
                    if let Err(e) = server.shutdown().await {
                        problems.push(format!("server shutdown: {e:#}"));
                    }
                    problems
                });
                rt.shutdown_timeout(std::time::Duration::from_secs(5));
                problems
            })
            .join();
            match result {
                Ok(p) => problems.extend(p),
                Err(_) => problems.push("the cleanup thread panicked".to_owned()),
            }
        }
        if let Err(e) = BtrfsStorage::unmount_loop(&self.data_path) {
            problems.push(format!("unmounting the loop image: {e}"));
        }
        let instance = self.instance();
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(format!("zomg-{instance}")));
            }
        }
        if let Some(dir) = self.data_dir.take() {
            if let Err(e) = dir.close() {
                problems.push(format!("removing the data dir: {e}"));
            }
        }
        problems
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let problems = self.cleanup();
        if !problems.is_empty() {
            let text = format!("test server cleanup: {}", problems.join("; "));
            if std::thread::panicking() {
                eprintln!("{text}");
            } else {
                panic!("{text}");
            }
        }
    }
}
