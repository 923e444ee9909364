//! Parsers for resource quantities shared by the CLI flags and the server's `update` settings:
//! CPU (`2`, `0.5`, `500m`) and memory (`512M`, `2G`, `1.5Gi`, `1024` = MiB).

/// Parses a CPU quantity into millicores: `2` → 2000, `0.5` → 500, `500m` → 500.
pub fn parse_millicpus(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let bad =
        || format!("invalid CPU value {s:?}: use cores like 2 or 0.5, or millicores like 500m");
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let cores: f64 = t.parse().map_err(|_| bad())?;
        if !cores.is_finite() || cores < 0.0 {
            return Err(bad());
        }
        (cores * 1000.0).round() as u64
    };
    if millis == 0 {
        return Err(format!("invalid CPU value {s:?}: must be more than 0"));
    }
    u32::try_from(millis).map_err(|_| bad())
}

/// Parses a memory quantity into MiB. Suffixes `K`, `M`, `G`, `T` (powers of 1024, an optional
/// `i` and `B` are accepted: `512M`, `2Gi`, `1GB`); a bare number is MiB.
pub fn parse_memory_mb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid memory value {s:?}: use a size like 512M or 2G");
    let upper = t.to_ascii_uppercase();
    let unit_start = upper
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(upper.len());
    let (num, unit) = upper.split_at(unit_start);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_end_matches('B').trim_end_matches('I');
    let mib = match unit {
        "" | "M" => value,
        "K" => value / 1024.0,
        "G" => value * 1024.0,
        "T" => value * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if !mib.is_finite() || mib < 1.0 {
        return Err(format!("invalid memory value {s:?}: must be at least 1M"));
    }
    Ok(mib.round() as u64)
}

/// Formats millicores the way users write them: `2`, `0.5`.
pub fn format_cpus(millicpus: u32) -> String {
    if millicpus % 1000 == 0 {
        (millicpus / 1000).to_string()
    } else {
        format!("{}", f64::from(millicpus) / 1000.0)
    }
}

/// Formats a byte count for people, in powers of 1024 with one decimal: `512 B`, `12.3 MiB`,
/// `1.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Round first, so that 1023.96 KiB prints as 1.0 MiB rather than 1024.0 KiB.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus() {
        for (s, m) in [
            ("2", 2000),
            ("0.5", 500),
            ("500m", 500),
            ("1.25", 1250),
            (" 3 ", 3000),
            ("100m", 100),
        ] {
            assert_eq!(parse_millicpus(s).unwrap(), m, "{s}");
        }
        for s in ["", "0", "0m", "-1", "abc", "1.5m", "2 cores", "inf", "NaN"] {
            assert!(parse_millicpus(s).is_err(), "{s:?} should fail");
        }
        assert!(parse_millicpus("x").unwrap_err().contains("\"x\""));
        assert_eq!(format_cpus(2000), "2");
        assert_eq!(format_cpus(500), "0.5");
    }

    #[test]
    fn memory() {
        for (s, m) in [
            ("512M", 512),
            ("512m", 512),
            ("2G", 2048),
            ("2Gi", 2048),
            ("1GB", 1024),
            ("1.5G", 1536),
            ("1024", 1024),
            ("2048K", 2),
            ("1T", 1024 * 1024),
            ("256MiB", 256),
        ] {
            assert_eq!(parse_memory_mb(s).unwrap(), m, "{s}");
        }
        for s in ["", "0", "G", "12X", "-1G", "512K", "1.2.3G"] {
            assert!(parse_memory_mb(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn bytes() {
        for (b, s) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (12_897_485, "12.3 MiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (1 << 30, "1.0 GiB"),
            (5 << 40, "5.0 TiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(format_bytes(b), s, "{b}");
        }
    }
}
