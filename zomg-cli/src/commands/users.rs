//! Project users: `user list|create|update|delete`.
//!
//! `--json` is refused on `user delete` (SPEC §10); the calls need user support in the SDK,
//! which does not exist yet.

use anyhow::Result;

use super::{not_available, refuse_json};
use crate::cli::UserCommand;

/// `zomg user ...`.
pub async fn user(cmd: UserCommand) -> Result<()> {
    Err(match cmd {
        UserCommand::List { .. } => not_available("user list"),
        UserCommand::Create { .. } => not_available("user create"),
        UserCommand::Update { .. } => not_available("user update"),
        UserCommand::Delete { output, .. } => {
            refuse_json(output, "user delete")?;
            not_available("user delete")
        }
    })
}
