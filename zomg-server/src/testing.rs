//! Test support: a real `zomg-server` (SQLite, loop-mounted btrfs, runc) running in-process
//! on a throwaway data directory, and the root filesystems tests boot from.
//!
//! [`TestServer`] is for async tests; [`BlockingTestServer`] runs one on its own runtime for
//! tests that block their thread (running the `zomg` binary, say); [`ChildServer`] runs the
//! `zomg-server` binary as a child process, to measure it alone.
//!
//! Only compiled with the `testing` feature and for this crate's unit tests; the shipped
//! binary never contains it. Tests that use it need root, runc, tini-static, btrfs-progs and
//! busybox-static: a missing prerequisite fails the test with its name, it never skips.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zomg_sdk::{BoxInfo, BoxStatus, Client, CreateBox, ProjectName, Target};

use crate::core::BoxService;
use crate::server::{self, RunningServer, ServerConfig};
use crate::storage::Subvol;
use crate::storage::btrfs::BtrfsStorage;

const BUSYBOX: &str = "/bin/busybox";
const TINI: &str = "/usr/bin/tini-static";

/// Panics with the name of the first missing prerequisite of real-backend tests: those of
/// [`require_runtime_prerequisites`] and of [`require_btrfs_prerequisites`].
pub fn require_prerequisites() {
    require_runtime_prerequisites();
    require_btrfs_prerequisites();
}

/// Panics with the name of the first missing prerequisite of running boxes with runc from a
/// [`busybox_rootfs`]: root, runc, tini-static, a static busybox and the cgroup v1 memory
/// controller.
pub fn require_runtime_prerequisites() {
    require_root();
    assert!(
        which("runc").is_some(),
        "this test needs `runc` in PATH (apt-get install runc)"
    );
    assert!(
        Path::new(TINI).is_file(),
        "this test needs {TINI} (apt-get install tini)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "this test needs a static {BUSYBOX} (apt-get install busybox-static)"
    );
    assert!(
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
        "this test needs the cgroup v1 memory controller at /sys/fs/cgroup/memory"
    );
}

/// Panics with the name of the first missing prerequisite of a loop-mounted btrfs: root,
/// btrfs-progs and loop devices.
pub fn require_btrfs_prerequisites() {
    require_root();
    for tool in ["mkfs.btrfs", "btrfs"] {
        assert!(
            which(tool).is_some(),
            "this test needs `{tool}` in PATH (apt-get install btrfs-progs)"
        );
    }
    assert!(
        Path::new("/dev/loop-control").exists(),
        "this test needs loop devices (/dev/loop-control is missing)"
    );
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (btrfs loop mounts, runc, cgroups)"
    );
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Fills `root` with a minimal root filesystem: static busybox, a symlink per applet, and
/// the usual top-level directories.
pub fn busybox_rootfs(root: &Path) {
    for dir in ["bin", "etc", "root", "tmp", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(root.join(dir)).expect("create rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
}

/// Where [`box_base_rootfs`] keeps its debootstrap result between test runs.
pub const BOX_BASE_CACHE: &str = "/var/cache/zomg-test/box-base";

/// A Debian bookworm root filesystem built like `zomg-server base bootstrap` builds
/// `box-base`. Built once with debootstrap (about a minute; needs the Debian mirror) and
/// cached in [`BOX_BASE_CACHE`]; concurrent callers wait for one build.
pub fn box_base_rootfs() -> PathBuf {
    let cache = PathBuf::from(BOX_BASE_CACHE);
    let done = cache.join(".complete");
    if done.exists() {
        return cache.join("rootfs");
    }
    std::fs::create_dir_all(&cache).expect("create box-base cache dir");
    let lock = std::fs::File::create(cache.join(".lock")).expect("create cache lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock cache");
    if !done.exists() {
        assert!(
            which("debootstrap").is_some(),
            "this test needs debootstrap to build box-base (apt-get install debootstrap)"
        );
        let rootfs = cache.join("rootfs");
        let _ = std::fs::remove_dir_all(&rootfs);
        let status = Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!(
                "--include={}",
                crate::core::BOOTSTRAP_PACKAGES.join(",")
            ))
            .arg("bookworm")
            .arg(&rootfs)
            .arg("http://deb.debian.org/debian")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run debootstrap");
        assert!(status.success(), "debootstrap of box-base failed: {status}");
        std::fs::write(&done, b"").expect("mark cache complete");
    }
    cache.join("rootfs")
}

/// A real server on a throwaway data directory, with a busybox base `bb` as the default
/// base. Everything it made (containers, cgroups, the loop mount) is removed on drop, even
/// when the test failed.
#[derive(Debug)]
pub struct TestServer {
    /// Holds the data directory; removed after [`teardown`] on drop.
    _dir: tempfile::TempDir,
    server: Option<RunningServer>,
    config: ServerConfig,
}

impl TestServer {
    /// Starts a server with the `bb` base imported and default.
    pub async fn start() -> TestServer {
        require_prerequisites();
        let dir = tempfile::Builder::new()
            .prefix("zomg-test-")
            .tempdir()
            .expect("tempdir");
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.storage_size_gb = 8;
        config.default_base = "bb".to_owned();
        let rootfs = dir.path().join("bb-rootfs");
        busybox_rootfs(&rootfs);
        let server = server::start(config.clone()).await.expect("start server");
        server
            .service
            .import_base("bb", &rootfs, false)
            .await
            .expect("import busybox base");
        TestServer {
            _dir: dir,
            server: Some(server),
            config,
        }
    }

    /// The running server.
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        self.server().url()
    }

    /// The admin token.
    pub fn token(&self) -> String {
        self.server().token.clone()
    }

    /// An SDK client with the admin token.
    pub fn client(&self) -> Client {
        let target = Target::new(self.url().parse().expect("url")).with_token(self.token());
        Client::new(&target).expect("client")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The btrfs storage root (`<data>/btrfs`).
    pub fn storage_root(&self) -> PathBuf {
        self.config.data_dir.join("btrfs")
    }

    /// The host path of a box's root subvolume.
    pub fn root_path(&self, b: &BoxInfo) -> PathBuf {
        self.server()
            .service
            .storage_backend()
            .path(&Subvol::root(&b.id))
    }

    /// A scratch directory on the host that lives as long as the server.
    pub fn scratch(&self) -> PathBuf {
        let p = self._dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// Imports a base into this server.
    pub async fn import_base(&self, reference: &str, rootfs: &Path) {
        self.server()
            .service
            .import_base(reference, rootfs, false)
            .await
            .expect("import base");
    }

    /// Stops the HTTP server (boxes keep running), then starts a new server process-state
    /// on the same data directory, which reconciles.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
        self.server = Some(
            server::start(self.config.clone())
                .await
                .expect("restart server"),
        );
    }

    /// Stops serving without touching boxes, as a crash would (the in-process equivalent).
    pub async fn stop_serving(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
    }

    /// Starts serving again after [`TestServer::stop_serving`].
    pub async fn start_serving(&mut self) {
        assert!(self.server.is_none(), "server already running");
        self.server = Some(
            server::start(self.config.clone())
                .await
                .expect("start server"),
        );
    }

    /// What exists on the host for this server besides the bases: root and volume
    /// subvolumes, runc containers, box cgroups and bundles. Empty after every box is gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let storage = self.storage_root();
        for kind in ["roots", "volumes"] {
            if let Ok(entries) = std::fs::read_dir(storage.join(kind)) {
                found.extend(
                    entries
                        .flatten()
                        .map(|e| format!("subvolume {kind}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        let runtime = self.config.data_dir.join("runtime");
        for (dir, what) in [
            (runtime.join("runc"), "runc state"),
            (runtime.join("bundles"), "bundle"),
        ] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                found.extend(
                    entries
                        .flatten()
                        .map(|e| format!("{what} {}", e.file_name().to_string_lossy())),
                );
            }
        }
        for parent in instance_cgroups(&self.config.data_dir) {
            if let Ok(entries) = std::fs::read_dir(&parent) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        found.push(format!("cgroup {}", e.path().display()));
                    }
                }
            }
        }
        found
    }

    /// Waits until the box has `status`.
    pub async fn wait_status(&self, project: &str, name: &str, status: BoxStatus) {
        let client = self.client();
        let (p, n): (ProjectName, zomg_sdk::BoxName) = (
            project.parse().expect("project"),
            name.parse().expect("name"),
        );
        zomg_sdk::poll_until(
            &format!("{project}:{name} to be {status}"),
            Duration::from_secs(30),
            || async {
                let b = client.get_box(&p, &n).await?;
                Ok((b.status == status).then_some(()))
            },
        )
        .await
        .expect("status reached");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        teardown(&self.config.data_dir);
    }
}

/// A [`TestServer`] that serves from a runtime of its own, so that a test can block its
/// thread (on the `zomg` binary, say) while the server answers. Dropping it stops serving,
/// then tears down like [`TestServer`].
#[derive(Debug)]
pub struct BlockingTestServer {
    // Dropped before the runtime it serves on.
    server: TestServer,
    runtime: tokio::runtime::Runtime,
    /// A client with the admin token.
    pub client: Client,
    /// The project test boxes live in.
    pub project: ProjectName,
}

impl BlockingTestServer {
    /// Starts a [`TestServer`] on a new two-thread runtime.
    pub fn start() -> BlockingTestServer {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server = runtime.block_on(TestServer::start());
        let client = server.client();
        BlockingTestServer {
            server,
            runtime,
            client,
            project: zomg_sdk::DEFAULT_PROJECT.parse().expect("default project"),
        }
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The server running on the runtime.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The admin token.
    pub fn token(&self) -> String {
        self.server.token()
    }

    /// The box service, for looking behind the API.
    pub fn service(&self) -> &BoxService {
        &self.server.server().service
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// A scratch directory on the host that lives as long as the server.
    pub fn scratch(&self) -> PathBuf {
        self.server.scratch()
    }

    /// The host path of a box's root subvolume.
    pub fn root_path(&self, b: &BoxInfo) -> PathBuf {
        self.server.root_path(b)
    }

    /// Creates (and starts) a box from the busybox base in [`BlockingTestServer::project`].
    pub fn create_box(&self, name: &str) -> BoxInfo {
        let request = CreateBox {
            name: name.to_owned(),
            base: Some("bb".to_owned()),
            ..Default::default()
        };
        self.block_on(self.client.create_box(&self.project, &request))
            .unwrap_or_else(|e| panic!("create box {name}: {e}"))
    }
}

impl Drop for BlockingTestServer {
    fn drop(&mut self) {
        // Best effort and without panicking: this may run while a failed test unwinds.
        if let Some(running) = self.server.server.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), running.shutdown()).await
            });
        }
    }
}

/// The `zomg-server` binary `bin` run as a child process, so that it can be measured alone:
/// data in `<dir>/data` on a loop btrfs of `storage_gb` GB, with a busybox base `bb` as the
/// default. Stopped with SIGTERM and torn down ([`teardown`]) on drop.
#[derive(Debug)]
pub struct ChildServer {
    child: std::process::Child,
    data_dir: PathBuf,
    url: String,
    token: String,
}

impl ChildServer {
    /// Imports the base, starts serving on a free local port and waits (30 s at most) until
    /// the server accepts connections.
    pub fn start(bin: &Path, dir: &Path, storage_gb: u64) -> ChildServer {
        require_prerequisites();
        let data_dir = dir.join("data");
        let rootfs = dir.join("bb-rootfs");
        busybox_rootfs(&rootfs);
        let gb = storage_gb.to_string();
        let import = Command::new(bin)
            .args(["base", "import", "bb"])
            .arg(&rootfs)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--storage-size-gb", &gb])
            .output()
            .expect("run zomg-server base import");
        assert!(
            import.status.success(),
            "zomg-server base import: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["serve", "--listen", &listen, "--default-base", "bb"])
            .args(["--storage-size-gb", &gb])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("ZOMG_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start zomg-server");
        // Built now, so that a server that does not come up is still stopped and torn down.
        let mut server = ChildServer {
            child,
            data_dir,
            url: format!("http://{listen}"),
            token: String::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "zomg-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.token = std::fs::read_to_string(server.data_dir.join("admin-token"))
            .expect("read the admin token")
            .trim()
            .to_owned();
        server
    }

    /// The API base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// An SDK client with the admin token.
    pub fn client(&self) -> Client {
        let target = Target::new(self.url.parse().expect("url")).with_token(self.token.clone());
        Client::new(&target).expect("client")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        teardown(&self.data_dir);
    }
}

/// The cgroup directory `zomg-<instance>` of a server's boxes in every hierarchy (the v1
/// controllers, `systemd` and the v2 `unified` one of a hybrid host).
fn instance_cgroups(data_dir: &Path) -> Vec<PathBuf> {
    let name = format!("zomg-{}", server::instance_id(data_dir));
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join(&name))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Synchronous, best-effort removal of everything a server on `data_dir` put on the host:
/// its runc containers, cgroups and loop mount. Works even when a test panicked inside the
/// async runtime, and for servers that ran as a separate process.
pub fn teardown(data_dir: &Path) {
    let runc_root = data_dir.join("runtime").join("runc");
    if let Ok(out) = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "-q"])
        .output()
    {
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", id])
                .output();
        }
    }
    for parent in instance_cgroups(data_dir) {
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
    let _ = BtrfsStorage::unmount_loop(data_dir);
}
