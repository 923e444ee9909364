//! The setup config file, `.zomg/config.yaml` (SPEC §2): where it is, and reading and
//! editing it without losing what we do not understand.
//!
//! Reads go through `serde_yaml`. Writes go through a small line editor that touches only the
//! one top-level `key: value` being set or unset, so comments, blank lines, key order, unknown
//! keys and nested blocks survive byte for byte. Every edit is checked by parsing the result
//! again: if the file is shaped in a way the editor cannot handle (a flow mapping at the top,
//! say), the edit is refused instead of corrupting the file.
//!
//! Keys with a meaning: `profile`, `env`, `zomg_domain`, `api_url`, `ssh_host`, `token`,
//! `project` ([`KNOWN_KEYS`]); any other key is allowed and kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::env::var;
use crate::error::{Error, Result};
use crate::names::ProjectName;
use crate::target::{normalize_profile, profile_var};

/// The keys the SDK gives a meaning to.
pub const KNOWN_KEYS: &[&str] = &[
    "profile",
    "env",
    "zomg_domain",
    "api_url",
    "ssh_host",
    "token",
    "project",
];

/// The setup config file: its location, its text, and the parsed top-level mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupConfig {
    path: PathBuf,
    text: String,
    values: Mapping,
}

impl SetupConfig {
    /// Where the setup config is: `$ZOMG_SETUP_DIR/config.yaml` if `ZOMG_SETUP_DIR` is set,
    /// else the nearest `.zomg/config.yaml` in `cwd` or a parent, else
    /// `<user_config_dir>/zomg/config.yaml`. `None` only when no user config dir is known.
    ///
    /// Pure apart from checking which files exist; see [`SetupConfig::default_path`] for the
    /// variant that asks the OS for the user config dir.
    pub fn locate(
        env: impl Fn(&str) -> Option<String>,
        cwd: &Path,
        user_config_dir: Option<&Path>,
    ) -> Option<PathBuf> {
        if let Some(dir) = var(&env, "ZOMG_SETUP_DIR") {
            return Some(PathBuf::from(dir).join("config.yaml"));
        }
        for dir in cwd.ancestors() {
            let candidate = dir.join(".zomg").join("config.yaml");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
        user_config_dir.map(|d| d.join("zomg").join("config.yaml"))
    }

    /// [`SetupConfig::locate`] with the OS user config dir (`dirs::config_dir()`).
    pub fn default_path(env: impl Fn(&str) -> Option<String>, cwd: &Path) -> Option<PathBuf> {
        Self::locate(env, cwd, dirs::config_dir().as_deref())
    }

    /// Locates and loads the setup config; `None` only when no location is known at all.
    /// A file that does not exist yet loads as empty.
    pub fn discover(env: impl Fn(&str) -> Option<String>, cwd: &Path) -> Result<Option<Self>> {
        Self::default_path(env, cwd).map(Self::load).transpose()
    }

    /// Reads the file at `path`; a missing file is an empty config that [`save`] will create.
    ///
    /// [`save`]: SetupConfig::save
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Self::from_text(path, text)
    }

    /// Parses `text` as the content of the file at `path` (nothing is read or written).
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let text = text.into();
        let values = parse_mapping(&text)
            .map_err(|e| Error::Config(format!("invalid setup config {}: {e}", path.display())))?;
        Ok(Self { path, text, values })
    }

    /// The file's path (it may not exist yet).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text as it is, or will be once saved.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A top-level value as a string: scalars as written, `null` as `None`, nested values as
    /// compact JSON.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).and_then(render)
    }

    /// Every top-level key with its value (see [`SetupConfig::get`]; `null` shows as an empty
    /// string), in file order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (render(k).unwrap_or_default(), render(v).unwrap_or_default()))
            .collect()
    }

    /// Sets a top-level key to a string value, in memory; [`SetupConfig::save`] writes it.
    ///
    /// Known keys are checked (`api_url` must be an http(s) URL, `project` a project name,
    /// ...). The line holding the key is replaced in place, keeping a trailing `# comment`;
    /// a new key is appended at the end.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        check_value(key, value)?;
        let mut lines = Lines::new(&self.text);
        let rendered = format!("{key}: {}", yaml_scalar(value));
        match lines.find_block(key) {
            Some((start, end)) => {
                let comment = if start == end {
                    inline_comment(&lines.lines[start])
                } else {
                    None
                };
                let cr = lines.lines[start].ends_with('\r');
                let mut line = rendered;
                if let Some(c) = comment {
                    line = format!("{line} {c}");
                }
                if cr {
                    line.push('\r');
                }
                lines.lines.splice(start..=end, [line]);
            }
            None => lines.push(rendered),
        }
        let mut want = self.values.clone();
        want.insert(
            Value::String(key.to_owned()),
            Value::String(value.to_owned()),
        );
        self.commit(lines.join(), want, key)
    }

    /// Removes a top-level key (with its nested block, if any), in memory. Returns whether it
    /// was there.
    pub fn unset(&mut self, key: &str) -> Result<bool> {
        let mut lines = Lines::new(&self.text);
        let Some((start, end)) = lines.find_block(key) else {
            if self.values.contains_key(key) {
                return Err(self.cannot_edit(key));
            }
            return Ok(false);
        };
        lines.lines.drain(start..=end);
        let mut want = self.values.clone();
        want.shift_remove(key);
        self.commit(lines.join(), want, key)?;
        Ok(true)
    }

    /// Accepts an edited text only if it parses to exactly the mapping we meant to write.
    fn commit(&mut self, text: String, want: Mapping, key: &str) -> Result<()> {
        match parse_mapping(&text) {
            Ok(got) if got == want => {
                self.text = text;
                self.values = got;
                Ok(())
            }
            _ => Err(self.cannot_edit(key)),
        }
    }

    fn cannot_edit(&self, key: &str) -> Error {
        Error::Config(format!(
            "cannot edit {key:?} in {} without changing other settings (the file is not a plain \
             list of top-level `key: value` lines); edit it by hand",
            self.path.display()
        ))
    }

    /// Writes the file atomically (temp file + rename), creating its directory. A new file
    /// gets mode 0600 because it may hold a token; an existing file keeps its mode, and a
    /// symlinked file is written through the link.
    pub fn save(&self) -> Result<()> {
        let path = match std::fs::canonicalize(&self.path) {
            Ok(p) => p,
            Err(_) => self.path.clone(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.yaml".to_owned());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            if let Ok(meta) = std::fs::metadata(&path) {
                f.set_permissions(meta.permissions())?;
            }
            f.write_all(self.text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), e)
        })
    }

    /// A known string key, trimmed; `None` when absent or empty.
    fn key(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The `profile` key: the default profile when neither `--profile` nor `ZOMG_PROFILE`
    /// selects one.
    pub fn profile(&self) -> Option<String> {
        self.key("profile")
    }

    /// The `env` key: another name this config answers to, like `profile`.
    pub fn env_name(&self) -> Option<String> {
        self.key("env")
    }

    /// The `zomg_domain` key: derives `https://api.<domain>` and `ssh.<domain>`.
    pub fn zomg_domain(&self) -> Option<String> {
        self.key("zomg_domain")
            .map(|d| d.trim_end_matches('.').to_owned())
    }

    /// The `api_url` key.
    pub fn api_url(&self) -> Option<String> {
        self.key("api_url")
    }

    /// The `ssh_host` key.
    pub fn ssh_host(&self) -> Option<String> {
        self.key("ssh_host")
    }

    /// The `token` key.
    pub fn token(&self) -> Option<String> {
        self.key("token")
    }

    /// The `project` key.
    pub fn project(&self) -> Option<String> {
        self.key("project")
    }

    /// Whether this config belongs to `profile`: it equals the `profile` or `env` key, compared
    /// the way profile variables are named (`Staging` and `staging` are the same profile).
    pub fn matches_profile(&self, profile: &str) -> bool {
        let want = normalize_profile(profile);
        [self.profile(), self.env_name()]
            .into_iter()
            .flatten()
            .any(|p| normalize_profile(&p) == want)
    }

    /// Whether this config is tied to a profile at all (has a `profile` or `env` key).
    pub fn is_scoped(&self) -> bool {
        self.profile().is_some() || self.env_name().is_some()
    }

    /// The API URL this config supplies: `api_url`, else `https://api.<zomg_domain>`.
    pub fn derived_api_url(&self) -> Option<String> {
        self.api_url()
            .or_else(|| self.zomg_domain().map(|d| format!("https://api.{d}")))
    }

    /// The SSH host this config supplies: `ssh_host`, else `ssh.<zomg_domain>`.
    pub fn derived_ssh_host(&self) -> Option<String> {
        self.ssh_host()
            .or_else(|| self.zomg_domain().map(|d| format!("ssh.{d}")))
    }
}

fn parse_mapping(text: &str) -> std::result::Result<Mapping, String> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err("the top level must be a mapping of keys to values".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn render(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        other => Some(
            serde_json::to_string(other)
                .ok()
                .or_else(|| serde_yaml::to_string(other).ok())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    }
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid config key {key:?}: may contain only letters, digits, '_' and '-'"
        )))
    }
}

/// Checks the value of a known key; unknown keys take any string.
fn check_value(key: &str, value: &str) -> Result<()> {
    let bad = |rule: &str| Err(Error::Invalid(format!("invalid {key} {value:?}: {rule}")));
    let word = |extra: &str| {
        !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    match key {
        "profile" | "env" if !word("_.-") => {
            bad("may contain only letters, digits, '_', '.' and '-'")
        }
        "zomg_domain" if !word(".-") || value.starts_with(['.', '-']) => {
            bad("expected a domain name like example.com")
        }
        "ssh_host" if !word(".-:[]_") => bad("expected a host name, optionally with :port"),
        "token"
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            bad("must be non-empty, without spaces")
        }
        "api_url" => crate::target::parse_url(value, "api_url").map(drop),
        "project" => ProjectName::new(value)
            .map(drop)
            .map_err(|e| Error::Invalid(format!("invalid project: {e}"))),
        _ => Ok(()),
    }
}

/// Plain scalars that YAML 1.1 readers (other tools than ours) would take for a boolean or a
/// number, though YAML 1.2 reads them as strings: `yes`, `off`, `0123`, `1_000`, `0x1f`.
fn ambiguous_in_yaml_1_1(value: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off"];
    if WORDS.contains(&value.to_ascii_lowercase().as_str()) {
        return true;
    }
    value.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        && value
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "._:+-xXoObB".contains(c))
}

/// `value` as a YAML scalar: plain when that reads back as the same string, else
/// double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(value: &str) -> String {
    let plain_ok = !value.is_empty()
        && !ambiguous_in_yaml_1_1(value)
        && !value.contains('\n')
        && !value.contains('\r')
        && matches!(
            serde_yaml::from_str::<Value>(&format!("k: {value}")),
            Ok(Value::Mapping(m)) if m.get("k") == Some(&Value::String(value.to_owned())) && m.len() == 1
        );
    if plain_ok {
        value.to_owned()
    } else {
        serde_json::to_string(value).expect("a string always serializes")
    }
}

/// The `# comment` ending a one-line `key: value`, if any. Only plain and simply quoted
/// values are understood; anything else keeps no comment, which is safe.
fn inline_comment(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    let (_, value_start) = top_level_key(line)?;
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line[value_start..].char_indices() {
        match (quote, c) {
            (None, '#') if prev_space => {
                return Some(line[value_start + i..].trim_end().to_owned());
            }
            (None, '"' | '\'') if prev_space => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    None
}

/// The key of a top-level `key: ...` line and where its value starts.
fn top_level_key(line: &str) -> Option<(String, usize)> {
    let line = line.trim_end_matches('\r');
    let first = line.chars().next()?;
    if first.is_whitespace() || matches!(first, '#' | '-' | '.' | '{' | '[' | '?' | '%') {
        return None;
    }
    let (key, rest_start) = if first == '"' || first == '\'' {
        let close = line[1..].find(first)? + 1;
        (line[1..close].to_owned(), close + 1)
    } else {
        let mut end = None;
        for (i, c) in line.char_indices() {
            if c == ':' {
                let next = line[i + 1..].chars().next();
                if next.is_none_or(|n| n == ' ' || n == '\t') {
                    end = Some(i);
                    break;
                }
            }
        }
        let end = end?;
        (line[..end].trim_end().to_owned(), end)
    };
    let rest = &line[rest_start..];
    let after_colon = rest.strip_prefix(':')?;
    if !(after_colon.is_empty() || after_colon.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, rest_start + 1))
}

/// The file as lines, for the editor.
struct Lines {
    lines: Vec<String>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        // A trailing newline yields one empty last element; `join` puts it back.
        if lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        Self { lines }
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    fn join(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    /// The first and last line of `key`'s entry: its line plus the indented (or `- item`)
    /// lines that continue it, including blank and comment lines between them.
    fn find_block(&self, key: &str) -> Option<(usize, usize)> {
        let start = self
            .lines
            .iter()
            .position(|l| top_level_key(l).is_some_and(|(k, _)| k == key))?;
        let mut end = start;
        for (j, line) in self.lines.iter().enumerate().skip(start + 1) {
            let t = line.trim_end_matches('\r');
            if t.trim().is_empty() || t.starts_with('#') {
                continue;
            }
            let continues =
                t.starts_with([' ', '\t']) || (t.starts_with('-') && !t.starts_with("---"));
            if !continues {
                break;
            }
            end = j;
        }
        Some((start, end))
    }
}

/// A profile known from the environment or the setup config (`zomg config profiles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    /// The profile name: as the setup config spells it, else the `<NAME>` of
    /// `ZOMG_PROFILE_<NAME>_URL` in lowercase.
    pub name: String,
    /// The URL the profile resolves to, if any (env `_URL`, else the config's).
    pub url: Option<String>,
    /// Found as `ZOMG_PROFILE_<NAME>_URL`.
    pub from_env: bool,
    /// Named by the setup config's `profile` or `env` key.
    pub from_config: bool,
    /// The currently selected profile.
    pub selected: bool,
}

/// Lists the profiles known: every `ZOMG_PROFILE_<NAME>_URL` in `vars`, the setup config's
/// `profile` and `env` keys, and the `selected` profile even if nothing defines it (so that a
/// selection without a URL is visible). Profiles are merged by their variable name and
/// sorted by name.
pub fn list_profiles(
    vars: impl IntoIterator<Item = (String, String)>,
    config: Option<&SetupConfig>,
    selected: Option<&str>,
) -> Vec<ProfileInfo> {
    let vars: BTreeMap<String, String> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let mut found: BTreeMap<String, ProfileInfo> = BTreeMap::new();
    // Spelling preference for a merged profile: the config's, then the selection's, then the
    // lowercased variable name (which cannot tell `my-dev` from `my_dev`).
    let mut spelled_by: BTreeMap<String, u8> = BTreeMap::new();
    let mut add = |name: &str, rank: u8, from_env: bool, from_config: bool| {
        let key = normalize_profile(name);
        let entry = found.entry(key.clone()).or_insert_with(|| ProfileInfo {
            name: name.to_owned(),
            url: None,
            from_env: false,
            from_config: false,
            selected: false,
        });
        let best = spelled_by.entry(key).or_insert(rank);
        if rank > *best {
            *best = rank;
            entry.name = name.to_owned();
        }
        entry.from_env |= from_env;
        entry.from_config |= from_config;
    };
    for key in vars.keys() {
        if let Some(name) = key
            .strip_prefix("ZOMG_PROFILE_")
            .and_then(|k| k.strip_suffix("_URL"))
            .filter(|n| !n.is_empty())
        {
            add(&name.to_ascii_lowercase(), 0, true, false);
        }
    }
    if let Some(s) = selected.filter(|s| !s.is_empty()) {
        add(s, 1, false, false);
    }
    if let Some(c) = config {
        for name in [c.profile(), c.env_name()].into_iter().flatten() {
            add(&name, 2, false, true);
        }
    }
    let selected = selected.map(normalize_profile);
    let mut out: Vec<ProfileInfo> = found
        .into_iter()
        .map(|(norm, mut p)| {
            p.url = vars.get(&profile_var(&p.name, "URL")).cloned().or_else(|| {
                config
                    .filter(|c| c.matches_profile(&p.name))
                    .and_then(SetupConfig::derived_api_url)
            });
            p.selected = selected.as_deref() == Some(norm.as_str());
            p
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::map_env;

    const SAMPLE: &str = "\
# zomg setup, written by hand
profile: prod   # the default

nested:
  keep: [1, 2]
  # inner comment
  deeper:
    x: y
list:
- a
- b
# a top-level comment after the list
zomg_domain: example.com
unknown_key: 'kept'
";

    fn cfg(text: &str) -> SetupConfig {
        SetupConfig::from_text("/x/config.yaml", text).unwrap()
    }

    #[test]
    fn reads_known_and_unknown_keys() {
        let c = cfg(SAMPLE);
        assert_eq!(c.profile().as_deref(), Some("prod"));
        assert_eq!(c.zomg_domain().as_deref(), Some("example.com"));
        assert_eq!(c.get("unknown_key").as_deref(), Some("kept"));
        assert_eq!(
            c.get("nested").as_deref(),
            Some(r#"{"keep":[1,2],"deeper":{"x":"y"}}"#)
        );
        assert_eq!(c.get("missing"), None);
        let keys: Vec<String> = c.list().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["profile", "nested", "list", "zomg_domain", "unknown_key"]
        );
        assert_eq!(
            c.derived_api_url().as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(c.derived_ssh_host().as_deref(), Some("ssh.example.com"));
        assert!(c.matches_profile("prod"));
        assert!(c.matches_profile("PROD"));
        assert!(!c.matches_profile("staging"));
    }

    #[test]
    fn set_replaces_one_line_and_keeps_everything_else() {
        let mut c = cfg(SAMPLE);
        c.set("profile", "staging").unwrap();
        c.set("token", "s3cret").unwrap();
        c.set("zomg_domain", "zomg.dev").unwrap();
        let want = SAMPLE
            .replace(
                "profile: prod   # the default",
                "profile: staging # the default",
            )
            .replace("zomg_domain: example.com", "zomg_domain: zomg.dev")
            + "token: s3cret\n";
        assert_eq!(c.text(), want);
        assert_eq!(c.token().as_deref(), Some("s3cret"));
    }

    #[test]
    fn set_replaces_a_nested_block_and_unset_removes_it() {
        let mut c = cfg(SAMPLE);
        c.set("nested", "flat").unwrap();
        assert!(c.text().contains("\nnested: flat\nlist:\n"), "{}", c.text());
        assert!(!c.text().contains("deeper"));
        assert!(c.unset("list").unwrap());
        assert!(
            c.text()
                .contains("nested: flat\n# a top-level comment after the list\nzomg_domain"),
            "{}",
            c.text()
        );
        assert!(!c.unset("list").unwrap());
        assert!(c.unset("unknown_key").unwrap());
        assert!(c.text().starts_with("# zomg setup, written by hand\n"));
        assert_eq!(c.get("unknown_key"), None);
    }

    #[test]
    fn quotes_values_only_when_yaml_needs_it() {
        let cases = [
            ("plain", "plain"),
            ("a b", "a b"),
            ("true", "\"true\""),
            ("no", "\"no\""),
            ("Off", "\"Off\""),
            ("1_000", "\"1_000\""),
            ("0x1f", "\"0x1f\""),
            ("1.2.3", "\"1.2.3\""),
            ("v1.2", "v1.2"),
            ("abc123", "abc123"),
            ("deadbeef", "deadbeef"),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("0123", "\"0123\""),
            ("12", "\"12\""),
            ("1.5", "\"1.5\""),
            ("a: b", "\"a: b\""),
            ("a #b", "\"a #b\""),
            ("#x", "\"#x\""),
            ("-", "\"-\""),
            ("- x", "\"- x\""),
            ("*ref", "\"*ref\""),
            ("'q'", "\"'q'\""),
            ("\"q\"", "\"\\\"q\\\"\""),
            ("", "\"\""),
            (" lead", "\" lead\""),
            ("two\nlines", "\"two\\nlines\""),
            ("[x]", "\"[x]\""),
            ("{x}", "\"{x}\""),
            ("%x", "\"%x\""),
            ("@x", "\"@x\""),
        ];
        for (value, want) in cases {
            assert_eq!(yaml_scalar(value), want, "{value:?}");
            let mut c = cfg("");
            c.set("other", value).unwrap();
            assert_eq!(c.get("other").as_deref(), Some(value), "{value:?}");
        }
    }

    #[test]
    fn validates_known_keys() {
        let mut c = cfg("");
        let bad = [
            ("api_url", "localhost:7070", "invalid api_url"),
            ("api_url", "ftp://x", "invalid api_url"),
            (
                "project",
                "a--b",
                "invalid project: invalid project name \"a--b\"",
            ),
            ("zomg_domain", "https://x.com", "invalid zomg_domain"),
            ("token", "a b", "invalid token"),
            ("profile", "", "invalid profile"),
            ("a.b", "x", "invalid config key \"a.b\""),
            ("", "x", "invalid config key"),
        ];
        for (k, v, want) in bad {
            let e = c.set(k, v).unwrap_err().to_string();
            assert!(e.contains(want), "{k}={v}: {e}");
        }
        assert_eq!(c.text(), "");
        c.set("api_url", "https://api.example.com").unwrap();
        c.set("project", "web-team").unwrap();
        c.set("ssh_host", "ssh.example.com:2222").unwrap();
        assert_eq!(
            c.text(),
            "api_url: https://api.example.com\nproject: web-team\nssh_host: ssh.example.com:2222\n"
        );
    }

    #[test]
    fn refuses_edits_it_cannot_make_safely() {
        let mut c = cfg("{profile: prod, token: x}\n");
        assert_eq!(c.profile().as_deref(), Some("prod"));
        let e = c.set("token", "y").unwrap_err().to_string();
        assert!(e.contains("edit it by hand"), "{e}");
        assert!(c.unset("token").is_err());
        assert_eq!(c.text(), "{profile: prod, token: x}\n");
    }

    #[test]
    fn handles_crlf_quoted_keys_and_missing_newline() {
        let mut c = cfg("\"profile\": a\r\ntoken: t");
        c.set("profile", "b").unwrap();
        assert_eq!(c.text(), "profile: b\r\ntoken: t\n");
        c.set("token", "u").unwrap();
        assert_eq!(c.text(), "profile: b\r\ntoken: u\n");
    }

    #[test]
    fn rejects_invalid_files() {
        for text in ["- a\n- b\n", "a: [\n", "a: 1\na: 2\n"] {
            let e = SetupConfig::from_text("/x/config.yaml", text).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid setup config /x/config.yaml: "),
                "{e}"
            );
        }
    }

    #[test]
    fn locate_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let deep = root.join("repo/sub/dir");
        std::fs::create_dir_all(&deep).unwrap();
        let user = root.join("user-config");
        let none = map_env(&[]);

        assert_eq!(
            SetupConfig::locate(&none, &deep, Some(&user)),
            Some(user.join("zomg/config.yaml"))
        );
        assert_eq!(SetupConfig::locate(&none, &deep, None), None);

        // A `.zomg` directory without config.yaml does not count.
        std::fs::create_dir_all(root.join("repo/sub/.zomg")).unwrap();
        std::fs::create_dir_all(root.join("repo/.zomg")).unwrap();
        std::fs::write(root.join("repo/.zomg/config.yaml"), "profile: a\n").unwrap();
        assert_eq!(
            SetupConfig::locate(&none, &deep, Some(&user)),
            Some(root.join("repo/.zomg/config.yaml"))
        );
        std::fs::write(root.join("repo/sub/.zomg/config.yaml"), "").unwrap();
        assert_eq!(
            SetupConfig::locate(&none, &deep, Some(&user)),
            Some(root.join("repo/sub/.zomg/config.yaml"))
        );

        let setup_dir = root.join("elsewhere");
        let env = map_env(&[("ZOMG_SETUP_DIR", setup_dir.to_str().unwrap())]);
        assert_eq!(
            SetupConfig::locate(&env, &deep, Some(&user)),
            Some(setup_dir.join("config.yaml"))
        );
    }

    #[test]
    fn load_save_round_trip_preserves_comments_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new/.zomg/config.yaml");
        let mut c = SetupConfig::load(&path).unwrap();
        assert_eq!(c.list(), vec![]);
        c.set("token", "abc").unwrap();
        c.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        std::fs::write(&path, SAMPLE).unwrap();
        let mut c = SetupConfig::load(&path).unwrap();
        c.unset("zomg_domain").unwrap();
        c.set("api_url", "http://127.0.0.1:7070").unwrap();
        c.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            SAMPLE.replace("zomg_domain: example.com\n", "") + "api_url: http://127.0.0.1:7070\n"
        );
        assert_eq!(SetupConfig::load(&path).unwrap(), c);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("config.yaml")]);
    }

    #[cfg(unix)]
    #[test]
    fn save_writes_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.yaml");
        std::fs::write(&real, "# mine\n").unwrap();
        let link = tmp.path().join("config.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut c = SetupConfig::load(&link).unwrap();
        c.set("profile", "p").unwrap();
        c.save().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "# mine\nprofile: p\n"
        );
    }

    #[test]
    fn profiles_merge_env_config_and_selection() {
        let c = cfg("profile: prod\nzomg_domain: example.com\n");
        let vars = [
            ("ZOMG_PROFILE_STAGING_URL", "https://staging"),
            ("ZOMG_PROFILE_STAGING_TOKEN", "t"),
            ("ZOMG_PROFILE_PROD_URL", "https://prod-override"),
            ("ZOMG_PROFILE_MY_DEV_URL", "http://dev"),
            ("ZOMG_PROFILE__URL", "ignored"),
            ("ZOMG_PROFILE_EMPTY_URL", ""),
            ("ZOMG_URL", "ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let got = list_profiles(vars.clone(), Some(&c), Some("ghost"));
        let summary: Vec<(&str, Option<&str>, bool, bool, bool)> = got
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.url.as_deref(),
                    p.from_env,
                    p.from_config,
                    p.selected,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ghost", None, false, false, true),
                ("my_dev", Some("http://dev"), true, false, false),
                ("prod", Some("https://prod-override"), true, true, false),
                ("staging", Some("https://staging"), true, false, false),
            ]
        );
        let dev = [(
            "ZOMG_PROFILE_MY_DEV_URL".to_owned(),
            "http://dev".to_owned(),
        )];
        let got = list_profiles(dev, None, Some("my-dev"));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].selected), ("my-dev", true));
        let got = list_profiles(Vec::new(), Some(&c), Some("PROD"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "prod");
        assert_eq!(got[0].url.as_deref(), Some("https://api.example.com"));
        assert!(got[0].selected);
        assert!(list_profiles(Vec::new(), None, None).is_empty());
    }
}
