//! Box refs and box paths: how users name a box on the command line (SPEC §2, §6, §7).
//!
//! | form | [`BoxRef`] |
//! |---|---|
//! | `name` | `Named { project: None, name }` |
//! | `project:name` | `Named { project: Some(..), name }` (canonical) |
//! | `project.name` | the same; only tried when the input has no `:` |
//! | `.` | `Current`: `ZOMG_PROJECT` + `BOX_NAME`, set inside every box |
//! | `-` | `Ephemeral { project: None }` |
//! | `project:-` | `Ephemeral { project: Some(..) }` |
//!
//! A [`BoxPath`] is `ref:/path`; the `:/` is required, which is what tells a box path from a
//! local path in `zomg cp`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::env::var;
use crate::names::{BoxName, ProjectName};

/// The forms a box ref may take, for error messages.
const REF_FORMS: &str = "expected name, project:name, project.name, \".\", \"-\" or project:-";

/// A box ref or box path that broke its rule; the message names the input and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct RefError {
    /// `box ref` or `box path`.
    pub kind: &'static str,
    /// The rejected input, verbatim.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

impl RefError {
    fn box_ref(input: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: "box ref",
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    fn box_path(input: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: "box path",
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// How a user named a box: `name`, `project:name`, `project.name`, `.`, `-` or `project:-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BoxRef {
    /// A box by name, in the given project or else the resolved one.
    Named {
        /// The explicit project (`project:name` / `project.name`), if any.
        project: Option<ProjectName>,
        /// The box name.
        name: BoxName,
    },
    /// `.`: the box this process runs in, from `ZOMG_PROJECT` and `BOX_NAME`.
    Current,
    /// `-` / `project:-`: a box created for one command and deleted after it (SPEC §7).
    Ephemeral {
        /// The explicit project (`project:-`), if any.
        project: Option<ProjectName>,
    },
}

/// A box with its project settled: what every API call takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResolvedBox {
    /// The project the box lives in.
    pub project: ProjectName,
    /// The box name.
    pub name: BoxName,
}

impl fmt::Display for ResolvedBox {
    /// The canonical `project:name` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.project, self.name)
    }
}

/// A resolved ref that may still be an ephemeral box (whose name is generated later).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolvedRef {
    /// An existing box.
    Box(ResolvedBox),
    /// An ephemeral box to create in this project.
    Ephemeral {
        /// The project to create it in.
        project: ProjectName,
    },
}

fn parse_project(input: &str, s: &str) -> Result<ProjectName, RefError> {
    ProjectName::new(s).map_err(|e| RefError::box_ref(input, e.to_string()))
}

fn parse_name(input: &str, s: &str) -> Result<BoxName, RefError> {
    BoxName::new(s).map_err(|e| RefError::box_ref(input, e.to_string()))
}

impl FromStr for BoxRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, RefError> {
        match s {
            "" => return Err(RefError::box_ref(s, format!("empty; {REF_FORMS}"))),
            "." => return Ok(BoxRef::Current),
            "-" => return Ok(BoxRef::Ephemeral { project: None }),
            _ => {}
        }
        // Neither project nor box names may contain ':' or '.', so a separator is unambiguous;
        // the colon form is tried first, and the dot form only when there is no colon at all.
        for sep in [':', '.'] {
            if !s.contains(sep) {
                continue;
            }
            let parts: Vec<&str> = s.split(sep).collect();
            let [project, name] = parts[..] else {
                return Err(RefError::box_ref(
                    s,
                    format!("more than one {sep:?}; {REF_FORMS}"),
                ));
            };
            let project = parse_project(s, project)?;
            if sep == ':' && name == "-" {
                return Ok(BoxRef::Ephemeral {
                    project: Some(project),
                });
            }
            let name = parse_name(s, name)?;
            return Ok(BoxRef::Named {
                project: Some(project),
                name,
            });
        }
        Ok(BoxRef::Named {
            project: None,
            name: parse_name(s, s)?,
        })
    }
}

impl fmt::Display for BoxRef {
    /// The canonical spelling (`project:name`, never the dot form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoxRef::Named {
                project: Some(p),
                name,
            } => write!(f, "{p}:{name}"),
            BoxRef::Named {
                project: None,
                name,
            } => write!(f, "{name}"),
            BoxRef::Current => f.write_str("."),
            BoxRef::Ephemeral { project: Some(p) } => write!(f, "{p}:-"),
            BoxRef::Ephemeral { project: None } => f.write_str("-"),
        }
    }
}

impl TryFrom<String> for BoxRef {
    type Error = RefError;
    fn try_from(s: String) -> Result<Self, RefError> {
        s.parse()
    }
}

impl From<BoxRef> for String {
    fn from(r: BoxRef) -> String {
        r.to_string()
    }
}

impl From<ResolvedBox> for BoxRef {
    fn from(b: ResolvedBox) -> Self {
        BoxRef::Named {
            project: Some(b.project),
            name: b.name,
        }
    }
}

impl BoxRef {
    /// `-` or `project:-`.
    pub fn is_ephemeral(&self) -> bool {
        matches!(self, BoxRef::Ephemeral { .. })
    }

    /// Settles the project and name of a ref that names an existing box.
    ///
    /// `default_project` is the project resolved from `-p`/`ZOMG_PROJECT`/git (see
    /// [`crate::resolve_project`]); `env` looks up `ZOMG_PROJECT` and `BOX_NAME` for `.`.
    /// An ephemeral ref is an error here; commands that accept `-` use [`BoxRef::resolve_ref`].
    pub fn resolve(
        &self,
        default_project: &ProjectName,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedBox, RefError> {
        match self.resolve_ref(default_project, env)? {
            ResolvedRef::Box(b) => Ok(b),
            ResolvedRef::Ephemeral { .. } => Err(RefError::box_ref(
                &self.to_string(),
                "an ephemeral box is only allowed with exec, console and cp/get/put",
            )),
        }
    }

    /// Like [`BoxRef::resolve`], but an ephemeral ref resolves to the project to create it in.
    pub fn resolve_ref(
        &self,
        default_project: &ProjectName,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedRef, RefError> {
        Ok(match self {
            BoxRef::Named { project, name } => ResolvedRef::Box(ResolvedBox {
                project: project.clone().unwrap_or_else(|| default_project.clone()),
                name: name.clone(),
            }),
            BoxRef::Ephemeral { project } => ResolvedRef::Ephemeral {
                project: project.clone().unwrap_or_else(|| default_project.clone()),
            },
            BoxRef::Current => ResolvedRef::Box(current_box(&env)?),
        })
    }
}

/// The box this process runs in: `ZOMG_PROJECT` + `BOX_NAME`, both required.
fn current_box(env: &impl Fn(&str) -> Option<String>) -> Result<ResolvedBox, RefError> {
    let get = |key: &str| {
        var(env, key).ok_or_else(|| {
            RefError::box_ref(
                ".",
                format!(
                    "{key} is not set (\".\" names the current box and works only inside a box)"
                ),
            )
        })
    };
    let name = get("BOX_NAME")?;
    let project = get("ZOMG_PROJECT")?;
    let bad = |key: &str, e: crate::names::NameError| RefError::box_ref(".", format!("{key}: {e}"));
    Ok(ResolvedBox {
        project: ProjectName::new(project).map_err(|e| bad("ZOMG_PROJECT", e))?,
        name: BoxName::new(name).map_err(|e| bad("BOX_NAME", e))?,
    })
}

/// The generated name of an ephemeral box: `ephemeral-<pid>-<millis>` (SPEC §7).
pub fn ephemeral_box_name(pid: u32, unix_millis: u64) -> BoxName {
    BoxName::new(format!("ephemeral-{pid}-{unix_millis}"))
        .expect("digits and '-' always make a valid box name")
}

/// A file on a box: `ref:/path` (`box:/p`, `project:box:/p`, `.:/p`, `-:/p`, `project:-:/p`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoxPath {
    /// The box.
    pub box_ref: BoxRef,
    /// The absolute path inside the box (always starts with `/`).
    pub path: String,
}

impl BoxPath {
    /// Classifies one `zomg cp` argument: `Ok(Some(_))` for a box path, `Ok(None)` for a local
    /// path, an error for something that is meant as a box path but is not a valid one.
    ///
    /// An argument is a box path when it contains `:/` and the text before the first `:/`
    /// has no `/` (refs never do, so `./a:/b` and `/tmp/x:/y` stay local). `web:tmp/x`,
    /// without the `:/`, is a local path, as SPEC §6 requires.
    pub fn parse_arg(arg: &str) -> Result<Option<BoxPath>, RefError> {
        let Some(i) = arg.find(":/") else {
            return Ok(None);
        };
        if arg[..i].contains('/') {
            return Ok(None);
        }
        let box_ref: BoxRef = arg[..i]
            .parse()
            .map_err(|e: RefError| RefError::box_path(arg, e.to_string()))?;
        Ok(Some(BoxPath {
            box_ref,
            path: arg[i + 1..].to_owned(),
        }))
    }
}

impl FromStr for BoxPath {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, RefError> {
        BoxPath::parse_arg(s)?.ok_or_else(|| {
            RefError::box_path(
                s,
                "expected <box>:/<absolute path> (the \":/\" is required)",
            )
        })
    }
}

impl fmt::Display for BoxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.box_ref, self.path)
    }
}

impl TryFrom<String> for BoxPath {
    type Error = RefError;
    fn try_from(s: String) -> Result<Self, RefError> {
        s.parse()
    }
}

impl From<BoxPath> for String {
    fn from(p: BoxPath) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::map_env;

    fn p(s: &str) -> ProjectName {
        s.parse().unwrap()
    }
    fn b(s: &str) -> BoxName {
        s.parse().unwrap()
    }
    fn named(project: Option<&str>, name: &str) -> BoxRef {
        BoxRef::Named {
            project: project.map(p),
            name: b(name),
        }
    }

    #[test]
    fn parses_every_form() {
        let long63 = "a".repeat(63);
        let cases: Vec<(&str, BoxRef, &str)> = vec![
            ("web", named(None, "web"), "web"),
            ("web-1", named(None, "web-1"), "web-1"),
            ("a--b", named(None, "a--b"), "a--b"),
            ("proj:web", named(Some("proj"), "web"), "proj:web"),
            ("proj.web", named(Some("proj"), "web"), "proj:web"),
            (".", BoxRef::Current, "."),
            ("-", BoxRef::Ephemeral { project: None }, "-"),
            (
                "proj:-",
                BoxRef::Ephemeral {
                    project: Some(p("proj")),
                },
                "proj:-",
            ),
            (&long63, named(None, &long63), &long63),
        ];
        for (input, want, canonical) in cases {
            let got: BoxRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
            assert_eq!(got.to_string(), canonical, "{input}");
            assert_eq!(canonical.parse::<BoxRef>().unwrap(), want, "{canonical}");
        }
    }

    #[test]
    fn rejects_bad_refs_naming_input_and_rule() {
        let long64 = "a".repeat(64);
        let long64_with_project = format!("p:{long64}");
        let cases: Vec<(&str, &str)> = vec![
            ("", "empty; expected name"),
            ("a:b:c", "more than one ':'"),
            ("a.b.c", "more than one '.'"),
            ("a:b.c", "invalid box name \"b.c\""),
            (
                "a--b:web",
                "invalid project name \"a--b\": must not contain '--'",
            ),
            ("a--b.web", "must not contain '--'"),
            (
                "Web",
                "invalid box name \"Web\": may contain only lowercase",
            ),
            ("Proj:web", "invalid project name \"Proj\""),
            (":web", "invalid project name \"\": must not be empty"),
            ("proj:", "invalid box name \"\": must not be empty"),
            (".web", "invalid project name \"\""),
            ("proj.", "invalid box name \"\""),
            ("proj.-", "invalid box name \"-\""),
            ("--", "invalid box name \"--\""),
            ("..", "more than one '.'"),
            ("-web", "must start and end"),
            (&long64, "must be at most 63 characters"),
            (&long64_with_project, "must be at most 63 characters"),
            ("web:/p", "invalid box name \"/p\""),
        ];
        for (input, want) in cases {
            let e = input.parse::<BoxRef>().unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("invalid box ref {input:?}: ")),
                "{input}: {msg}"
            );
            assert!(msg.contains(want), "{input}: {msg}");
            assert_eq!(e.input, input);
        }
    }

    #[test]
    fn resolves_against_default_project_and_env() {
        let default = p("mine");
        let env = map_env(&[("ZOMG_PROJECT", "inner"), ("BOX_NAME", "self")]);
        let rb = |project: &str, name: &str| ResolvedBox {
            project: p(project),
            name: b(name),
        };
        let cases = [
            ("web", ResolvedRef::Box(rb("mine", "web"))),
            ("other:web", ResolvedRef::Box(rb("other", "web"))),
            ("other.web", ResolvedRef::Box(rb("other", "web"))),
            (".", ResolvedRef::Box(rb("inner", "self"))),
            ("-", ResolvedRef::Ephemeral { project: p("mine") }),
            (
                "other:-",
                ResolvedRef::Ephemeral {
                    project: p("other"),
                },
            ),
        ];
        for (input, want) in cases {
            let r: BoxRef = input.parse().unwrap();
            assert_eq!(r.resolve_ref(&default, &env).unwrap(), want, "{input}");
            match want {
                ResolvedRef::Box(want) => assert_eq!(r.resolve(&default, &env).unwrap(), want),
                ResolvedRef::Ephemeral { .. } => {
                    assert!(r.is_ephemeral());
                    let e = r.resolve(&default, &env).unwrap_err().to_string();
                    assert!(e.contains("ephemeral box is only allowed"), "{e}");
                }
            }
        }
        assert_eq!(rb("p", "b").to_string(), "p:b");
    }

    #[test]
    fn current_box_needs_both_variables() {
        let default = p("mine");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "BOX_NAME is not set"),
            (vec![("ZOMG_PROJECT", "p")], "BOX_NAME is not set"),
            (
                vec![("ZOMG_PROJECT", "p"), ("BOX_NAME", "")],
                "BOX_NAME is not set",
            ),
            (vec![("BOX_NAME", "web")], "ZOMG_PROJECT is not set"),
            (
                vec![("BOX_NAME", "Web"), ("ZOMG_PROJECT", "p")],
                "BOX_NAME: invalid box name \"Web\"",
            ),
            (
                vec![("BOX_NAME", "web"), ("ZOMG_PROJECT", "a--b")],
                "ZOMG_PROJECT: invalid project name \"a--b\"",
            ),
        ];
        for (vars, want) in cases {
            let e = BoxRef::Current
                .resolve(&default, map_env(&vars))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid box ref \".\": "), "{e}");
            assert!(e.contains(want), "{vars:?}: {e}");
        }
    }

    #[test]
    fn box_paths() {
        let cases: Vec<(&str, Option<(BoxRef, &str)>)> = vec![
            ("web:/p", Some((named(None, "web"), "/p"))),
            ("web:/", Some((named(None, "web"), "/"))),
            (
                "proj:web:/etc/x y",
                Some((named(Some("proj"), "web"), "/etc/x y")),
            ),
            ("proj.web:/p", Some((named(Some("proj"), "web"), "/p"))),
            (".:/p", Some((BoxRef::Current, "/p"))),
            ("-:/p", Some((BoxRef::Ephemeral { project: None }, "/p"))),
            (
                "proj:-:/p",
                Some((
                    BoxRef::Ephemeral {
                        project: Some(p("proj")),
                    },
                    "/p",
                )),
            ),
            ("web:/a:/b", Some((named(None, "web"), "/a:/b"))),
            ("file.txt", None),
            ("/abs/file", None),
            ("./rel:/x", None),
            ("/tmp/x:/y", None),
            ("web:tmp/x", None),
            ("web:", None),
            ("-", None),
        ];
        for (input, want) in cases {
            let got = BoxPath::parse_arg(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let want = want.map(|(box_ref, path)| BoxPath {
                box_ref,
                path: path.to_owned(),
            });
            assert_eq!(got, want, "{input}");
            if let Some(bp) = got {
                assert_eq!(bp.to_string().parse::<BoxPath>().unwrap(), bp);
            }
        }
        assert_eq!(
            "proj.web:/p".parse::<BoxPath>().unwrap().to_string(),
            "proj:web:/p"
        );
    }

    #[test]
    fn bad_box_paths() {
        let cases = [
            (
                "Web:/p",
                "invalid box path \"Web:/p\": invalid box ref \"Web\"",
            ),
            (":/p", "invalid box ref \"\": empty"),
            ("a:b:c:/p", "more than one ':'"),
        ];
        for (input, want) in cases {
            let e = BoxPath::parse_arg(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
        let e = "web:tmp".parse::<BoxPath>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid box path \"web:tmp\": expected <box>:/<absolute path> (the \":/\" is required)"
        );
    }

    #[test]
    fn ephemeral_names_are_valid() {
        assert_eq!(
            ephemeral_box_name(4242, 1_764_000_000_000).as_str(),
            "ephemeral-4242-1764000000000"
        );
        assert!(ephemeral_box_name(u32::MAX, u64::MAX).as_str().len() <= 63);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r: BoxRef = serde_json::from_str("\"p.web\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"p:web\"");
        assert!(serde_json::from_str::<BoxRef>("\"a:b:c\"").is_err());
        let bp: BoxPath = serde_json::from_str("\"web:/x\"").unwrap();
        assert_eq!(bp.path, "/x");
    }
}
