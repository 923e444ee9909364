//! Parsers for flag values (`-t k=v`, `-e K=V`, `-d vol=/path:ro`, `--cpu`, `--memory`, ...).
//!
//! Each function is a clap `value_parser`: it takes the raw string and returns a typed value
//! or a message that names the input, so a bad value is rejected before any command runs.

use zomg_sdk::{DataMountSpec, TagKey, TagValue, VolumeName};

/// A `-t/--tag k=v` pair.
pub type Tag = (TagKey, TagValue);

/// Splits `KEY=VALUE` at the first `=`; `what` names the flag in the error.
fn split_pair<'a>(what: &str, form: &str, s: &'a str) -> Result<(&'a str, &'a str), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(format!("invalid {what} {s:?}: expected {form}")),
    }
}

/// Parses a tag `key=value`; both sides follow the tag charset (`a-z0-9-_.`).
pub fn tag(s: &str) -> Result<Tag, String> {
    let (k, v) = split_pair("tag", "KEY=VALUE", s)?;
    let key = k.parse::<TagKey>().map_err(|e| e.to_string())?;
    let value = v.parse::<TagValue>().map_err(|e| e.to_string())?;
    Ok((key, value))
}

/// Parses an environment variable `KEY=VALUE`; the value may be empty or contain `=`.
///
/// The key must be a shell variable name (`[A-Za-z_][A-Za-z0-9_]*`): anything else could not
/// be exported into the box's environment.
pub fn env_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = split_pair("environment variable", "KEY=VALUE", s)?;
    let valid = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid environment variable {s:?}: the name must match [A-Za-z_][A-Za-z0-9_]*"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Parses an `update` setting `KEY=VALUE` (`PORT=8080`, `CPU=2`, ...).
///
/// Same shape as [`env_var`]; the server decides which keys it applies.
pub fn setting(s: &str) -> Result<(String, String), String> {
    env_var(s).map_err(|_| format!("invalid setting {s:?}: expected KEY=VALUE, e.g. PORT=8080"))
}

/// Parses a data mount `volume=/path[:ro|:rw]` (read-write unless `:ro`).
pub fn data_mount(s: &str) -> Result<DataMountSpec, String> {
    let (vol, rest) = split_pair("data mount", "VOLUME=/PATH[:ro|:rw]", s)?;
    let name = vol.parse::<VolumeName>().map_err(|e| e.to_string())?;
    let (path, read_only) = if let Some(p) = rest.strip_suffix(":ro") {
        (p, true)
    } else if let Some(p) = rest.strip_suffix(":rw") {
        (p, false)
    } else {
        (rest, false)
    };
    if !path.starts_with('/') {
        return Err(format!(
            "invalid data mount {s:?}: the mount path must be absolute, e.g. {vol}=/data"
        ));
    }
    Ok(DataMountSpec {
        name,
        path: path.to_owned(),
        read_only,
    })
}

/// Parses a CPU limit: cores (`2`, `0.5`) or millicores (`500m`), in cores.
pub fn cpu(s: &str) -> Result<f64, String> {
    let err = || format!("invalid cpu {s:?}: expected cores (2, 0.5) or millicores (500m)");
    let cores = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<u64>().map_err(|_| err())? as f64 / 1000.0,
        None => s.parse::<f64>().map_err(|_| err())?,
    };
    if !cores.is_finite() || cores <= 0.0 {
        return Err(format!("invalid cpu {s:?}: must be greater than zero"));
    }
    Ok(cores)
}

/// Parses a memory limit (`512M`, `2G`, `1.5Gi`; a bare number is MiB), in MiB.
pub fn memory(s: &str) -> Result<u64, String> {
    let err = || format!("invalid memory {s:?}: expected a size like 512M or 2G");
    let lower = s.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let factor = match unit {
        "" | "m" | "mi" | "mb" | "mib" => 1.0,
        "g" | "gi" | "gb" | "gib" => 1024.0,
        "t" | "ti" | "tb" | "tib" => 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let value = num.parse::<f64>().map_err(|_| err())?;
    let mib = (value * factor).round();
    if !mib.is_finite() || mib < 1.0 {
        return Err(format!("invalid memory {s:?}: must be at least 1M"));
    }
    Ok(mib as u64)
}

/// Parses a size in whole GB (`10`, `10G`, `10GB`).
pub fn gigabytes(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let num = lower
        .strip_suffix("gb")
        .or_else(|| lower.strip_suffix('g'))
        .unwrap_or(&lower);
    match num.parse::<u64>() {
        Ok(0) => Err(format!("invalid size {s:?}: must be at least 1 GB")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid size {s:?}: expected whole GB, e.g. 10")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let (k, v) = tag("env=dev").unwrap();
        assert_eq!((k.as_str(), v.as_str()), ("env", "dev"));
        let (k, v) = tag("a.b_c=v1.2").unwrap();
        assert_eq!((k.as_str(), v.as_str()), ("a.b_c", "v1.2"));
        assert_eq!(
            tag("env").unwrap_err(),
            "invalid tag \"env\": expected KEY=VALUE"
        );
        assert_eq!(
            tag("=x").unwrap_err(),
            "invalid tag \"=x\": expected KEY=VALUE"
        );
        assert!(
            tag("Env=dev")
                .unwrap_err()
                .contains("invalid tag key \"Env\"")
        );
        assert!(tag("env=").unwrap_err().contains("invalid tag value \"\""));
        assert!(
            tag("env=a=b")
                .unwrap_err()
                .contains("invalid tag value \"a=b\"")
        );
    }

    #[test]
    fn env_vars() {
        assert_eq!(env_var("FOO=bar").unwrap(), ("FOO".into(), "bar".into()));
        assert_eq!(env_var("_x1=").unwrap(), ("_x1".into(), "".into()));
        assert_eq!(env_var("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(
            env_var("FOO").unwrap_err(),
            "invalid environment variable \"FOO\": expected KEY=VALUE"
        );
        for bad in ["1A=x", "A-B=x", "A B=x"] {
            let e = env_var(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("[A-Za-z_]"), "{e}");
        }
    }

    #[test]
    fn settings() {
        assert_eq!(
            setting("PORT=8080").unwrap(),
            ("PORT".into(), "8080".into())
        );
        assert_eq!(
            setting("PORT").unwrap_err(),
            "invalid setting \"PORT\": expected KEY=VALUE, e.g. PORT=8080"
        );
    }

    #[test]
    fn data_mounts() {
        let m = data_mount("cache=/data").unwrap();
        assert_eq!(
            (m.name.as_str(), m.path.as_str(), m.read_only),
            ("cache", "/data", false)
        );
        let m = data_mount("Cache.v1=/mnt/c:ro").unwrap();
        assert_eq!(
            (m.name.as_str(), m.path.as_str(), m.read_only),
            ("Cache.v1", "/mnt/c", true)
        );
        let m = data_mount("c=/mnt/c:rw").unwrap();
        assert_eq!((m.path.as_str(), m.read_only), ("/mnt/c", false));
        assert_eq!(
            data_mount("cache").unwrap_err(),
            "invalid data mount \"cache\": expected VOLUME=/PATH[:ro|:rw]"
        );
        assert_eq!(
            data_mount("cache=data:ro").unwrap_err(),
            "invalid data mount \"cache=data:ro\": the mount path must be absolute, e.g. cache=/data"
        );
        assert!(
            data_mount("a/b=/x")
                .unwrap_err()
                .contains("invalid volume name \"a/b\"")
        );
    }

    #[test]
    fn cpus() {
        assert_eq!(cpu("2").unwrap(), 2.0);
        assert_eq!(cpu("0.5").unwrap(), 0.5);
        assert_eq!(cpu("500m").unwrap(), 0.5);
        assert_eq!(cpu("1500m").unwrap(), 1.5);
        for bad in ["", "two", "m", "1.5m", "-1", "0", "0m", "inf", "NaN"] {
            let e = cpu(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid cpu {bad:?}")), "{e}");
        }
    }

    #[test]
    fn memories() {
        assert_eq!(memory("512M").unwrap(), 512);
        assert_eq!(memory("512").unwrap(), 512);
        assert_eq!(memory("512Mi").unwrap(), 512);
        assert_eq!(memory("2G").unwrap(), 2048);
        assert_eq!(memory("2gb").unwrap(), 2048);
        assert_eq!(memory("1.5Gi").unwrap(), 1536);
        assert_eq!(memory("1T").unwrap(), 1024 * 1024);
        for bad in ["", "G", "2X", "two", "0", "0.1M", "-1G", "1.2.3G"] {
            let e = memory(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid memory {bad:?}")), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(gigabytes("10").unwrap(), 10);
        assert_eq!(gigabytes("10G").unwrap(), 10);
        assert_eq!(gigabytes("10gb").unwrap(), 10);
        assert_eq!(
            gigabytes("0").unwrap_err(),
            "invalid size \"0\": must be at least 1 GB"
        );
        for bad in ["", "1.5", "ten", "10M", "-1"] {
            let e = gigabytes(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid size {bad:?}")), "{e}");
        }
    }
}
