//! The retention of finished jobs, by state, kept in the store so that whichever node leads
//! prunes by the same rule: seeded from a node's settings where absent, set at run time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tokens::record_action;
use super::{OpError, OpResult};
use crate::config::Retention;
use crate::store::Store;

/// The setting's name in the store.
const KEY: &str = "retention";

/// The retention as stored and as the API shows it: seconds per finished state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetentionSecs {
    pub completed_secs: u64,
    pub discarded_secs: u64,
    pub cancelled_secs: u64,
}

impl From<Retention> for RetentionSecs {
    fn from(retention: Retention) -> RetentionSecs {
        RetentionSecs {
            completed_secs: retention.completed.as_secs(),
            discarded_secs: retention.discarded.as_secs(),
            cancelled_secs: retention.cancelled.as_secs(),
        }
    }
}

impl From<RetentionSecs> for Retention {
    fn from(secs: RetentionSecs) -> Retention {
        Retention {
            completed: Duration::from_secs(secs.completed_secs),
            discarded: Duration::from_secs(secs.discarded_secs),
            cancelled: Duration::from_secs(secs.cancelled_secs),
        }
    }
}

/// The longest a finished job may be kept: ten years.
const MAX_RETENTION_SECS: u64 = 10 * 365 * 24 * 3600;

fn check(secs: &RetentionSecs) -> OpResult<()> {
    for (state, value) in [
        ("completed", secs.completed_secs),
        ("discarded", secs.discarded_secs),
        ("cancelled", secs.cancelled_secs),
    ] {
        if !(60..=MAX_RETENTION_SECS).contains(&value) {
            return Err(OpError::Invalid(format!(
                "the retention of {state} jobs must be a minute to ten years, not {value} s"
            )));
        }
    }
    Ok(())
}

/// The retention in the store, if one was stored.
pub async fn stored_retention(store: &dyn Store) -> OpResult<Option<Retention>> {
    let Some(text) = store.setting_get(KEY).await? else {
        return Ok(None);
    };
    let secs: RetentionSecs = serde_json::from_str(&text).map_err(|error| {
        OpError::Invalid(format!("the stored retention is unreadable: {error}"))
    })?;
    Ok(Some(secs.into()))
}

/// Sets the retention every leader prunes by.
pub async fn set_retention(store: &dyn Store, secs: RetentionSecs, actor: &str) -> OpResult<()> {
    check(&secs)?;
    let text = serde_json::to_string(&secs).expect("retention serializes");
    store.setting_put(KEY, &text, true).await?;
    record_action(store, actor, "retention.set", &text).await;
    Ok(())
}

/// Stores a node's retention where the store has none; returns the one in force.
pub async fn seed_retention(store: &dyn Store, retention: Retention) -> OpResult<Retention> {
    let secs = RetentionSecs::from(retention);
    check(&secs)?;
    let text = serde_json::to_string(&secs).expect("retention serializes");
    if store.setting_put(KEY, &text, false).await? {
        return Ok(retention);
    }
    Ok(stored_retention(store).await?.unwrap_or(retention))
}
