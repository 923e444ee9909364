//! Data volumes: `data create|list|show|delete`.

use anyhow::{Result, bail};
use zomg_sdk::{CreateVolume, ProjectName, VolumeRef};

use super::Context;
use crate::cli::{DataCommand, ProjectArg};
use crate::output::{DeleteOutcome, printer};

/// The project of a volume ref: its own, else the resolved one.
fn project_of(ctx: &Context, r: &VolumeRef, arg: &ProjectArg) -> Result<ProjectName> {
    match &r.project {
        Some(p) => Ok(p.clone()),
        None => ctx.project(arg),
    }
}

/// `zomg data ...`.
pub async fn data(ctx: &Context, cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Create {
            name,
            size,
            from,
            project,
            output,
        } => {
            let project = project_of(ctx, &name, &project)?;
            if let Some(other) = from.as_ref().and_then(|f| f.project.as_ref()) {
                if *other != project {
                    bail!(
                        "--from must name a volume of project \"{project}\": volumes are copied within a project"
                    );
                }
            }
            let req = CreateVolume {
                name: name.name.to_string(),
                size_gb: size,
                from: from.map(|f| f.name.to_string()),
            };
            let v = ctx.client()?.create_volume(&project, &req).await?;
            let mut out = printer(output.json);
            out.volume_detail(&v)?;
            Ok(out.finish()?)
        }
        DataCommand::List { project, output } => {
            let project = ctx.project(&project)?;
            let volumes = ctx.client()?.list_volumes(&project).await?;
            let mut out = printer(output.json);
            out.volumes(&volumes)?;
            Ok(out.finish()?)
        }
        DataCommand::Show {
            name,
            project,
            output,
        } => {
            let project = project_of(ctx, &name, &project)?;
            let v = ctx.client()?.get_volume(&project, &name.name).await?;
            let mut out = printer(output.json);
            out.volume_detail(&v)?;
            Ok(out.finish()?)
        }
        DataCommand::Delete {
            names,
            project,
            output,
        } => {
            let client = ctx.client()?;
            let mut out = printer(output.json);
            let mut failed = 0;
            for r in &names {
                let label = r.name.to_string();
                let outcome = match project_of(ctx, r, &project) {
                    Ok(p) => match client.delete_volume(&p, &r.name).await {
                        Ok(()) => DeleteOutcome::Deleted { name: label },
                        Err(e) => DeleteOutcome::Error {
                            name: label,
                            message: e.to_string(),
                        },
                    },
                    Err(e) => DeleteOutcome::Error {
                        name: label,
                        message: format!("{e:#}"),
                    },
                };
                failed += usize::from(outcome.is_error());
                out.delete_outcome(&outcome)?;
            }
            out.finish()?;
            if failed > 0 {
                bail!("{failed} of {} volumes could not be deleted", names.len());
            }
            Ok(())
        }
    }
}
