//! Publishing and ports: `publish`, `unpublish`, `port list|wait` (SPEC §4).
//!
//! clap already enforces the host/subdomain/domain combinations; the calls need publish and
//! port support in the SDK, which does not exist yet.

use anyhow::Result;

use super::not_available;
use crate::cli::{PortCommand, PublishArgs, UnpublishArgs};

/// `zomg publish`.
pub async fn publish(_args: PublishArgs) -> Result<()> {
    Err(not_available("publish"))
}

/// `zomg unpublish`.
pub async fn unpublish(_args: UnpublishArgs) -> Result<()> {
    Err(not_available("unpublish"))
}

/// `zomg port list|wait`.
pub async fn port(cmd: PortCommand) -> Result<()> {
    Err(match cmd {
        PortCommand::List { .. } => not_available("port list"),
        PortCommand::Wait { .. } => not_available("port wait"),
    })
}
