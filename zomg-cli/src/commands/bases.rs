//! Bases: `base list`.

use anyhow::Result;

use super::Context;
use crate::cli::BaseCommand;
use crate::output::printer;

/// `zomg base ...`.
pub async fn base(ctx: &Context, cmd: BaseCommand) -> Result<()> {
    let BaseCommand::List { output } = cmd;
    let bases = ctx.client()?.list_bases().await?;
    let mut out = printer(output.json);
    out.bases(&bases.bases)?;
    Ok(out.finish()?)
}
