//! Files: `cp` (`get`, `put`) and `inject` (SPEC §6, §8).
//!
//! `cp` follows `docker cp` for where things land:
//! - a file into an existing directory (or a path ending in `/`) goes inside it, under its
//!   own name; otherwise it becomes the destination path;
//! - with `-r`, a directory copied to a path that does not exist becomes that path; copied
//!   to an existing directory it lands inside it under its own name; a source ending in
//!   `/.` copies the directory's contents instead;
//! - missing parent directories in the box are created; `-` as the local side is stdin or
//!   stdout (a single file).
//!
//! Permissions (and mtimes) are kept both ways; files written into a box belong to root.
//! Nothing is printed on success except notes on stderr: the data volume a write landed
//! in, entries that were skipped, and a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::AsyncWriteExt;
use zomg_sdk::{
    BoxPath, Client, CreateBox, ExecRequest, FileKind, Progress, ResolvedBox, ResolvedRef,
    UploadBody, UploadOptions, UploadResult, ephemeral_box_name, process_env,
};

use super::{Context, refuse_json};
use crate::cli::{CpArgs, InjectArgs};

/// The exact error for a directory without `-r` (SPEC §6).
const DIRECTORY_NEEDS_R: &str =
    "only files are supported (directories require -r, not yet supported)";

/// Transfers at least this large show a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 8 << 20;

/// `zomg cp` / `get` / `put`.
pub async fn cp(ctx: &Context, args: CpArgs) -> Result<()> {
    refuse_json(args.output, "cp/get/put")?;
    let src = BoxPath::parse_arg(&args.src)?;
    let dest = BoxPath::parse_arg(&args.dest)?;
    match (src, dest) {
        (Some(_), Some(_)) => {
            bail!(
                "both {:?} and {:?} are box paths; exactly one side must be a box",
                args.src,
                args.dest
            )
        }
        (None, None) => bail!(
            "neither {:?} nor {:?} is a box path; write one side as box:/path",
            args.src,
            args.dest
        ),
        (None, Some(dest)) => {
            if args.src != "-" {
                let meta = std::fs::metadata(&args.src)
                    .with_context(|| format!("cannot read {}", args.src))?;
                if meta.is_dir() && !args.recursive {
                    bail!(DIRECTORY_NEEDS_R);
                }
            }
            let (client, target) = connect(ctx, &args, &dest)?;
            with_box(&client, target, |b| {
                put(&client, b, &args.src, &dest, args.recursive)
            })
            .await
        }
        (Some(src), None) => {
            let (client, target) = connect(ctx, &args, &src)?;
            with_box(&client, target, |b| {
                get(&client, b, &src, &args.dest, args.recursive)
            })
            .await
        }
    }
}

fn connect(ctx: &Context, args: &CpArgs, path: &BoxPath) -> Result<(Client, ResolvedRef)> {
    let project = ctx.project(&args.project)?;
    let target = path.box_ref.resolve_ref(&project, process_env)?;
    Ok((ctx.client()?, target))
}

/// Runs `f` on the box; for `-` creates an ephemeral box first and force-deletes it after,
/// also when `f` fails or the user presses Ctrl-C (SPEC §7).
async fn with_box<F, Fut>(client: &Client, target: ResolvedRef, f: F) -> Result<()>
where
    F: FnOnce(ResolvedBox) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let project = match target {
        ResolvedRef::Box(b) => return f(b).await,
        ResolvedRef::Ephemeral { project } => project,
    };
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let name = ephemeral_box_name(std::process::id(), millis);
    let create = CreateBox {
        name: name.to_string(),
        ..Default::default()
    };
    client
        .create_box(&project, &create)
        .await
        .with_context(|| format!("cannot create ephemeral box {name}"))?;
    eprintln!("ephemeral box: {name}");
    let b = ResolvedBox {
        project: project.clone(),
        name: name.clone(),
    };
    let result = tokio::select! {
        r = f(b) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let deleted = client.delete_box(&project, &name, true).await;
    match (result, deleted) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Err(d)) => Err(anyhow!(d).context(format!("cannot delete ephemeral box {name}"))),
        (Err(e), Err(d)) => {
            Err(e.context(format!("and deleting ephemeral box {name} failed too: {d}")))
        }
    }
}

/// The last component of a path (`/a/b/` → `b`), if any.
fn base_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
}

/// `dir` joined with `name` in a box path.
fn join_remote(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// A source ending in `/.`: copy the directory's contents, not the directory.
fn contents_only(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// A progress bar on stderr, when it is a terminal and the transfer is large or of
/// unknown size.
fn progress_bar(total: Option<u64>, label: &str) -> (Option<ProgressBar>, Option<Progress>) {
    if !std::io::stderr().is_terminal() || total.is_some_and(|t| t < PROGRESS_THRESHOLD) {
        return (None, None);
    }
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    let b = bar.clone();
    (Some(bar), Some(Progress::new(move |n| b.inc(n))))
}

fn finish(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// Local → box.
async fn put(
    client: &Client,
    b: ResolvedBox,
    src: &str,
    dest: &BoxPath,
    recursive: bool,
) -> Result<()> {
    let (project, name) = (&b.project, &b.name);
    let shown = |p: &str| format!("{}:{p}", dest.box_ref);
    if src == "-" {
        if dest.path.ends_with('/') {
            bail!(
                "{} names a directory; give the file name to write stdin to",
                shown(&dest.path)
            );
        }
        let body = UploadBody::from_reader(tokio::io::stdin());
        let r = client
            .upload(project, name, &dest.path, body, &UploadOptions::default())
            .await?;
        return report_upload(&r, &shown(&r.path));
    }
    let local = Path::new(src);
    let meta = std::fs::metadata(local).with_context(|| format!("cannot read {src}"))?;
    let remote_kind = match client.stat_file(project, name, &dest.path).await {
        Ok(s) => Some(s.kind),
        Err(e) if e.code() == Some("file_not_found") => None,
        Err(e) => return Err(e.into()),
    };
    let into_dir = remote_kind == Some(FileKind::Directory) || dest.path.ends_with('/');
    if meta.is_dir() {
        if !recursive {
            bail!(DIRECTORY_NEEDS_R);
        }
        if remote_kind.is_some_and(|k| k != FileKind::Directory) {
            bail!(
                "cannot copy directory {src} onto {}, which is not a directory",
                shown(&dest.path)
            );
        }
        let target = match base_name(src) {
            Some(n) if remote_kind.is_some() && !contents_only(src) => join_remote(&dest.path, n),
            _ => dest.path.clone(),
        };
        let (bar, progress) = progress_bar(None, src);
        let r = client
            .upload_dir(project, name, local, &target, progress)
            .await;
        finish(bar);
        let r = r?;
        return report_upload(&r, &shown(&r.path));
    }
    let target = match base_name(src) {
        Some(n) if into_dir => join_remote(&dest.path, n),
        _ => dest.path.clone(),
    };
    let (bar, progress) = progress_bar(Some(meta.len()), src);
    let r = client
        .upload_file(project, name, local, &target, progress)
        .await;
    finish(bar);
    let r = r?;
    report_upload(&r, &shown(&r.path))
}

/// Notes about an upload: the data volume it landed in, what was skipped.
fn report_upload(r: &UploadResult, shown: &str) -> Result<()> {
    if let Some(v) = &r.volume {
        eprintln!("note: {shown} is on data volume \"{v}\"; written into the volume");
    }
    if r.skipped > 0 {
        eprintln!(
            "warning: skipped {} entries that are not files, directories or links ({})",
            r.skipped,
            r.skipped_examples.join(", ")
        );
    }
    Ok(())
}

/// Box → local.
async fn get(
    client: &Client,
    b: ResolvedBox,
    src: &BoxPath,
    dest: &str,
    recursive: bool,
) -> Result<()> {
    let (project, name) = (&b.project, &b.name);
    let stat = client.stat_file(project, name, &src.path).await?;
    match stat.kind {
        FileKind::File => {
            if dest == "-" {
                let download = client.download(project, name, &src.path).await?;
                let mut out = tokio::io::stdout();
                download.write_to(&mut out, None).await?;
                out.flush().await.context("writing to stdout")?;
                return Ok(());
            }
            let local = local_target(dest, base_name(&src.path), false);
            let (bar, progress) = progress_bar(Some(stat.size), &src.path);
            let r = client
                .download_file(project, name, &src.path, &local, progress)
                .await;
            finish(bar);
            r?;
        }
        FileKind::Directory => {
            if !recursive {
                bail!(DIRECTORY_NEEDS_R);
            }
            if dest == "-" {
                bail!("a directory cannot be written to stdout");
            }
            let local = local_target(dest, base_name(&src.path), contents_only(&src.path));
            if local.exists() && !local.is_dir() {
                bail!(
                    "cannot copy directory {src} onto {}, which is not a directory",
                    local.display()
                );
            }
            let (bar, progress) = progress_bar(None, &src.path);
            let r = client
                .download_dir(project, name, &src.path, &local, progress)
                .await;
            finish(bar);
            let s = r?;
            if !s.skipped.is_empty() {
                eprintln!(
                    "warning: skipped {} entries that are not files, directories or links ({})",
                    s.skipped.len(),
                    s.skipped
                        .iter()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        _ => bail!("{src} is not a regular file or directory"),
    }
    Ok(())
}

/// Where a download lands: inside `dest` when it is an existing directory (or ends in `/`),
/// under the source's name, unless only the contents are copied.
fn local_target(dest: &str, name: Option<&str>, contents: bool) -> PathBuf {
    let d = Path::new(dest);
    match name {
        Some(n) if !contents && (d.is_dir() || dest.ends_with('/')) => d.join(n),
        _ => d.to_path_buf(),
    }
}

/// GitHub's published SSH host keys (docs.github.com, "GitHub's SSH key fingerprints").
pub const GITHUB_KNOWN_HOSTS: &str = "\
github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=
github.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=
";

/// A credential file found (or not) on this machine.
struct Found {
    path: PathBuf,
    contents: Vec<u8>,
}

/// Reads a credential: a path named by a flag must exist (an error naming it otherwise); a
/// default path that is missing is skipped with a notice on stderr.
fn read_credential(
    what: &str,
    flag: &str,
    explicit: Option<&Path>,
    default: Option<PathBuf>,
) -> Result<Option<Found>> {
    if let Some(path) = explicit {
        let contents = std::fs::read(path)
            .with_context(|| format!("cannot read {flag} {}", path.display()))?;
        return Ok(Some(Found {
            path: path.to_owned(),
            contents,
        }));
    }
    let Some(path) = default else {
        eprintln!("skipped {what}: no home directory");
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(contents) => Ok(Some(Found { path, contents })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped {what}: {} not found", path.display());
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The global git config: `GIT_CONFIG_GLOBAL`, `$XDG_CONFIG_HOME/git/config`,
/// `~/.config/git/config`, `~/.gitconfig` — the first that exists.
fn git_config_path(env: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = env("GIT_CONFIG_GLOBAL").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    if let Some(x) = env("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        candidates.push(Path::new(&x).join("git/config"));
    }
    if let Some(h) = home {
        candidates.push(h.join(".config/git/config"));
        candidates.push(h.join(".gitconfig"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// What `inject` puts in the box's tar, and the summary words for the last line.
#[derive(Default)]
struct Injection {
    entries: Vec<(String, u32, Vec<u8>)>,
    dirs: Vec<(String, u32)>,
}

impl Injection {
    fn file(&mut self, path: &str, mode: u32, contents: Vec<u8>) {
        self.entries.push((path.to_owned(), mode, contents));
    }

    /// One tar: directories first (`.ssh` must be 0700), then files with exact modes.
    fn tar(&self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (path, mode) in &self.dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(*mode);
            h.set_size(0);
            h.set_mtime(now);
            b.append_data(&mut h, path, std::io::empty())?;
        }
        for (path, mode, contents) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_size(contents.len() as u64);
            h.set_mtime(now);
            b.append_data(&mut h, path, contents.as_slice())?;
        }
        Ok(b.into_inner()?)
    }
}

/// The list in `OK: injected <list> into …`: `codex auth/config` (or `codex auth`, `codex
/// config` when only one was found), `ssh keypair` (or `ssh key` without a `.pub`), `git
/// config`, in that order, joined by `, `.
fn injected_list(
    codex_auth: bool,
    codex_config: bool,
    ssh: Option<bool>,
    git: bool,
) -> Vec<&'static str> {
    let mut parts = Vec::new();
    match (codex_auth, codex_config) {
        (true, true) => parts.push("codex auth/config"),
        (true, false) => parts.push("codex auth"),
        (false, true) => parts.push("codex config"),
        (false, false) => {}
    }
    match ssh {
        Some(true) => parts.push("ssh keypair"),
        Some(false) => parts.push("ssh key"),
        None => {}
    }
    if git {
        parts.push("git config");
    }
    parts
}

/// `zomg inject`.
pub async fn inject(ctx: &Context, args: InjectArgs) -> Result<()> {
    refuse_json(args.output, "inject")?;
    let b = ctx.resolve(&args.target, &args.project)?;
    let home = process_env("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let in_home = |rel: &str| home.as_ref().map(|h| h.join(rel));

    let codex_auth = read_credential(
        "codex auth",
        "--codex-auth",
        args.codex_auth.as_deref(),
        in_home(".codex/auth.json"),
    )?;
    let codex_config = read_credential(
        "codex config",
        "--codex-toml",
        args.codex_toml.as_deref(),
        in_home(".codex/config.toml"),
    )?;
    let ssh_default = home.as_ref().and_then(|h| {
        ["id_ed25519", "id_rsa", "id_ecdsa"]
            .iter()
            .map(|k| h.join(".ssh").join(k))
            .find(|p| p.is_file())
            .or_else(|| Some(h.join(".ssh/id_ed25519")))
    });
    let ssh_key = read_credential("ssh key", "--ssh-key", args.ssh_key.as_deref(), ssh_default)?;
    let git = match git_config_path(process_env, home.as_deref()) {
        Some(path) => Some(Found {
            contents: std::fs::read(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path,
        }),
        None => {
            eprintln!(
                "skipped git config: none found (GIT_CONFIG_GLOBAL, $XDG_CONFIG_HOME/git/config, ~/.config/git/config, ~/.gitconfig)"
            );
            None
        }
    };

    let client = ctx.client()?;
    let mut inj = Injection::default();
    if codex_auth.is_some() || codex_config.is_some() {
        inj.dirs.push((".codex".into(), 0o700));
    }
    if let Some(f) = &codex_auth {
        inj.file(".codex/auth.json", 0o600, f.contents.clone());
    }
    if let Some(f) = &codex_config {
        inj.file(".codex/codex.toml", 0o600, f.contents.clone());
    }
    let mut ssh_pair = None;
    if let Some(f) = &ssh_key {
        let key_name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "id_key".to_owned());
        inj.dirs.push((".ssh".into(), 0o700));
        inj.file(&format!(".ssh/{key_name}"), 0o600, f.contents.clone());
        let pub_path = PathBuf::from(format!("{}.pub", f.path.display()));
        let has_pub = match std::fs::read(&pub_path) {
            Ok(p) => {
                inj.file(&format!(".ssh/{key_name}.pub"), 0o644, p);
                true
            }
            Err(_) => {
                eprintln!("skipped ssh public key: {} not found", pub_path.display());
                false
            }
        };
        inj.file(".ssh/known_hosts", 0o644, known_hosts(&client, &b).await?);
        ssh_pair = Some(has_pub);
    }
    if let Some(f) = &git {
        inj.file(".gitconfig", 0o644, f.contents.clone());
    }
    let list = injected_list(
        codex_auth.is_some(),
        codex_config.is_some(),
        ssh_pair,
        git.is_some(),
    );
    if list.is_empty() {
        bail!("nothing to inject: no codex auth/config, ssh key or git config found");
    }
    client
        .upload_tar(&b.project, &b.name, "/root", inj.tar()?, None)
        .await?;
    if ssh_pair.is_some() {
        check_github_ssh(&client, &b).await;
    }
    println!("OK: injected {} into {b}", list.join(", "));
    Ok(())
}

/// The box's `known_hosts` with GitHub's keys: existing lines for other hosts are kept,
/// `github.com` lines are replaced by the published ones.
async fn known_hosts(client: &Client, b: &ResolvedBox) -> Result<Vec<u8>> {
    let mut out = String::new();
    match client
        .download(&b.project, &b.name, "/root/.ssh/known_hosts")
        .await
    {
        Ok(d) => {
            let mut buf = Vec::new();
            d.write_to(&mut buf, None).await?;
            for line in String::from_utf8_lossy(&buf).lines() {
                let host = line.split_whitespace().next().unwrap_or("");
                if !host.split(',').any(|h| h == "github.com") {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        Err(e) if e.code() == Some("file_not_found") => {}
        Err(e) => return Err(e.into()),
    }
    out.push_str(GITHUB_KNOWN_HOSTS);
    Ok(out.into_bytes())
}

/// Runs `ssh -T git@github.com` in the box; any failure is a warning, never an error (a
/// box may have no network or no ssh client).
async fn check_github_ssh(client: &Client, b: &ResolvedBox) {
    let request = ExecRequest {
        command: [
            "ssh",
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "git@github.com",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let outcome = client.exec_run(&b.project, &b.name, &request).await;
    match outcome {
        // GitHub answers a successful login with exit 1 and this greeting.
        Ok(r)
            if r.stderr.contains("successfully authenticated")
                || r.stdout.contains("successfully authenticated") =>
        {
            eprintln!("ssh: authenticated to github.com");
        }
        Ok(r) => {
            let reason = r
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("exit code {}", r.exit_code.unwrap_or(-1)));
            eprintln!("warning: ssh -T git@github.com failed in the box: {reason}");
        }
        Err(e) => eprintln!("warning: ssh -T git@github.com could not run in the box: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_lists_read_like_the_spec() {
        assert_eq!(
            injected_list(true, true, Some(true), true).join(", "),
            "codex auth/config, ssh keypair, git config"
        );
        assert_eq!(
            injected_list(true, true, Some(true), false).join(", "),
            "codex auth/config, ssh keypair"
        );
        assert_eq!(
            injected_list(false, true, Some(false), false).join(", "),
            "codex config, ssh key"
        );
        assert_eq!(
            injected_list(true, false, None, true).join(", "),
            "codex auth, git config"
        );
        assert!(injected_list(false, false, None, false).is_empty());
    }

    #[test]
    fn git_config_is_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let env = |k: &str| match k {
            "GIT_CONFIG_GLOBAL" => Some(home.join("global").display().to_string()),
            "XDG_CONFIG_HOME" => Some(home.join("xdg").display().to_string()),
            _ => None,
        };
        assert_eq!(git_config_path(env, Some(home)), None);
        std::fs::write(home.join(".gitconfig"), "").unwrap();
        assert_eq!(
            git_config_path(env, Some(home)),
            Some(home.join(".gitconfig"))
        );
        std::fs::create_dir_all(home.join(".config/git")).unwrap();
        std::fs::write(home.join(".config/git/config"), "").unwrap();
        assert_eq!(
            git_config_path(env, Some(home)),
            Some(home.join(".config/git/config"))
        );
        std::fs::create_dir_all(home.join("xdg/git")).unwrap();
        std::fs::write(home.join("xdg/git/config"), "").unwrap();
        assert_eq!(
            git_config_path(env, Some(home)),
            Some(home.join("xdg/git/config"))
        );
        std::fs::write(home.join("global"), "").unwrap();
        assert_eq!(git_config_path(env, Some(home)), Some(home.join("global")));
    }

    #[test]
    fn names_and_targets_follow_docker_cp() {
        assert_eq!(base_name("/a/b/"), Some("b"));
        assert_eq!(base_name("/"), None);
        assert_eq!(base_name("dir/."), None);
        assert!(contents_only("dir/."));
        assert_eq!(join_remote("/dst/", "f"), "/dst/f");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        assert_eq!(local_target(&d, Some("f"), false), dir.path().join("f"));
        assert_eq!(local_target(&d, Some("f"), true), dir.path());
        assert_eq!(local_target("new", Some("f"), false), PathBuf::from("new"));
        assert_eq!(
            local_target("new/", Some("f"), false),
            PathBuf::from("new/f")
        );
    }

    #[test]
    fn github_keys_are_the_three_published_ones() {
        let lines: Vec<_> = GITHUB_KNOWN_HOSTS.lines().collect();
        assert_eq!(lines.len(), 3);
        for (line, kind) in lines
            .iter()
            .zip(["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"])
        {
            assert_eq!(line.split(' ').nth(1), Some(kind));
            assert!(line.starts_with("github.com "));
        }
    }
}
