//! Bases: the read-only templates boxes start from.

use zomg_sdk::{BaseInfo, BaseList};

use super::BoxService;
use super::error::CoreResult;

impl BoxService {
    /// Every base, ordered by alias and tag.
    pub fn list_bases(&self) -> CoreResult<BaseList> {
        let bases = self
            .store()
            .list_bases()?
            .into_iter()
            .map(|b| BaseInfo {
                alias: b.alias,
                tag: b.tag,
                created_at: b.created_at,
                source: b.source,
            })
            .collect();
        Ok(BaseList { bases })
    }
}
