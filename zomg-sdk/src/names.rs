//! Validating newtypes for every name in zomg (SPEC §1).
//!
//! Each type checks its rule once, at the edge (`FromStr`, `TryFrom<String>`, serde), so the
//! rest of the code can rely on a `BoxName` being a valid DNS label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that failed its rule; the message names the input and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {rule}")]
pub struct NameError {
    /// What kind of name was being checked ("project name", "box name", ...).
    pub kind: &'static str,
    /// The rejected input, verbatim.
    pub input: String,
    /// The rule the input broke, in words.
    pub rule: &'static str,
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks the DNS-label rule shared by boxes and projects: 1–63 chars of `a-z0-9-`, starting
/// and ending alphanumeric.
fn check_label(kind: &'static str, s: &str) -> Result<(), NameError> {
    let err = |rule| {
        Err(NameError {
            kind,
            input: s.to_owned(),
            rule,
        })
    };
    if s.is_empty() {
        return err("must not be empty");
    }
    if s.len() > 63 {
        return err("must be at most 63 characters");
    }
    if !s.chars().all(|c| is_lower_alnum(c) || c == '-') {
        return err("may contain only lowercase letters a-z, digits 0-9 and '-'");
    }
    let first = s.chars().next().unwrap_or('-');
    let last = s.chars().last().unwrap_or('-');
    if !is_lower_alnum(first) || !is_lower_alnum(last) {
        return err("must start and end with a letter or digit");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The kind of name, as used in error messages.
            pub const KIND: &'static str = $kind;

            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                let check: fn(&str) -> Result<(), NameError> = $check;
                check(&s)?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// A project: 1–63 chars of `a-z0-9-`, starts and ends alphanumeric, no `--`.
    ProjectName,
    "project name",
    |s| {
        check_label("project name", s)?;
        if s.contains("--") {
            return Err(NameError {
                kind: "project name",
                input: s.to_owned(),
                rule: "must not contain '--'",
            });
        }
        Ok(())
    }
);

name_type!(
    /// A box: a DNS label, 1–63 chars of `a-z0-9-`, starts and ends alphanumeric.
    BoxName,
    "box name",
    |s| check_label("box name", s)
);

name_type!(
    /// A tag key: the box charset plus `_` and `.`.
    TagKey,
    "tag key",
    |s| check_tag("tag key", s)
);

name_type!(
    /// A tag value: the box charset plus `_` and `.`.
    TagValue,
    "tag value",
    |s| check_tag("tag value", s)
);

name_type!(
    /// A data volume: `^[a-zA-Z0-9_.-]+$`.
    VolumeName,
    "volume name",
    |s| {
        let err = |rule| {
            Err(NameError {
                kind: "volume name",
                input: s.to_owned(),
                rule,
            })
        };
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.len() > 255 {
            return err("must be at most 255 characters");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return err("may contain only letters, digits, '_', '.' and '-'");
        }
        if s == "." || s == ".." {
            return err("must not be '.' or '..'");
        }
        Ok(())
    }
);

/// Tags use the box charset (`a-z0-9-`) plus `_` and `.`, 1–63 characters.
fn check_tag(kind: &'static str, s: &str) -> Result<(), NameError> {
    let err = |rule| {
        Err(NameError {
            kind,
            input: s.to_owned(),
            rule,
        })
    };
    if s.is_empty() {
        return err("must not be empty");
    }
    if s.len() > 63 {
        return err("must be at most 63 characters");
    }
    if !s
        .chars()
        .all(|c| is_lower_alnum(c) || matches!(c, '-' | '_' | '.'))
    {
        return err("may contain only lowercase letters a-z, digits 0-9, '-', '_' and '.'");
    }
    Ok(())
}

/// The project used when nothing else selects one.
pub const DEFAULT_PROJECT: &str = "default";

impl ProjectName {
    /// The `default` project.
    pub fn default_project() -> Self {
        Self(DEFAULT_PROJECT.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        let ok = ["a", "default", "my-proj", "p1", "1p", long63.as_str()];
        for s in ok {
            assert!(ProjectName::new(s).is_ok(), "{s} should be valid");
        }
        let bad: &[(&str, &str)] = &[
            ("", "must not be empty"),
            (&long64, "must be at most 63 characters"),
            ("My", "may contain only"),
            ("a_b", "may contain only"),
            ("a.b", "may contain only"),
            ("-a", "must start and end"),
            ("a-", "must start and end"),
            ("a--b", "must not contain '--'"),
            ("a:b:c", "may contain only"),
        ];
        for (s, rule) in bad {
            let e = ProjectName::new(*s).unwrap_err();
            assert!(e.rule.contains(rule), "{s}: {e}");
            assert_eq!(e.input, *s);
            assert!(e.to_string().starts_with("invalid project name"), "{e}");
        }
    }

    #[test]
    fn box_names() {
        assert!(BoxName::new("a--b").is_ok(), "boxes may contain --");
        assert!(BoxName::new("a".repeat(63)).is_ok());
        for s in ["", "A", "a.b", "-a", "b-", "a_b", "a b", "é"] {
            assert!(BoxName::new(s).is_err(), "{s:?} should be invalid");
        }
        assert!(BoxName::new("a".repeat(64)).is_err());
        let e = BoxName::new("Web").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid box name \"Web\": may contain only lowercase letters a-z, digits 0-9 and '-'"
        );
    }

    #[test]
    fn tags() {
        for s in ["env", "a.b_c-d", "_x", ".", "v1.2"] {
            assert!(TagKey::new(s).is_ok(), "{s}");
            assert!(TagValue::new(s).is_ok(), "{s}");
        }
        for s in ["", "A", "a=b", "a/b", "a b"] {
            assert!(TagKey::new(s).is_err(), "{s}");
        }
    }

    #[test]
    fn volume_names() {
        for s in ["Data", "a.b", "x_y-z", "V1"] {
            assert!(VolumeName::new(s).is_ok(), "{s}");
        }
        for s in ["", "a/b", "a b", "a:b", ".", ".."] {
            assert!(VolumeName::new(s).is_err(), "{s}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: BoxName = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(ok, "web");
        assert!(serde_json::from_str::<BoxName>("\"Web\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"web\"");
    }
}
