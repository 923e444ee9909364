//! The OCI bundle of a box: `config.json` plus the generated files bind-mounted into `/etc`.
//!
//! Layout of `<state_dir>/bundles/<id>/`:
//! - `config.json` — the OCI runtime spec (root = the box's subvolume, used in place);
//! - `hostname`, `hosts`, `boxes-env` — bind-mounted read-only at `/etc/...`;
//! - `console.log` — stdout/stderr of pid 1 (tini);
//! - `logs/<pid>.log` — output of background processes;
//! - `run/` — pid files and runc error logs of the current boot.
//!
//! `logs/` and `run/` are emptied on every start: pids restart at 1 in a fresh box, so a
//! log from an earlier boot would be confused with a new process of the same pid.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, UserBuilder, get_default_maskedpaths,
    get_default_readonly_paths,
};

use super::agent::AGENT_IN_BOX;
use super::layout::Layout;
use super::runc::{CPU_PERIOD_US, cpu_quota, memory_bytes, pids_limit};
use super::seccomp;
use crate::runtime::BoxSpec;

/// Where tini appears inside a box (on the fresh `/run` tmpfs, so nothing is written into
/// the user's root for it).
pub(crate) const TINI_IN_BOX: &str = "/run/zomg/tini";

/// `PATH` of pid 1 and every exec unless the box's env sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Open-file limit of every box process, when the server may grant it.
const NOFILE: u64 = 1_048_576;

/// The open-file limit boxes get: [`NOFILE`] capped by `fs.nr_open`, and by the server's
/// own hard limit when it lacks CAP_SYS_RESOURCE (runc cannot raise a hard limit then:
/// "error setting rlimit type 7: operation not permitted").
pub(crate) fn nofile_limit() -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NOFILE);
    let wanted = NOFILE.min(nr_open);
    if has_sys_resource() {
        return wanted;
    }
    let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    own.maximum.map_or(wanted, |hard| wanted.min(hard))
}

fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Capabilities of box processes: what a root user of a whole machine expects (package
/// managers, sudo, ping, strace, chroot), without the ones that reach beyond the box:
/// no SYS_ADMIN (mounts, namespaces), SYS_MODULE, SYS_RAWIO, SYS_TIME, SYS_BOOT,
/// DAC_READ_SEARCH (open_by_handle_at escapes), NET_ADMIN (a box could re-address itself on
/// the shared bridge), SYS_RESOURCE, SYS_NICE, MAC_*, AUDIT_CONTROL, BPF, PERFMON, SYSLOG.
pub(crate) fn capabilities() -> HashSet<Capability> {
    [
        Capability::AuditWrite,
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fowner,
        Capability::Fsetid,
        Capability::IpcLock,
        Capability::Kill,
        Capability::Lease,
        Capability::Mknod,
        Capability::NetBindService,
        Capability::NetRaw,
        Capability::Setfcap,
        Capability::Setgid,
        Capability::Setpcap,
        Capability::Setuid,
        Capability::SysChroot,
        Capability::SysPtrace,
    ]
    .into_iter()
    .collect()
}

/// Files of one bundle.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    pub dir: PathBuf,
    pub console: PathBuf,
    pub init_pid_file: PathBuf,
    pub run_log: PathBuf,
}

/// Writes the bundle of `spec` (replacing an earlier one) and returns its paths.
pub(crate) fn write(
    layout: &Layout,
    tini: &Path,
    nofile: u64,
    spec: &BoxSpec,
) -> io::Result<Bundle> {
    let dir = layout.bundle(&spec.id);
    std::fs::create_dir_all(&dir)?;
    for fresh in [layout.scratch(&spec.id), layout.logs(&spec.id)] {
        match std::fs::remove_dir_all(&fresh) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir(&fresh)?;
    }
    std::fs::write(dir.join("hostname"), format!("{}\n", spec.hostname))?;
    std::fs::write(dir.join("hosts"), hosts_file(&spec.hostname))?;
    std::fs::write(dir.join("boxes-env"), &spec.boxes_env_file)?;

    let config = config(layout, tini, nofile, spec, &dir)
        .map_err(|e| io::Error::other(format!("build config.json: {e}")))?;
    let json = serde_json::to_vec(&config).map_err(io::Error::other)?;
    std::fs::write(dir.join("config.json"), json)?;

    let scratch = layout.scratch(&spec.id);
    Ok(Bundle {
        console: dir.join("console.log"),
        init_pid_file: scratch.join("init.pid"),
        run_log: scratch.join("runc-run.json"),
        dir,
    })
}

/// `/etc/hosts`: localhost, and the box's own names on 127.0.1.1 (Debian's convention).
pub(crate) fn hosts_file(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {short}")
    };
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         127.0.1.1\t{names}\n"
    )
}

/// The environment of pid 1 (and so of every exec): defaults, then the box's env.
fn environment(spec: &BoxSpec) -> Vec<String> {
    let mut env: BTreeMap<&str, &str> = BTreeMap::from([
        ("PATH", DEFAULT_PATH),
        ("HOME", "/root"),
        ("TERM", "xterm-256color"),
    ]);
    for (k, v) in &spec.env {
        env.insert(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

fn mounts(
    tini: &Path,
    agent: &Path,
    spec: &BoxSpec,
    bundle: &Path,
) -> Result<Vec<Mount>, OciSpecError> {
    let p = Path::new;
    let mut mounts = vec![
        mount("/proc", "proc", p("proc"), &[])?,
        mount(
            "/dev",
            "tmpfs",
            p("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            p("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        // tmpfs pages are charged to the box's memory cgroup, which bounds these.
        mount(
            "/dev/shm",
            "tmpfs",
            p("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            p("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            p("sysfs"),
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            p("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        mount(
            "/tmp",
            "tmpfs",
            p("tmpfs"),
            &["nosuid", "nodev", "mode=1777"],
        )?,
        mount(
            "/run",
            "tmpfs",
            p("tmpfs"),
            &["nosuid", "nodev", "mode=755"],
        )?,
        mount(TINI_IN_BOX, "bind", tini, &["bind", "ro", "nodev"])?,
        mount(AGENT_IN_BOX, "bind", agent, &["bind", "ro", "nodev"])?,
        mount(
            "/etc/hostname",
            "bind",
            &bundle.join("hostname"),
            &["bind", "ro"],
        )?,
        mount("/etc/hosts", "bind", &bundle.join("hosts"), &["bind", "ro"])?,
        mount(
            "/etc/boxes-env",
            "bind",
            &bundle.join("boxes-env"),
            &["bind", "ro"],
        )?,
    ];
    for m in &spec.mounts {
        let mode = if m.read_only { "ro" } else { "rw" };
        mounts.push(mount(&m.destination, "bind", &m.source, &["rbind", mode])?);
    }
    Ok(mounts)
}

/// The OCI spec of a box.
pub(crate) fn config(
    layout: &Layout,
    tini: &Path,
    nofile: u64,
    spec: &BoxSpec,
    bundle: &Path,
) -> Result<Spec, OciSpecError> {
    let caps = capabilities();
    // runc creates a missing cwd inside the root; prefer /root only when the base has it.
    let cwd = if std::fs::symlink_metadata(spec.rootfs.join("root")).is_ok_and(|m| m.is_dir()) {
        "/root"
    } else {
        "/"
    };
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(
            [TINI_IN_BOX, "-s", "-g", "--", AGENT_IN_BOX]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .env(environment(spec))
        .cwd(cwd)
        .no_new_privileges(false)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        )
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(nofile)
                .soft(nofile)
                .build()?,
        ])
        .build()?;

    let r = spec.resources;
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(bytes) = memory_bytes(r.memory_mb) {
        // swap == limit: on cgroup v1 this is memory.memsw, so the box cannot swap past it.
        memory = memory.limit(bytes).swap(bytes);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(quota) = cpu_quota(r.millicpus) {
        cpu = cpu.quota(quota).period(CPU_PERIOD_US);
    }
    let mut resources = LinuxResourcesBuilder::default()
        // Deny every device first; runc then allows its default set (null, zero, tty, ...).
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        .memory(memory.build()?)
        .cpu(cpu.build()?);
    if let Some(limit) = pids_limit(r.pids) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(layout.cgroups_path(&spec.id)))
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .seccomp(seccomp::profile()?)
        .build()?;

    let mut config = Spec::default();
    config
        .set_hostname(Some(spec.hostname.clone()))
        .set_root(Some(
            RootBuilder::default()
                .path(&spec.rootfs)
                .readonly(false)
                .build()?,
        ))
        .set_process(Some(process))
        .set_mounts(Some(mounts(tini, &layout.agent, spec, bundle)?))
        .set_linux(Some(linux));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{BindMount, Resources};

    fn spec(rootfs: &Path) -> BoxSpec {
        BoxSpec {
            id: "b1".into(),
            hostname: "web.proj".into(),
            rootfs: rootfs.to_path_buf(),
            env: BTreeMap::from([("FOO".into(), "bar".into()), ("TERM".into(), "dumb".into())]),
            boxes_env_file: "export FOO=bar\n".into(),
            resources: Resources {
                millicpus: 500,
                memory_mb: 256,
                pids: 512,
            },
            mounts: vec![BindMount {
                source: "/srv/vol".into(),
                destination: "/data".into(),
                read_only: true,
            }],
        }
    }

    #[test]
    fn hosts_names_the_box() {
        assert_eq!(
            hosts_file("web.proj"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             127.0.1.1\tweb.proj web\n"
        );
    }

    #[test]
    fn config_has_tini_limits_and_mounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("root")).expect("mkdir");
        let layout = Layout::new(&dir.path().join("state"), "t");
        let spec = spec(&rootfs);
        let bundle = write(&layout, Path::new("/usr/bin/tini-static"), 4096, &spec).expect("write");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.dir.join("config.json")).expect("read"))
                .expect("json");
        let process = &json["process"];
        assert_eq!(process["args"][0], TINI_IN_BOX);
        assert_eq!(process["args"][4], AGENT_IN_BOX);
        assert_eq!(process["cwd"], "/root");
        assert_eq!(process["noNewPrivileges"], false);
        let env: Vec<&str> = process["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|v| v.as_str().expect("str"))
            .collect();
        assert!(env.contains(&"FOO=bar"));
        assert!(
            env.contains(&"TERM=dumb"),
            "box env overrides defaults: {env:?}"
        );
        assert!(env.contains(&"HOME=/root"));
        let caps = process["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert!(caps.iter().any(|c| c == "CAP_NET_RAW"));
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        let linux = &json["linux"];
        assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(linux["cgroupsPath"], "/zomg-t/b1");
        assert_eq!(linux["resources"]["memory"]["limit"], 268_435_456);
        assert_eq!(linux["resources"]["memory"]["swap"], 268_435_456);
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(linux["resources"]["pids"]["limit"], 512);
        let mounts = json["mounts"].as_array().expect("mounts");
        let data = mounts
            .iter()
            .find(|m| m["destination"] == "/data")
            .expect("data mount");
        assert_eq!(data["options"], serde_json::json!(["rbind", "ro"]));
        assert_eq!(json["hostname"], "web.proj");
        assert_eq!(
            std::fs::read_to_string(bundle.dir.join("boxes-env")).expect("env file"),
            "export FOO=bar\n"
        );
    }
}
