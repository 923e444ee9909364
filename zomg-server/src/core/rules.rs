//! Validation rules of the spec that do not need state: reserved environment, settings
//! parsing for `update`, resource ranges, base references.

use std::collections::BTreeMap;

use zomg_sdk::units::{parse_memory_mb, parse_millicpus};
use zomg_sdk::{TagKey, TagValue};

use super::error::{CoreError, CoreResult};

/// Variables the server injects into every box (SPEC §9); `-e` may not set them.
pub const RESERVED_ENV: &[&str] = &[
    "ZOMG_PROJECT",
    "BOX_NAME",
    "ZOMG_API_URL",
    "ZOMG_API_HOST",
    "ZOMG_API_IP",
    "ZOMG_NODE_IP",
    "TERM",
    "ZOMG_INSECURE",
];

/// Longest termination grace accepted (one day).
pub const MAX_GRACE_SECONDS: u32 = 86_400;

/// Checks user environment for create: valid names, no reserved names.
pub fn check_environment(env: &BTreeMap<String, String>) -> CoreResult<()> {
    for (k, v) in env {
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(CoreError::Invalid {
                code: "reserved_env",
                message: format!("environment variable is reserved: {k}"),
            });
        }
        if !is_env_name(k) {
            return Err(CoreError::invalid(format!(
                "invalid environment variable name {k:?}: use letters, digits and '_', not starting with a digit"
            )));
        }
        if v.contains('\0') {
            return Err(CoreError::invalid(format!(
                "environment variable {k} contains a NUL byte"
            )));
        }
    }
    Ok(())
}

/// Whether `name` can name an environment variable: ASCII letters, digits and `_`, not
/// starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks and converts tags.
pub fn check_tags(tags: &BTreeMap<String, String>) -> CoreResult<()> {
    for (k, v) in tags {
        TagKey::new(k.as_str()).map_err(|e| CoreError::invalid(e.to_string()))?;
        TagValue::new(v.as_str()).map_err(|e| CoreError::invalid(e.to_string()))?;
    }
    Ok(())
}

/// The upper bounds of resources on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Most millicores a box may ask for (the host's CPUs).
    pub max_millicpus: u32,
    /// Most MiB a box may ask for (the host's memory).
    pub max_ram_mb: u64,
    /// Fewest MiB a box may ask for.
    pub min_ram_mb: u64,
}

impl ResourceLimits {
    /// Checks a CPU limit in millicores.
    pub fn check_millicpus(&self, m: u32) -> CoreResult<u32> {
        if m < 10 || m > self.max_millicpus {
            return Err(CoreError::Invalid {
                code: "invalid_cpu",
                message: format!(
                    "cpu {} is out of range: must be between 0.01 and {} (the CPUs of this server)",
                    zomg_sdk::units::format_cpus(m),
                    zomg_sdk::units::format_cpus(self.max_millicpus)
                ),
            });
        }
        Ok(m)
    }

    /// Checks a memory limit in MiB.
    pub fn check_ram_mb(&self, mb: u64) -> CoreResult<u64> {
        if mb < self.min_ram_mb || mb > self.max_ram_mb {
            return Err(CoreError::Invalid {
                code: "invalid_memory",
                message: format!(
                    "memory {mb}M is out of range: must be between {}M and {}M (the memory of this server)",
                    self.min_ram_mb, self.max_ram_mb
                ),
            });
        }
        Ok(mb)
    }

    /// Converts a wire CPU count (cores) to checked millicores.
    pub fn check_cpus(&self, cpus: f64) -> CoreResult<u32> {
        if !cpus.is_finite() || cpus <= 0.0 || cpus > f64::from(u32::MAX / 1000) {
            return Err(CoreError::Invalid {
                code: "invalid_cpu",
                message: format!("cpu {cpus} is out of range: must be more than 0"),
            });
        }
        self.check_millicpus((cpus * 1000.0).round() as u32)
    }
}

/// Checks a storage limit in GB.
pub fn check_storage_gb(gb: u64) -> CoreResult<u64> {
    if gb == 0 || gb > 65_536 {
        return Err(CoreError::Invalid {
            code: "invalid_storage",
            message: format!("storage {gb}GB is out of range: must be between 1 and 65536"),
        });
    }
    Ok(gb)
}

/// Checks a termination grace in seconds.
pub fn check_grace(s: u64) -> CoreResult<u32> {
    if s > u64::from(MAX_GRACE_SECONDS) {
        return Err(CoreError::invalid(format!(
            "termination grace {s}s is out of range: must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    Ok(s as u32)
}

/// Checks a port.
pub fn check_port(p: u64) -> CoreResult<u16> {
    match u16::try_from(p) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(CoreError::Invalid {
            code: "invalid_port",
            message: format!("port {p} is out of range: must be between 1 and 65535"),
        }),
    }
}

/// The settings `update` applies, parsed from its `KEY=VALUE` map (SPEC §3 update).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `PORT`.
    pub port: Option<u16>,
    /// `CPU`, in millicores.
    pub millicpus: Option<u32>,
    /// `MEMORY`, in MiB.
    pub ram_mb: Option<u64>,
    /// `TERMINATION_GRACE_PERIOD_SECONDS` or `TERMINATION_GRACE_SECONDS`.
    pub grace_seconds: Option<u32>,
}

impl Settings {
    /// Parses the allowlisted keys out of `env`; every other key is dropped silently.
    /// A present key with a bad value is an error naming it.
    pub fn parse(env: &BTreeMap<String, String>, limits: &ResourceLimits) -> CoreResult<Self> {
        let mut s = Settings::default();
        for (k, v) in env {
            let v = v.trim();
            match k.as_str() {
                "PORT" => {
                    let p = v.parse::<u64>().map_err(|_| {
                        CoreError::invalid(format!(
                            "invalid PORT {v:?}: must be a number between 1 and 65535"
                        ))
                    })?;
                    s.port = Some(check_port(p)?);
                }
                "CPU" => {
                    let m = parse_millicpus(v).map_err(CoreError::invalid)?;
                    s.millicpus = Some(limits.check_millicpus(m)?);
                }
                "MEMORY" => {
                    let mb = parse_memory_mb(v).map_err(CoreError::invalid)?;
                    s.ram_mb = Some(limits.check_ram_mb(mb)?);
                }
                "TERMINATION_GRACE_PERIOD_SECONDS" | "TERMINATION_GRACE_SECONDS" => {
                    let g = v.parse::<u64>().map_err(|_| {
                        CoreError::invalid(format!(
                            "invalid {k} {v:?}: must be a number of seconds"
                        ))
                    })?;
                    s.grace_seconds = Some(check_grace(g)?);
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// Whether nothing applicable was given.
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }
}

/// Splits a base reference `alias[:tag]` (tag defaults to `latest`) and checks both parts.
pub fn parse_base_ref(s: &str) -> CoreResult<(String, String)> {
    let (alias, tag) = match s.split_once(':') {
        Some((a, t)) => (a, t),
        None => (s, "latest"),
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 128
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with('.')
    };
    if !ok(alias) || !ok(tag) {
        return Err(CoreError::Invalid {
            code: "invalid_base",
            message: format!(
                "invalid base {s:?}: use alias or alias:tag with letters, digits, '-', '_' and '.'"
            ),
        });
    }
    Ok((alias.to_owned(), tag.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ResourceLimits {
        ResourceLimits {
            max_millicpus: 2000,
            max_ram_mb: 4096,
            min_ram_mb: 16,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reserved_environment() {
        for name in RESERVED_ENV {
            let e = check_environment(&env(&[(name, "x")])).unwrap_err();
            assert_eq!(e.code(), "reserved_env");
            assert!(
                e.to_string()
                    .starts_with("environment variable is reserved"),
                "{e}"
            );
            assert!(e.to_string().contains(name));
        }
        check_environment(&env(&[("FOO", "1"), ("_X2", "")])).unwrap();
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(check_environment(&env(&[(bad, "x")])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn update_settings_allowlist() {
        let l = limits();
        let s = Settings::parse(&env(&[("FOO", "1"), ("BAR", "x")]), &l).unwrap();
        assert!(s.is_empty(), "non-allowlisted keys are dropped");
        let s = Settings::parse(
            &env(&[
                ("PORT", "8080"),
                ("CPU", "500m"),
                ("MEMORY", "1G"),
                ("TERMINATION_GRACE_SECONDS", "30"),
                ("X", "y"),
            ]),
            &l,
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                port: Some(8080),
                millicpus: Some(500),
                ram_mb: Some(1024),
                grace_seconds: Some(30)
            }
        );
        let s =
            Settings::parse(&env(&[("TERMINATION_GRACE_PERIOD_SECONDS", "86400")]), &l).unwrap();
        assert_eq!(s.grace_seconds, Some(86400));
        for (k, v) in [
            ("PORT", "0"),
            ("PORT", "65536"),
            ("PORT", "http"),
            ("CPU", "3"),
            ("CPU", "0"),
            ("CPU", "1m"),
            ("MEMORY", "8G"),
            ("MEMORY", "1M"),
            ("MEMORY", "lots"),
            ("TERMINATION_GRACE_SECONDS", "86401"),
            ("TERMINATION_GRACE_PERIOD_SECONDS", "-1"),
        ] {
            let e = Settings::parse(&env(&[(k, v)]), &l).unwrap_err();
            assert!(matches!(e, CoreError::Invalid { .. }), "{k}={v}");
        }
    }

    #[test]
    fn resource_ranges() {
        let l = limits();
        assert_eq!(l.check_cpus(0.5).unwrap(), 500);
        assert_eq!(l.check_cpus(2.0).unwrap(), 2000);
        for c in [0.0, -1.0, 2.5, f64::NAN, 0.001] {
            assert!(l.check_cpus(c).is_err(), "{c}");
        }
        assert!(l.check_ram_mb(4097).is_err());
        assert!(l.check_ram_mb(8).is_err());
        assert!(check_storage_gb(0).is_err());
        assert!(check_port(0).is_err());
        assert_eq!(check_port(65535).unwrap(), 65535);
    }

    #[test]
    fn base_refs() {
        assert_eq!(
            parse_base_ref("box-base").unwrap(),
            ("box-base".into(), "latest".into())
        );
        assert_eq!(
            parse_base_ref("py:3.12").unwrap(),
            ("py".into(), "3.12".into())
        );
        for bad in ["", ":x", "x:", "a:b:c", "../x", "a/b", ".hidden"] {
            assert!(parse_base_ref(bad).is_err(), "{bad:?}");
        }
    }
}
