//! Data volumes: `data create|list|show|delete`.
//!
//! Names and sizes are validated by clap; the calls need volume support in the SDK, which
//! does not exist yet.

use anyhow::Result;

use super::not_available;
use crate::cli::DataCommand;

/// `zomg data ...`.
pub async fn data(cmd: DataCommand) -> Result<()> {
    Err(match cmd {
        DataCommand::Create { .. } => not_available("data create"),
        DataCommand::List { .. } => not_available("data list"),
        DataCommand::Show { .. } => not_available("data show"),
        DataCommand::Delete { .. } => not_available("data delete"),
    })
}
