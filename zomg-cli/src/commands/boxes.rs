//! Box lifecycle: `create`, `list`, `show`, `update`, `delete`, `stop`, `resume` (SPEC §3).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use zomg_sdk::{
    BoxRef, Client, CreateBox, DeleteState, ListOptions, ProjectScope, ResolvedBox, UpdateBox,
};

use super::Context;
use crate::cli::{BoxCmdArgs, CreateArgs, DeleteArgs, ListArgs, ShowArgs, UpdateArgs};
use crate::output::{DeleteOutcome, printer};
use crate::parse::Tag;

fn tag_map(tags: Vec<Tag>) -> BTreeMap<String, String> {
    tags.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// `zomg create`.
pub async fn create(ctx: &Context, args: CreateArgs) -> Result<()> {
    if args.base.is_some() && args.fork.is_some() {
        bail!("--base cannot be used with --fork");
    }
    let BoxRef::Named { .. } = args.name else {
        bail!(
            "create needs a box name (or project:name), not {:?}",
            args.name.to_string()
        );
    };
    let target = ctx.resolve(&args.name, &args.project)?;
    let body = CreateBox {
        name: target.name.to_string(),
        base: args.base,
        fork: args.fork.map(String::from),
        tags: tag_map(args.tags),
        environment: args.env.into_iter().collect(),
        data_mounts: args.data,
        cpus: args.cpu,
        ram_mb: args.memory,
        storage_gb: args.storage,
        port: args.port,
        termination_grace_period_seconds: None,
    };
    let created = ctx.client()?.create_box(&target.project, &body).await?;
    let mut out = printer(args.output.json);
    out.box_detail(&created)?;
    Ok(out.finish()?)
}

/// `zomg list`.
pub async fn list(ctx: &Context, args: ListArgs) -> Result<()> {
    let scope = if args.all {
        ProjectScope::All
    } else {
        ProjectScope::One(ctx.project(&args.project)?)
    };
    let options = ListOptions {
        tags: tag_map(args.tags),
        ..Default::default()
    };
    let boxes = ctx.client()?.list_all_boxes(scope, &options).await?;
    let mut out = printer(args.output.json);
    out.boxes(&boxes, args.quiet, args.all)?;
    Ok(out.finish()?)
}

/// `zomg show`.
pub async fn show(ctx: &Context, args: ShowArgs) -> Result<()> {
    let target = ctx.resolve(&args.target, &args.project)?;
    let b = ctx.client()?.get_box(&target.project, &target.name).await?;
    let mut out = printer(args.output.json);
    out.box_detail(&b)?;
    Ok(out.finish()?)
}

/// `zomg update`: positional settings and `--env` become one map, sent with the tags.
pub async fn update(ctx: &Context, args: UpdateArgs) -> Result<()> {
    let target = ctx.resolve(&args.target, &args.project)?;
    let body = UpdateBox {
        environment: args.settings.into_iter().chain(args.env).collect(),
        tags: tag_map(args.tags),
    };
    let b = ctx
        .client()?
        .update_box(&target.project, &target.name, &body)
        .await?;
    let mut out = printer(args.output.json);
    out.box_detail(&b)?;
    Ok(out.finish()?)
}

/// `zomg stop`.
pub async fn stop(ctx: &Context, args: BoxCmdArgs) -> Result<()> {
    let target = ctx.resolve(&args.target, &args.project)?;
    let b = ctx
        .client()?
        .stop_box(&target.project, &target.name)
        .await?;
    let mut out = printer(args.output.json);
    out.box_status(&b)?;
    Ok(out.finish()?)
}

/// `zomg resume`.
pub async fn resume(ctx: &Context, args: BoxCmdArgs) -> Result<()> {
    let target = ctx.resolve(&args.target, &args.project)?;
    let b = ctx
        .client()?
        .resume_box(&target.project, &target.name)
        .await?;
    let mut out = printer(args.output.json);
    out.box_status(&b)?;
    Ok(out.finish()?)
}

/// `zomg delete`: one outcome line per box; any error makes the command fail.
pub async fn delete(ctx: &Context, args: DeleteArgs) -> Result<()> {
    let client = ctx.client()?;
    let wait = args.wait.then(|| Duration::from_secs(args.wait_timeout));
    let mut out = printer(args.output.json);
    let mut failed = 0;
    for r in &args.targets {
        let outcome = match ctx.resolve(r, &args.project) {
            Ok(target) => delete_one(&client, &target, args.force, wait).await,
            Err(e) => DeleteOutcome::Error {
                name: r.to_string(),
                message: format!("{e:#}"),
            },
        };
        failed += usize::from(outcome.is_error());
        out.delete_outcome(&outcome)?;
    }
    out.finish()?;
    if failed > 0 {
        bail!(
            "{failed} of {} boxes could not be deleted",
            args.targets.len()
        );
    }
    Ok(())
}

/// Deletes one box and, with `wait`, polls its delete-status until it settles.
async fn delete_one(
    client: &Client,
    target: &ResolvedBox,
    force: bool,
    wait: Option<Duration>,
) -> DeleteOutcome {
    let name = target.name.to_string();
    let error = |message: String| DeleteOutcome::Error {
        name: name.clone(),
        message,
    };
    let mut status = match client
        .delete_box(&target.project, &target.name, force)
        .await
    {
        Ok(s) => s,
        Err(e) => return error(e.to_string()),
    };
    if let (DeleteState::Deleting, Some(timeout)) = (status.status, wait) {
        status = match client
            .wait_deleted(&target.project, &target.name, timeout)
            .await
        {
            Ok(s) => s,
            Err(e) => return error(e.to_string()),
        };
    }
    match status.status {
        DeleteState::Deleted => DeleteOutcome::Deleted { name },
        DeleteState::Deleting => DeleteOutcome::Deleting { name },
        DeleteState::Failed => error(
            status
                .message
                .unwrap_or_else(|| "cleanup failed; manual repair may be needed".into()),
        ),
        DeleteState::Active => error("the box still exists after delete".into()),
    }
}
