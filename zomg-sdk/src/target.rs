//! Which server to talk to, and how: URL, token and profile resolution (SPEC §2).
//!
//! Resolution is a pure function of (flags, environment, setup config) so every precedence
//! step is testable without touching the process environment. See [`resolve_target`] for the
//! exact order.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use crate::env::{is_truthy, var};
use crate::error::{Error, Result};
use crate::setup::SetupConfig;

/// A resolved server target: everything [`crate::Client::new`] needs.
///
/// Its `Debug` output shows whether there is a token, never the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL of the server (`http://127.0.0.1:7070`, `https://api.example.com`).
    pub url: Url,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// The selected profile name, if one was selected.
    pub profile: Option<String>,
    /// SSH host for `zomg ssh`.
    pub ssh_host: Option<String>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Connect to this address instead of resolving the URL's host (TLS/SNI still use the
    /// host name).
    pub ip: Option<IpAddr>,
}

/// The local server's default address, used when nothing else names a server.
pub const DEFAULT_LOCAL_URL: &str = "http://127.0.0.1:7070";

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("profile", &self.profile)
            .field("ssh_host", &self.ssh_host)
            .field("insecure", &self.insecure)
            .field("ip", &self.ip)
            .finish()
    }
}

impl Target {
    /// A target with just a URL: no token, no profile, verified TLS, normal DNS.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            token: None,
            profile: None,
            ssh_host: None,
            insecure: false,
            ip: None,
        }
    }

    /// The local server at [`DEFAULT_LOCAL_URL`].
    pub fn local() -> Self {
        Self::new(Url::parse(DEFAULT_LOCAL_URL).expect("the default URL is valid"))
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// The command-line flags that take part in target resolution (`--url`, `--token`,
/// `--profile`). An empty value counts as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFlags {
    /// `--url`.
    pub url: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
}

/// Where the resolved URL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlSource {
    /// `--url`.
    Flag,
    /// `ZOMG_PROFILE_<NAME>_URL` of the selected profile.
    Profile,
    /// The setup config (`api_url`, else `https://api.<zomg_domain>`).
    SetupConfig,
    /// `ZOMG_URL`.
    ZomgUrl,
    /// `ZOMG_API_URL` (injected into every box).
    ZomgApiUrl,
    /// Nothing named a server: [`DEFAULT_LOCAL_URL`].
    Default,
}

/// Where the resolved token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// `--token`.
    Flag,
    /// `ZOMG_PROFILE_<NAME>_TOKEN` of the selected profile.
    Profile,
    /// `ZOMG_TOKEN`.
    ZomgToken,
    /// The setup config's `token`.
    SetupConfig,
}

/// Where the selected profile came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileSource {
    /// `--profile`.
    Flag,
    /// `ZOMG_PROFILE`.
    Env,
    /// The setup config's `profile` key (`zomg config set profile <name>`).
    SetupConfig,
}

/// A resolved [`Target`] plus where its parts came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResolution {
    /// The target to build a client from.
    pub target: Target,
    /// Where the URL came from; a server-local token fallback should apply only to
    /// [`UrlSource::Default`].
    pub url_source: UrlSource,
    /// Where the token came from, if there is one.
    pub token_source: Option<TokenSource>,
    /// Where the selected profile came from, if one is selected.
    pub profile_source: Option<ProfileSource>,
}

impl TargetResolution {
    /// True when the URL is the built-in local default and no token was found: the case where
    /// the CLI may read the local server's token file.
    pub fn wants_local_token(&self) -> bool {
        self.url_source == UrlSource::Default && self.target.token.is_none()
    }
}

/// A profile name as it appears in variable names: uppercased, every non-alphanumeric
/// character turned into `_` (`my-prod` → `MY_PROD`).
pub(crate) fn normalize_profile(profile: &str) -> String {
    profile
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The name of a profile variable: `profile_var("staging", "URL")` is
/// `ZOMG_PROFILE_STAGING_URL`.
pub fn profile_var(profile: &str, suffix: &str) -> String {
    format!("ZOMG_PROFILE_{}_{suffix}", normalize_profile(profile))
}

/// Parses a server URL, naming where it came from when it is not an http(s) URL with a host.
pub(crate) fn parse_url(value: &str, source: &str) -> Result<Url> {
    let bad = |why: String| Error::Config(format!("invalid {source} {value:?}: {why}"));
    let url = Url::parse(value.trim())
        .map_err(|e| bad(format!("{e}; expected an http:// or https:// URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("expected an http:// or https:// URL".to_owned()));
    }
    Ok(url)
}

/// The selected profile: `--profile`, else `ZOMG_PROFILE`, else the setup config's `profile`.
pub fn selected_profile(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    config: Option<&SetupConfig>,
) -> Option<(String, ProfileSource)> {
    if let Some(p) = flag.map(str::trim).filter(|p| !p.is_empty()) {
        return Some((p.to_owned(), ProfileSource::Flag));
    }
    if let Some(p) = var(&env, "ZOMG_PROFILE") {
        return Some((p.trim().to_owned(), ProfileSource::Env));
    }
    config
        .and_then(SetupConfig::profile)
        .map(|p| (p, ProfileSource::SetupConfig))
}

/// Resolves URL, token, SSH host, TLS and address overrides (SPEC §2).
///
/// **Profile**: `--profile`, else `ZOMG_PROFILE`, else the setup config's `profile` key.
///
/// **The setup config applies** when the selected profile equals its `profile` or `env` key
/// (compared by variable name), or when no profile is selected and the config names none
/// (an unscoped config). A config scoped to another profile is ignored, so its token is never
/// sent to a server it was not written for.
///
/// **URL**, first match wins:
/// 1. `--url`
/// 2. the selected profile: `ZOMG_PROFILE_<NAME>_URL`; else, if the setup config applies,
///    its `api_url`, else `https://api.<zomg_domain>`; else the error
///    `profile "<name>" is selected but ZOMG_PROFILE_<NAME>_URL is not set`
/// 3. `ZOMG_URL`
/// 4. `ZOMG_API_URL`
/// 5. an applying unscoped setup config: `api_url`, else `https://api.<zomg_domain>`
/// 6. [`DEFAULT_LOCAL_URL`]
///
/// The config derivation for a selected profile sits *inside* step 2, before `ZOMG_URL`:
/// selecting a profile is an explicit choice, and it must never silently yield to ambient
/// variables (`ZOMG_API_URL` is injected into every box, so otherwise `zomg --profile prod`
/// run inside a box would talk to the box's own server). For the same reason the error fires
/// even when `ZOMG_URL` is set: it is only reached when nothing can supply the profile's URL.
///
/// **Token**: `--token`, then the selected profile's `_TOKEN`, then `ZOMG_TOKEN`, then the
/// setup config's `token` (when the config applies).
///
/// **SSH host**: the profile's `_SSH_HOST`, else the config's `ssh_host`, else
/// `ssh.<zomg_domain>` (when the config applies).
///
/// **TLS and address**: when the URL came from the profile (step 2), the profile's
/// `_INSECURE` (1/true/yes) and `_IP`; otherwise `ZOMG_INSECURE`, and `ZOMG_API_IP` when the
/// URL is `ZOMG_API_URL` (both are injected into boxes with it). A profile's `_IP` is never
/// applied to a URL given some other way, since it would redirect an unrelated host.
pub fn resolve_target(
    flags: &TargetFlags,
    env: impl Fn(&str) -> Option<String>,
    config: Option<&SetupConfig>,
) -> Result<TargetResolution> {
    let flag = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let selected = selected_profile(flags.profile.as_deref(), &env, config);
    let profile = selected.as_ref().map(|(p, _)| p.as_str());
    let config = config.filter(|c| match profile {
        Some(p) => c.matches_profile(p),
        None => !c.is_scoped(),
    });
    let config_url = |c: &SetupConfig| -> Result<Option<Url>> {
        if let Some(u) = c.api_url() {
            let source = format!("api_url in {}", c.path().display());
            return parse_url(&u, &source).map(Some);
        }
        match c.zomg_domain() {
            Some(d) => {
                let source = format!("zomg_domain in {}", c.path().display());
                parse_url(&format!("https://api.{d}"), &source).map(Some)
            }
            None => Ok(None),
        }
    };

    let (url, url_source) = if let Some(u) = flag(&flags.url) {
        (parse_url(&u, "--url")?, UrlSource::Flag)
    } else if let Some(p) = profile {
        let name = profile_var(p, "URL");
        if let Some(u) = var(&env, &name) {
            (parse_url(&u, &name)?, UrlSource::Profile)
        } else if let Some(u) = config.map(config_url).transpose()?.flatten() {
            (u, UrlSource::SetupConfig)
        } else {
            let mut msg = format!("profile {p:?} is selected but {name} is not set");
            if let Some(c) = config {
                msg.push_str(&format!(
                    " (and {} sets neither api_url nor zomg_domain)",
                    c.path().display()
                ));
            }
            return Err(Error::Config(msg));
        }
    } else if let Some(u) = var(&env, "ZOMG_URL") {
        (parse_url(&u, "ZOMG_URL")?, UrlSource::ZomgUrl)
    } else if let Some(u) = var(&env, "ZOMG_API_URL") {
        (parse_url(&u, "ZOMG_API_URL")?, UrlSource::ZomgApiUrl)
    } else if let Some(u) = config.map(config_url).transpose()?.flatten() {
        (u, UrlSource::SetupConfig)
    } else {
        (
            Url::parse(DEFAULT_LOCAL_URL).expect("the default URL is valid"),
            UrlSource::Default,
        )
    };

    let profile_env = |suffix: &str| profile.and_then(|p| var(&env, &profile_var(p, suffix)));
    let (token, token_source) = if let Some(t) = flag(&flags.token) {
        (Some(t), Some(TokenSource::Flag))
    } else if let Some(t) = profile_env("TOKEN") {
        (Some(t), Some(TokenSource::Profile))
    } else if let Some(t) = var(&env, "ZOMG_TOKEN") {
        (Some(t), Some(TokenSource::ZomgToken))
    } else if let Some(t) = config.and_then(SetupConfig::token) {
        (Some(t), Some(TokenSource::SetupConfig))
    } else {
        (None, None)
    };

    let ssh_host =
        profile_env("SSH_HOST").or_else(|| config.and_then(SetupConfig::derived_ssh_host));

    let parse_ip = |name: &str| -> Result<Option<IpAddr>> {
        var(&env, name)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    Error::Config(format!("invalid {name} {v:?}: expected an IP address"))
                })
            })
            .transpose()
    };
    let from_profile =
        profile.is_some() && matches!(url_source, UrlSource::Profile | UrlSource::SetupConfig);
    let (insecure, ip) = if from_profile {
        let p = profile.unwrap_or_default();
        (
            profile_env("INSECURE").is_some_and(|v| is_truthy(&v)),
            parse_ip(&profile_var(p, "IP"))?,
        )
    } else {
        let insecure = var(&env, "ZOMG_INSECURE").is_some_and(|v| is_truthy(&v));
        let ip = if url_source == UrlSource::ZomgApiUrl {
            parse_ip("ZOMG_API_IP")?
        } else {
            None
        };
        (insecure, ip)
    };

    Ok(TargetResolution {
        target: Target {
            url,
            token,
            profile: profile.map(str::to_owned),
            ssh_host,
            insecure,
            ip,
        },
        url_source,
        token_source,
        profile_source: selected.map(|(_, s)| s),
    })
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // case tables are tuples
mod tests {
    use super::*;
    use crate::env::map_env;

    fn flags(url: Option<&str>, token: Option<&str>, profile: Option<&str>) -> TargetFlags {
        TargetFlags {
            url: url.map(str::to_owned),
            token: token.map(str::to_owned),
            profile: profile.map(str::to_owned),
        }
    }

    fn cfg(text: &str) -> SetupConfig {
        SetupConfig::from_text("/repo/.zomg/config.yaml", text).unwrap()
    }

    #[test]
    fn profile_var_naming() {
        assert_eq!(profile_var("staging", "URL"), "ZOMG_PROFILE_STAGING_URL");
        assert_eq!(
            profile_var("my-prod.eu", "TOKEN"),
            "ZOMG_PROFILE_MY_PROD_EU_TOKEN"
        );
        assert_eq!(
            profile_var("Dev 2", "SSH_HOST"),
            "ZOMG_PROFILE_DEV_2_SSH_HOST"
        );
        assert_eq!(profile_var("é", "IP"), "ZOMG_PROFILE___IP");
    }

    /// Every URL precedence step, with everything below it also set.
    #[test]
    fn url_precedence() {
        let all = [
            ("ZOMG_PROFILE", "staging"),
            ("ZOMG_PROFILE_STAGING_URL", "https://profile.example"),
            ("ZOMG_PROFILE_CLI_URL", "https://cli-profile.example"),
            ("ZOMG_URL", "https://zomg-url.example"),
            ("ZOMG_API_URL", "https://zomg-api-url.example"),
        ];
        let unscoped = cfg("api_url: https://config.example\n");
        type Case<'a> = (
            &'a str,
            TargetFlags,
            Vec<(&'a str, &'a str)>,
            Option<&'a SetupConfig>,
            &'a str,
            UrlSource,
        );
        let cases: Vec<Case> = vec![
            (
                "flag wins",
                flags(Some("https://flag.example"), None, Some("cli")),
                all.to_vec(),
                Some(&unscoped),
                "https://flag.example/",
                UrlSource::Flag,
            ),
            (
                "--profile beats ZOMG_PROFILE",
                flags(None, None, Some("cli")),
                all.to_vec(),
                None,
                "https://cli-profile.example/",
                UrlSource::Profile,
            ),
            (
                "ZOMG_PROFILE",
                flags(None, None, None),
                all.to_vec(),
                Some(&unscoped),
                "https://profile.example/",
                UrlSource::Profile,
            ),
            (
                "ZOMG_URL",
                flags(None, None, None),
                all[3..].to_vec(),
                Some(&unscoped),
                "https://zomg-url.example/",
                UrlSource::ZomgUrl,
            ),
            (
                "ZOMG_API_URL",
                flags(None, None, None),
                all[4..].to_vec(),
                Some(&unscoped),
                "https://zomg-api-url.example/",
                UrlSource::ZomgApiUrl,
            ),
            (
                "unscoped config",
                flags(None, None, None),
                vec![],
                Some(&unscoped),
                "https://config.example/",
                UrlSource::SetupConfig,
            ),
            (
                "default",
                flags(None, None, None),
                vec![],
                None,
                "http://127.0.0.1:7070/",
                UrlSource::Default,
            ),
            (
                "empty values are unset",
                flags(Some(""), Some(""), Some("")),
                vec![("ZOMG_PROFILE", ""), ("ZOMG_URL", "")],
                None,
                "http://127.0.0.1:7070/",
                UrlSource::Default,
            ),
        ];
        for (what, f, vars, config, want, source) in cases {
            let r = resolve_target(&f, map_env(&vars), config)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.target.url.as_str(), want, "{what}");
            assert_eq!(r.url_source, source, "{what}");
        }
    }

    #[test]
    fn missing_profile_url_is_an_exact_error() {
        let cases: Vec<(TargetFlags, Vec<(&str, &str)>)> = vec![
            (flags(None, None, Some("staging")), vec![]),
            (flags(None, None, None), vec![("ZOMG_PROFILE", "staging")]),
            // Ambient URLs do not rescue a selected profile.
            (
                flags(None, None, None),
                vec![
                    ("ZOMG_PROFILE", "staging"),
                    ("ZOMG_URL", "http://x"),
                    ("ZOMG_API_URL", "http://y"),
                ],
            ),
        ];
        for (f, vars) in cases {
            let e = resolve_target(&f, map_env(&vars), None).unwrap_err();
            assert_eq!(
                e.to_string(),
                "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set"
            );
        }
        // A config scoped to another profile does not help either.
        let other = cfg("profile: prod\napi_url: https://prod\n");
        let e = resolve_target(
            &flags(None, None, Some("staging")),
            map_env(&[]),
            Some(&other),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set"
        );
        // The config's default profile is a selection too.
        let bare = cfg("profile: staging\n");
        let e = resolve_target(&flags(None, None, None), map_env(&[]), Some(&bare)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set \
             (and /repo/.zomg/config.yaml sets neither api_url nor zomg_domain)"
        );
        // --url needs no profile URL.
        let r = resolve_target(
            &flags(Some("http://u"), None, Some("staging")),
            map_env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(r.target.profile.as_deref(), Some("staging"));
    }

    #[test]
    fn config_supplies_a_matching_profile() {
        let by_url = cfg(
            "profile: prod\napi_url: https://api.prod.example\nzomg_domain: ignored.example\ntoken: cfg-token\n",
        );
        let by_domain = cfg("env: staging\nzomg_domain: staging.example\n");
        let bad_url = cfg("profile: p\napi_url: nope\n");
        let cases: Vec<(
            &str,
            TargetFlags,
            Vec<(&str, &str)>,
            &SetupConfig,
            Result<(&str, UrlSource), &str>,
        )> = vec![
            (
                "config default profile, api_url",
                flags(None, None, None),
                vec![("ZOMG_URL", "http://ambient")],
                &by_url,
                Ok(("https://api.prod.example/", UrlSource::SetupConfig)),
            ),
            (
                "ZOMG_PROFILE matches profile key",
                flags(None, None, None),
                vec![("ZOMG_PROFILE", "prod")],
                &by_url,
                Ok(("https://api.prod.example/", UrlSource::SetupConfig)),
            ),
            (
                "match ignores case",
                flags(None, None, Some("PROD")),
                vec![],
                &by_url,
                Ok(("https://api.prod.example/", UrlSource::SetupConfig)),
            ),
            (
                "env var beats config",
                flags(None, None, None),
                vec![("ZOMG_PROFILE_PROD_URL", "https://env.prod")],
                &by_url,
                Ok(("https://env.prod/", UrlSource::Profile)),
            ),
            (
                "env key + zomg_domain",
                flags(None, None, Some("staging")),
                vec![("ZOMG_API_URL", "http://in-box")],
                &by_domain,
                Ok(("https://api.staging.example/", UrlSource::SetupConfig)),
            ),
            (
                "scoped config without selection is ignored",
                flags(None, None, None),
                vec![],
                &by_domain,
                Ok(("http://127.0.0.1:7070/", UrlSource::Default)),
            ),
            (
                "scoped config ignored for other profile",
                flags(None, None, Some("dev")),
                vec![("ZOMG_PROFILE_DEV_URL", "http://dev")],
                &by_url,
                Ok(("http://dev/", UrlSource::Profile)),
            ),
            (
                "bad api_url names the file",
                flags(None, None, None),
                vec![],
                &bad_url,
                Err("invalid api_url in /repo/.zomg/config.yaml \"nope\""),
            ),
        ];
        for (what, f, vars, c, want) in cases {
            let got = resolve_target(&f, map_env(&vars), Some(c));
            match want {
                Ok((url, source)) => {
                    let r = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        (r.target.url.as_str(), r.url_source),
                        (url, source),
                        "{what}"
                    );
                }
                Err(msg) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.starts_with(msg), "{what}: {e}");
                }
            }
        }
    }

    #[test]
    fn token_precedence() {
        let scoped = cfg("profile: prod\nzomg_domain: prod.example\ntoken: cfg\n");
        let unscoped = cfg("token: cfg-unscoped\n");
        let all = [
            ("ZOMG_PROFILE_PROD_TOKEN", "profile"),
            ("ZOMG_TOKEN", "zomg"),
        ];
        type Case<'a> = (
            &'a str,
            TargetFlags,
            Vec<(&'a str, &'a str)>,
            Option<&'a SetupConfig>,
            Option<(&'a str, TokenSource)>,
        );
        let cases: Vec<Case> = vec![
            (
                "flag",
                flags(None, Some("flag"), None),
                all.to_vec(),
                Some(&scoped),
                Some(("flag", TokenSource::Flag)),
            ),
            (
                "profile",
                flags(None, None, None),
                all.to_vec(),
                Some(&scoped),
                Some(("profile", TokenSource::Profile)),
            ),
            (
                "ZOMG_TOKEN",
                flags(None, None, None),
                all[1..].to_vec(),
                Some(&scoped),
                Some(("zomg", TokenSource::ZomgToken)),
            ),
            (
                "config",
                flags(None, None, None),
                vec![],
                Some(&scoped),
                Some(("cfg", TokenSource::SetupConfig)),
            ),
            (
                "unscoped config",
                flags(None, None, None),
                vec![],
                Some(&unscoped),
                Some(("cfg-unscoped", TokenSource::SetupConfig)),
            ),
            (
                "profile token even with --url",
                flags(Some("http://x"), None, Some("prod")),
                all.to_vec(),
                None,
                Some(("profile", TokenSource::Profile)),
            ),
            (
                "scoped config never leaks to another profile",
                flags(None, None, Some("dev")),
                vec![("ZOMG_PROFILE_DEV_URL", "http://dev")],
                Some(&scoped),
                None,
            ),
            (
                "unscoped config not used with a profile",
                flags(None, None, Some("dev")),
                vec![("ZOMG_PROFILE_DEV_URL", "http://dev")],
                Some(&unscoped),
                None,
            ),
            ("nothing", flags(None, None, None), vec![], None, None),
        ];
        for (what, f, vars, config, want) in cases {
            let r = resolve_target(&f, map_env(&vars), config)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = r.target.token.as_deref().zip(r.token_source);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn ssh_host_precedence() {
        let with_host =
            cfg("profile: prod\nzomg_domain: prod.example\nssh_host: gw.prod.example\n");
        let domain_only = cfg("profile: prod\nzomg_domain: prod.example\n");
        let cases: Vec<(Vec<(&str, &str)>, &SetupConfig, Option<&str>)> = vec![
            (
                vec![("ZOMG_PROFILE_PROD_SSH_HOST", "ssh.env")],
                &with_host,
                Some("ssh.env"),
            ),
            (vec![], &with_host, Some("gw.prod.example")),
            (vec![], &domain_only, Some("ssh.prod.example")),
            (
                vec![
                    ("ZOMG_PROFILE", "dev"),
                    ("ZOMG_PROFILE_DEV_URL", "http://dev"),
                ],
                &with_host,
                None,
            ),
        ];
        for (vars, c, want) in cases {
            let r = resolve_target(&TargetFlags::default(), map_env(&vars), Some(c)).unwrap();
            assert_eq!(r.target.ssh_host.as_deref(), want, "{vars:?}");
        }
    }

    #[test]
    fn insecure_and_ip() {
        type Case<'a> = (
            &'a str,
            TargetFlags,
            Vec<(&'a str, &'a str)>,
            bool,
            Option<&'a str>,
        );
        let p = [
            ("ZOMG_PROFILE", "dev"),
            ("ZOMG_PROFILE_DEV_URL", "https://dev.example"),
            ("ZOMG_PROFILE_DEV_INSECURE", "yes"),
            ("ZOMG_PROFILE_DEV_IP", "10.0.0.5"),
            ("ZOMG_INSECURE", "0"),
            ("ZOMG_API_IP", "10.9.9.9"),
        ];
        let cases: Vec<Case> = vec![
            (
                "profile",
                TargetFlags::default(),
                p.to_vec(),
                true,
                Some("10.0.0.5"),
            ),
            (
                "profile INSECURE false",
                TargetFlags::default(),
                vec![
                    p[0],
                    p[1],
                    ("ZOMG_PROFILE_DEV_INSECURE", "false"),
                    ("ZOMG_INSECURE", "1"),
                ],
                false,
                None,
            ),
            (
                "profile vars not applied to --url",
                flags(Some("https://other"), None, None),
                p.to_vec(),
                false,
                None,
            ),
            (
                "ipv6",
                TargetFlags::default(),
                vec![p[0], p[1], ("ZOMG_PROFILE_DEV_IP", "::1")],
                false,
                Some("::1"),
            ),
            (
                "in a box",
                TargetFlags::default(),
                vec![
                    ("ZOMG_API_URL", "https://api.x"),
                    ("ZOMG_INSECURE", "true"),
                    ("ZOMG_API_IP", "10.9.9.9"),
                ],
                true,
                Some("10.9.9.9"),
            ),
            (
                "ZOMG_API_IP only with ZOMG_API_URL",
                TargetFlags::default(),
                vec![("ZOMG_URL", "https://api.x"), ("ZOMG_API_IP", "10.9.9.9")],
                false,
                None,
            ),
        ];
        for (what, f, vars, insecure, ip) in cases {
            let r =
                resolve_target(&f, map_env(&vars), None).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.target.insecure, insecure, "{what}");
            assert_eq!(r.target.ip, ip.map(|i| i.parse().unwrap()), "{what}");
        }
        let e = resolve_target(
            &TargetFlags::default(),
            map_env(&[p[0], p[1], ("ZOMG_PROFILE_DEV_IP", "nope")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid ZOMG_PROFILE_DEV_IP \"nope\": expected an IP address"
        );
    }

    #[test]
    fn invalid_urls_name_their_source() {
        let cases: Vec<(TargetFlags, Vec<(&str, &str)>, &str)> = vec![
            (
                flags(Some("localhost:7070"), None, None),
                vec![],
                "invalid --url \"localhost:7070\"",
            ),
            (
                flags(None, None, None),
                vec![("ZOMG_URL", "nope")],
                "invalid ZOMG_URL \"nope\"",
            ),
            (
                flags(None, None, None),
                vec![("ZOMG_API_URL", "ftp://x")],
                "invalid ZOMG_API_URL \"ftp://x\": expected an http:// or https:// URL",
            ),
            (
                flags(None, None, Some("s")),
                vec![("ZOMG_PROFILE_S_URL", "x")],
                "invalid ZOMG_PROFILE_S_URL \"x\"",
            ),
        ];
        for (f, vars, want) in cases {
            let e = resolve_target(&f, map_env(&vars), None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn records_profile_source_and_local_token_hint() {
        let c = cfg("profile: prod\nzomg_domain: x.example\n");
        let r = resolve_target(&flags(None, None, Some("prod")), map_env(&[]), Some(&c)).unwrap();
        assert_eq!(r.profile_source, Some(ProfileSource::Flag));
        let r = resolve_target(
            &TargetFlags::default(),
            map_env(&[("ZOMG_PROFILE", "prod")]),
            Some(&c),
        )
        .unwrap();
        assert_eq!(r.profile_source, Some(ProfileSource::Env));
        let r = resolve_target(&TargetFlags::default(), map_env(&[]), Some(&c)).unwrap();
        assert_eq!(r.profile_source, Some(ProfileSource::SetupConfig));
        assert!(!r.wants_local_token());
        let r = resolve_target(&TargetFlags::default(), map_env(&[]), None).unwrap();
        assert_eq!(r.profile_source, None);
        assert!(r.wants_local_token());
        assert_eq!(r.target, Target::local());
        let r = resolve_target(&flags(None, Some("t"), None), map_env(&[]), None).unwrap();
        assert!(!r.wants_local_token());
    }
}
