//! Who runs in the cluster: with `[backends] cluster`, each host writes a card (its worker id,
//! when it started, the plugin each connector runs) every [`HEARTBEAT`], alive for three
//! heartbeats, and removes it when it stops; `/status` lists every live host and which of its
//! connectors run another plugin than this host's.

use crate::clock::SharedClock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::Millis;
use tsunagi_backends::redis::members::RedisMembers;

/// How often a host renews its card.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a card lives unless renewed: a host that died leaves the list after this.
pub const CARD_TTL: Duration = Duration::from_secs(6);

/// What a host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCard {
    pub worker_id: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    /// sha256 of the plugin each connector runs.
    pub plugins: BTreeMap<String, String>,
}

/// One host as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterMember {
    #[serde(flatten)]
    pub card: MemberCard,
    /// Since its last heartbeat, by this host's clock.
    pub heartbeat_age_ms: i64,
    pub this_host: bool,
    /// Connectors it runs with another plugin than this host (or that only one of them runs).
    pub differs_from_this_host: Vec<String>,
}

/// The cluster as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub hosts: Vec<ClusterMember>,
    /// Why the list could not be read (the hosts listed are then none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// This host's membership.
pub struct Membership {
    members: RedisMembers,
    worker_id: String,
    started_at: Millis,
    clock: SharedClock,
}

impl Membership {
    pub fn new(members: RedisMembers, worker_id: &str, clock: SharedClock) -> Self {
        Self {
            members,
            worker_id: worker_id.to_string(),
            started_at: clock.now_ms(),
            clock,
        }
    }

    async fn beat(&self, plugins: BTreeMap<String, String>) {
        let card = MemberCard {
            worker_id: self.worker_id.clone(),
            started_at: self.started_at,
            heartbeat_at: self.clock.now_ms(),
            plugins,
        };
        let text = serde_json::to_string(&card).unwrap_or_default();
        if let Err(error) = self
            .members
            .heartbeat(&self.worker_id, &text, CARD_TTL)
            .await
        {
            tracing::warn!("cannot renew this host's cluster membership: {error}");
        }
    }

    /// Renews the card every [`HEARTBEAT`] with what `plugins` says runs, until `stop`; then
    /// leaves.
    pub fn spawn(
        self: Arc<Self>,
        plugins: impl Fn() -> BTreeMap<String, String> + Send + 'static,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => self.beat(plugins()).await,
                }
            }
            if let Err(error) = self.members.leave(&self.worker_id).await {
                tracing::warn!("cannot leave the cluster (the card expires by itself): {error}");
            }
        })
    }

    /// Every live host, compared with `own` (this host's plugins).
    pub async fn status(&self, own: &BTreeMap<String, String>) -> ClusterStatus {
        let now = self.clock.now_ms();
        let cards = match self.members.members().await {
            Ok(cards) => cards,
            Err(error) => {
                return ClusterStatus {
                    hosts: Vec::new(),
                    error: Some(error.to_string()),
                };
            }
        };
        let hosts = cards
            .into_iter()
            .filter_map(
                |(member, text)| match serde_json::from_str::<MemberCard>(&text) {
                    Ok(card) => Some(card),
                    Err(error) => {
                        tracing::warn!(%member, "a cluster member's card is unreadable: {error}");
                        None
                    }
                },
            )
            .map(|card| ClusterMember {
                heartbeat_age_ms: now.saturating_sub(card.heartbeat_at),
                this_host: card.worker_id == self.worker_id,
                differs_from_this_host: differences(own, &card.plugins),
                card,
            })
            .collect();
        ClusterStatus { hosts, error: None }
    }
}

/// Connectors whose plugin differs between `own` and `theirs`, or that one of them lacks.
fn differences(own: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = own
        .keys()
        .chain(theirs.keys())
        .filter(|name| own.get(*name) != theirs.get(*name))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_changed_missing_and_extra_connectors() {
        let own = BTreeMap::from([
            ("rss".to_string(), "aa".to_string()),
            ("x".to_string(), "bb".to_string()),
        ]);
        let theirs = BTreeMap::from([
            ("rss".to_string(), "aa".to_string()),
            ("x".to_string(), "cc".to_string()),
            ("shop".to_string(), "dd".to_string()),
        ]);
        assert_eq!(differences(&own, &theirs), ["shop", "x"]);
        assert_eq!(differences(&own, &own), Vec::<String>::new());
    }
}
