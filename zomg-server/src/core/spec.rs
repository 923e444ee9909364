//! What a box looks like to the runtime: the [`BoxSpec`] built from its record, and the
//! variables injected into it (SPEC §9).

use std::collections::BTreeMap;

use crate::runtime::{BindMount, BoxSpec, Resources};
use crate::storage::Subvol;
use crate::store::BoxRecord;

use super::BoxService;

impl BoxService {
    /// The variables the server injects into a box (SPEC §9).
    pub(super) fn injected_env(&self, b: &BoxRecord) -> BTreeMap<String, String> {
        let s = self.settings();
        let mut env = BTreeMap::new();
        env.insert("ZOMG_PROJECT".to_owned(), b.project.to_string());
        env.insert("BOX_NAME".to_owned(), b.name.to_string());
        env.insert("ZOMG_API_URL".to_owned(), s.api_url.clone());
        if let Some(host) = url_host(&s.api_url) {
            env.insert("ZOMG_API_HOST".to_owned(), host);
        }
        if let Some(ip) = &s.api_ip {
            env.insert("ZOMG_API_IP".to_owned(), ip.clone());
        }
        if let Some(ip) = &s.node_ip {
            env.insert("ZOMG_NODE_IP".to_owned(), ip.clone());
        }
        env.insert("TERM".to_owned(), "xterm-256color".to_owned());
        if s.insecure {
            env.insert("ZOMG_INSECURE".to_owned(), "1".to_owned());
        }
        env
    }

    /// The runtime spec of a box from its record.
    pub(super) fn box_spec(&self, b: &BoxRecord) -> BoxSpec {
        let injected = self.injected_env(b);
        // The box's own environment first, injected variables last so they always win
        // (create rejects reserved names, but records from older servers might carry them).
        let mut env = b.environment.clone();
        env.extend(injected.clone());
        let storage = &self.inner.storage;
        let mut mounts: Vec<BindMount> = b
            .data_mounts
            .iter()
            .map(|m| BindMount {
                source: storage.path(&Subvol::volume(&m.volume_id)),
                destination: m.path.clone(),
                read_only: m.read_only,
            })
            .collect();
        // Mounts apply in order: a parent path sorts before the paths under it, so a volume
        // at /data/cache is mounted onto the volume at /data rather than hidden by it.
        mounts.sort_by(|a, b| a.destination.cmp(&b.destination));
        BoxSpec {
            id: b.id.clone(),
            hostname: format!("{}.{}", b.name, b.project),
            rootfs: storage.path(&Subvol::root(&b.id)),
            boxes_env_file: boxes_env_file(&injected, &b.environment),
            env,
            resources: Resources {
                millicpus: b.millicpus,
                memory_mb: b.ram_mb,
                pids: self.settings().pids_limit,
            },
            mounts,
        }
    }
}

/// The host part of a URL, without scheme, port or path.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// `/etc/boxes-env`: `export K='v'` lines, injected variables first, then the box's own.
pub(super) fn boxes_env_file(
    injected: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> String {
    let mut out = String::from("# Written by zomg on every start; edits are lost.\n");
    for (k, v) in injected
        .iter()
        .chain(own.iter().filter(|(k, _)| !injected.contains_key(*k)))
    {
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    out
}

/// Quotes a value for POSIX sh: single quotes, with `'` written as `'\''`.
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("http://127.0.0.1:7070").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://api.example.com/x").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(url_host("http://[::1]:7070").as_deref(), Some("::1"));
        assert_eq!(url_host("http://").as_deref(), None);
    }

    #[test]
    fn env_file_quotes_values() {
        let injected = [("BOX_NAME".to_owned(), "web".to_owned())].into();
        let own = [("MSG".to_owned(), "it's $HOME".to_owned())].into();
        let f = boxes_env_file(&injected, &own);
        assert!(f.contains("export BOX_NAME='web'\n"));
        assert!(f.contains("export MSG='it'\\''s $HOME'\n"), "{f}");
    }
}
