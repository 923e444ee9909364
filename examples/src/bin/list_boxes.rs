//! Lists boxes the way `zomg list` does: the server from `--url`/`--profile`, the environment
//! and `.zomg/config.yaml`; the project from `-p`, `ZOMG_PROJECT`, the setup config, the git
//! repository or `default`.
//!
//! ```text
//! cargo run -p zomg-examples --bin list_boxes -- [--all] [-p PROJECT] [--profile NAME] [--url URL]
//! ```

use anyhow::{Context, bail};
use zomg_sdk::{
    BoxInfo, Client, ListOptions, ProjectName, ProjectScope, SetupConfig, TargetFlags, process_env,
    resolve_project, resolve_target,
};

/// The command line of this example.
#[derive(Debug, Default)]
struct Args {
    all: bool,
    project: Option<ProjectName>,
    flags: TargetFlags,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-a" | "--all" => args.all = true,
            "-p" | "--project" => args.project = Some(value()?.parse()?),
            "--profile" => args.flags.profile = Some(value()?),
            "--url" => args.flags.url = Some(value()?),
            other => bail!("unexpected argument {other:?}"),
        }
    }
    Ok(args)
}

fn print_table(boxes: &[BoxInfo], with_project: bool) {
    let mut rows = vec![
        vec!["NAME", "STATUS", "BASE", "URL", "CREATED"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    ];
    for b in boxes {
        let name = if with_project {
            format!("{}:{}", b.project, b.name)
        } else {
            b.name.to_string()
        };
        rows.push(vec![
            name,
            b.status.to_string(),
            b.base.clone(),
            b.url.clone().unwrap_or_else(|| "-".into()),
            b.created_at.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let config = SetupConfig::discover(process_env, &cwd)?;
    let target = resolve_target(&args.flags, process_env, config.as_ref())?.target;
    let project = resolve_project(args.project.as_ref(), process_env, config.as_ref(), &cwd)?;

    let client = Client::new(&target)?;
    let scope = if args.all {
        ProjectScope::All
    } else {
        ProjectScope::One(project.name.clone())
    };
    // The SDK's errors already name the server URL and what to set to use another.
    let boxes = client
        .list_all_boxes(scope, &ListOptions::default())
        .await?;
    if boxes.is_empty() {
        eprintln!(
            "no boxes in {}",
            if args.all {
                "any project"
            } else {
                project.name.as_str()
            }
        );
        return Ok(());
    }
    print_table(&boxes, args.all);
    Ok(())
}
