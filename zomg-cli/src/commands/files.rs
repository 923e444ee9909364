//! Files: `cp` (`get`, `put`) and `inject` (SPEC §6, §8).
//!
//! Which side is the box, and whether a local source is a directory, is decided here; the
//! transfer itself needs file support in the SDK, which does not exist yet.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use zomg_sdk::BoxPath;

use super::{not_available, refuse_json};
use crate::cli::{CpArgs, InjectArgs};

/// `zomg cp` / `get` / `put`.
pub async fn cp(args: CpArgs) -> Result<()> {
    refuse_json(args.output, "cp/get/put")?;
    let src = BoxPath::parse_arg(&args.src)?;
    let dest = BoxPath::parse_arg(&args.dest)?;
    match (&src, &dest) {
        (Some(_), Some(_)) => {
            bail!(
                "both {:?} and {:?} are box paths; exactly one side must be a box",
                args.src,
                args.dest
            )
        }
        (None, None) => bail!(
            "neither {:?} nor {:?} is a box path; write one side as box:/path",
            args.src,
            args.dest
        ),
        (None, Some(_)) => {
            let meta = std::fs::metadata(&args.src)
                .with_context(|| format!("cannot read {}", args.src))?;
            if meta.is_dir() && !args.recursive {
                bail!("only files are supported (directories require -r, not yet supported)");
            }
        }
        (Some(_), None) => {}
    }
    Err(not_available("cp"))
}

/// `zomg inject`.
pub async fn inject(args: InjectArgs) -> Result<()> {
    refuse_json(args.output, "inject")?;
    for (flag, path) in [
        ("--codex-auth", &args.codex_auth),
        ("--codex-toml", &args.codex_toml),
        ("--ssh-key", &args.ssh_key),
    ] {
        if let Some(path) = path {
            check_readable(flag, path)?;
        }
    }
    Err(not_available("inject"))
}

fn check_readable(flag: &str, path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("cannot read {flag} {}", path.display()))
}
