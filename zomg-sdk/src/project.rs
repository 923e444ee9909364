//! Which project a command works in when `-p/--project` is absent (SPEC §2).

use std::path::{Path, PathBuf};

use crate::env::var;
use crate::error::{Error, Result};
use crate::names::ProjectName;
use crate::setup::SetupConfig;

/// Where the resolved project came from (`zomg project current` can say why).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectSource {
    /// `-p/--project`.
    Flag,
    /// `ZOMG_PROJECT`.
    Env,
    /// The setup config's `project` key.
    SetupConfig,
    /// The name of this git repository root.
    GitRoot(PathBuf),
    /// Nothing selected one: `default`.
    Default,
}

/// A project with the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProject {
    /// The project.
    pub name: ProjectName,
    /// Why this one.
    pub source: ProjectSource,
}

/// Resolves the project: the flag, then `ZOMG_PROJECT`, then the setup config's `project`
/// key, then the git repository root's directory name if it is a valid project name, then
/// `default`.
///
/// The setup config step is our addition to the seed order: a `project` written into a
/// repository's `.zomg/config.yaml` is an explicit choice and outranks the guess from the
/// directory name. An invalid `ZOMG_PROJECT` or config value is an error (it was meant);
/// an unusable repository name just falls through to `default` (it was a guess).
/// `cwd` should be absolute (as `std::env::current_dir` returns it).
pub fn resolve_project(
    flag: Option<&ProjectName>,
    env: impl Fn(&str) -> Option<String>,
    config: Option<&SetupConfig>,
    cwd: &Path,
) -> Result<ResolvedProject> {
    let found = |name, source| Ok(ResolvedProject { name, source });
    if let Some(p) = flag {
        return found(p.clone(), ProjectSource::Flag);
    }
    if let Some(p) = var(&env, "ZOMG_PROJECT") {
        let name = ProjectName::new(p).map_err(|e| Error::Invalid(format!("ZOMG_PROJECT: {e}")))?;
        return found(name, ProjectSource::Env);
    }
    if let Some((c, p)) = config.and_then(|c| c.project().map(|p| (c, p))) {
        let name = ProjectName::new(p)
            .map_err(|e| Error::Config(format!("project in {}: {e}", c.path().display())))?;
        return found(name, ProjectSource::SetupConfig);
    }
    if let Some(root) = git_root(cwd) {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| ProjectName::new(n).ok());
        if let Some(name) = name {
            return found(name, ProjectSource::GitRoot(root));
        }
    }
    found(ProjectName::default_project(), ProjectSource::Default)
}

/// The nearest directory at or above `cwd` holding `.git` (a directory, or a file as in
/// worktrees and submodules). No git binary is involved.
pub fn git_root(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // case tables are tuples
mod tests {
    use super::*;
    use crate::env::map_env;

    fn p(s: &str) -> ProjectName {
        s.parse().unwrap()
    }

    #[test]
    fn precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("web-app");
        let sub = repo.join("src/deep");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let outside = tmp.path().join("plain");
        std::fs::create_dir_all(&outside).unwrap();
        let cfg = SetupConfig::from_text("/c/config.yaml", "project: from-config\n").unwrap();
        let no_project_cfg = SetupConfig::from_text("/c/config.yaml", "profile: x\n").unwrap();
        let env = map_env(&[("ZOMG_PROJECT", "from-env")]);
        let none = map_env(&[]);
        let flag = p("from-flag");

        let cases: Vec<(
            Option<&ProjectName>,
            &dyn Fn(&str) -> Option<String>,
            Option<&SetupConfig>,
            &Path,
            &str,
            ProjectSource,
        )> = vec![
            (
                Some(&flag),
                &env,
                Some(&cfg),
                &sub,
                "from-flag",
                ProjectSource::Flag,
            ),
            (None, &env, Some(&cfg), &sub, "from-env", ProjectSource::Env),
            (
                None,
                &none,
                Some(&cfg),
                &sub,
                "from-config",
                ProjectSource::SetupConfig,
            ),
            (
                None,
                &none,
                Some(&no_project_cfg),
                &sub,
                "web-app",
                ProjectSource::GitRoot(repo.clone()),
            ),
            (
                None,
                &none,
                None,
                &repo,
                "web-app",
                ProjectSource::GitRoot(repo.clone()),
            ),
            (
                None,
                &none,
                None,
                &outside,
                "default",
                ProjectSource::Default,
            ),
        ];
        for (flag, env, config, cwd, want, source) in cases {
            let r = resolve_project(flag, env, config, cwd).unwrap();
            assert_eq!(r.name, want, "{cwd:?}");
            assert_eq!(r.source, source, "{cwd:?}");
        }
    }

    #[test]
    fn invalid_repo_names_fall_back_to_default() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["My_Repo", "a--b", "repo.git", &"a".repeat(64)] {
            let repo = tmp.path().join(name);
            std::fs::create_dir_all(&repo).unwrap();
            // A worktree or submodule has a `.git` file, not a directory.
            std::fs::write(repo.join(".git"), "gitdir: /elsewhere\n").unwrap();
            assert_eq!(git_root(&repo), Some(repo.clone()));
            let r = resolve_project(None, map_env(&[]), None, &repo).unwrap();
            assert_eq!(r.source, ProjectSource::Default, "{name}");
            assert_eq!(r.name, "default");
        }
    }

    #[test]
    fn invalid_explicit_values_are_errors() {
        let e = resolve_project(
            None,
            map_env(&[("ZOMG_PROJECT", "Bad")]),
            None,
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("ZOMG_PROJECT: invalid project name \"Bad\""),
            "{e}"
        );
        let cfg = SetupConfig::from_text("/c/config.yaml", "project: a--b\n").unwrap();
        let e = resolve_project(None, map_env(&[]), Some(&cfg), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("project in /c/config.yaml: invalid project name \"a--b\""),
            "{e}"
        );
        // Empty ZOMG_PROJECT is unset.
        let r =
            resolve_project(None, map_env(&[("ZOMG_PROJECT", "")]), None, Path::new("/")).unwrap();
        assert_eq!(r.source, ProjectSource::Default);
    }
}
