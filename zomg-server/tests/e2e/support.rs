//! A real zomg server in this process for end-to-end tests: loop-mounted btrfs in a
//! temporary data directory, runc boxes booted from a tiny busybox base, a client for it.
//!
//! [`TestServer`] owns its own tokio runtime, so it serves while the test thread blocks
//! (running the `zomg` binary, say). Drop deletes its boxes, stops the server and unmounts
//! the loop image. Missing prerequisites (root, runc, tini, busybox, btrfs) fail loudly.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use zomg_sdk::{BoxInfo, BoxName, Client, CreateBox, ProjectName, Target};
use zomg_server::core::BoxService;
use zomg_server::server::{self, RunningServer, ServerConfig};
use zomg_server::storage::btrfs::BtrfsStorage;

const BUSYBOX: &str = "/bin/busybox";
const TINI: &str = "/usr/bin/tini-static";

/// The base every test box boots from.
pub const BASE: &str = "bb";

/// Fails the test, naming what is missing, unless this machine can run boxes.
pub fn require_prerequisites() {
    let have = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        rustix::process::geteuid().is_root(),
        "end-to-end tests need root (btrfs loop mounts, runc)"
    );
    assert!(
        have("runc"),
        "end-to-end tests need runc in PATH (apt-get install runc)"
    );
    assert!(
        have("mkfs.btrfs"),
        "end-to-end tests need mkfs.btrfs (apt-get install btrfs-progs)"
    );
    assert!(
        Path::new(TINI).is_file(),
        "end-to-end tests need {TINI} (apt-get install tini)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "end-to-end tests need a static {BUSYBOX} (apt-get install busybox-static)"
    );
}

/// A minimal root filesystem: busybox, a symlink per applet, `/etc/passwd`.
pub fn make_rootfs(root: &Path) {
    for dir in ["bin", "etc", "root", "tmp", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(root.join(dir)).expect("create rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
}

/// A server with its own data directory, runtime and client.
pub struct TestServer {
    rt: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    dir: tempfile::TempDir,
    /// A client with the admin token.
    pub client: Client,
    /// The project test boxes live in.
    pub project: ProjectName,
    boxes: Mutex<Vec<BoxName>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl TestServer {
    /// A server on a 2 GB loop image with the busybox base imported.
    pub fn start() -> Self {
        Self::with_storage_gb(2)
    }

    /// A server whose loop image has `gb` GB.
    pub fn with_storage_gb(gb: u64) -> Self {
        require_prerequisites();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix("zomg-e2e-")
            .tempdir()
            .expect("tempdir");
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.storage_size_gb = gb;
        config.default_base = BASE.to_owned();
        let server = rt
            .block_on(server::start(config))
            .expect("start the server");
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&rootfs);
        rt.block_on(server.service.import_base(BASE, &rootfs, false))
            .expect("import the busybox base");
        let target = Target::new(server.url().parse().unwrap()).with_token(server.token.clone());
        let client = Client::new(&target).expect("client");
        TestServer {
            rt,
            server: Some(server),
            dir,
            client,
            project: ProjectName::new("default").unwrap(),
            boxes: Mutex::new(Vec::new()),
        }
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        self.running().url()
    }

    /// The admin token.
    pub fn token(&self) -> String {
        self.running().token.clone()
    }

    /// The box service, for looking behind the API.
    pub fn service(&self) -> &BoxService {
        &self.running().service
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// Creates (and starts) a box from the busybox base; deleted when the server drops.
    pub fn create_box(&self, name: &str) -> BoxInfo {
        let b = self
            .block_on(self.client.create_box(
                &self.project,
                &CreateBox {
                    name: name.to_owned(),
                    base: Some(BASE.to_owned()),
                    ..Default::default()
                },
            ))
            .unwrap_or_else(|e| panic!("create box {name}: {e}"));
        self.boxes.lock().unwrap().push(b.name.clone());
        b
    }

    /// The host path of a box's root subvolume.
    pub fn root_path(&self, b: &BoxInfo) -> PathBuf {
        use zomg_server::storage::Subvol;
        self.service().storage_backend().path(&Subvol::root(&b.id))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let boxes = std::mem::take(&mut *self.boxes.lock().unwrap());
        for name in boxes {
            let _ = self
                .rt
                .block_on(self.client.delete_box(&self.project, &name, true));
        }
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await
            });
        }
        if let Err(e) = BtrfsStorage::unmount_loop(&self.data_dir()) {
            eprintln!("unmounting the test loop image failed: {e}");
        }
    }
}
