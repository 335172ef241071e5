//! How the set travels. Without `[redis]` it lives in this process only: `POST /revoke`
//! adds to it and nothing else sees it. The background task drops expired entries.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Entry, Revocations};

/// How often expired entries are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Why a revocation could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {}

impl Revocations {
    /// Stores `entry` and puts it in force on this replica.
    pub async fn revoke(&self, entry: Entry) -> Result<(), RevokeError> {
        self.add([entry]);
        Ok(())
    }
}

/// Keeps the set current until `cancel`: drops expired entries.
pub async fn run(revocations: Arc<Revocations>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => revocations.expire(),
            () = cancel.cancelled() => return,
        }
    }
}
