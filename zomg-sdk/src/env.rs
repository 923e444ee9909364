//! Reading environment variables through a caller-supplied lookup.
//!
//! Every resolution in the SDK takes the environment as a function `Fn(&str) -> Option<String>`
//! instead of reading the process environment, so tests and embedders can pass a map.
//! An empty value counts as unset everywhere (`ZOMG_URL= zomg list` behaves like no
//! `ZOMG_URL`), because shells make "set but empty" easy to produce by accident.

/// Looks up `name` in the process environment; empty or non-UTF-8 values count as unset.
///
/// Pass it wherever the SDK asks for an environment: `Target::resolve(&flags, process_env, ..)`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `env(name)`, with an empty value treated as unset.
pub(crate) fn var(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// `1`, `true` and `yes` (any case) are true; everything else is false.
pub(crate) fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes"
    )
}

#[cfg(test)]
pub(crate) fn map_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "TRUE", "yes", "Yes", " 1 "] {
            assert!(is_truthy(v), "{v:?}");
        }
        for v in ["", "0", "false", "no", "on", "y", "2"] {
            assert!(!is_truthy(v), "{v:?}");
        }
    }

    #[test]
    fn empty_counts_as_unset() {
        let env = map_env(&[("A", ""), ("B", "x")]);
        assert_eq!(var(&env, "A"), None);
        assert_eq!(var(&env, "B").as_deref(), Some("x"));
        assert_eq!(var(&env, "C"), None);
    }
}
