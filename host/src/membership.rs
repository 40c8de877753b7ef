//! Who runs in the cluster: with `[backends] cluster`, each host writes a card (its worker id,
//! when it started, the plugin each connector runs, the cluster revision it applied and any it
//! refused) every [`HEARTBEAT`], alive for three heartbeats, and removes it when it stops;
//! `/status` lists every live host, how many revisions it is behind the newest, and which of
//! its connectors run another plugin than this host's.

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

/// Where this host stands against the cluster's revisions, for its card and `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Standing {
    /// The newest revision this host applied (0: none).
    pub revision: u64,
    /// A newer revision this host refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// A revision a host refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub revision: u64,
    pub error: String,
}

/// What a host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCard {
    pub worker_id: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    /// sha256 of the plugin each connector runs.
    pub plugins: BTreeMap<String, String>,
    /// The cluster revision it runs, and a newer one it refused.
    #[serde(flatten)]
    pub standing: Standing,
}

/// One host as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterMember {
    #[serde(flatten)]
    pub card: MemberCard,
    /// Since its last heartbeat, by this host's clock.
    pub heartbeat_age_ms: i64,
    pub this_host: bool,
    /// Revisions it has yet to apply (or refused): the newest minus the one it runs.
    pub behind: u64,
    /// Connectors it runs with another plugin than this host (or that only one of them runs).
    pub differs_from_this_host: Vec<String>,
}

/// The cluster as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The newest revision pushed to the cluster (0: none; absent when the store did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
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

    async fn beat(&self, (plugins, standing): (BTreeMap<String, String>, Standing)) {
        let card = MemberCard {
            worker_id: self.worker_id.clone(),
            started_at: self.started_at,
            heartbeat_at: self.clock.now_ms(),
            plugins,
            standing,
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

    /// Renews the card every [`HEARTBEAT`] with what `facts` says runs (plugins, and the
    /// cluster revision), until `stop`; then leaves.
    pub fn spawn(
        self: Arc<Self>,
        facts: impl Fn() -> (BTreeMap<String, String>, Standing) + Send + 'static,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => self.beat(facts()).await,
                }
            }
            if let Err(error) = self.members.leave(&self.worker_id).await {
                tracing::warn!("cannot leave the cluster (the card expires by itself): {error}");
            }
        })
    }

    /// Every live host, compared with `own` (this host's plugins) and with `newest`, the
    /// cluster's newest revision (if the store said).
    pub async fn status(
        &self,
        own: &BTreeMap<String, String>,
        newest: Option<u64>,
    ) -> ClusterStatus {
        let now = self.clock.now_ms();
        let cards = match self.members.members().await {
            Ok(cards) => cards,
            Err(error) => {
                return ClusterStatus {
                    revision: newest,
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
                behind: newest.map_or(0, |newest| newest.saturating_sub(card.standing.revision)),
                differs_from_this_host: differences(own, &card.plugins),
                card,
            })
            .collect();
        ClusterStatus {
            revision: newest,
            hosts,
            error: None,
        }
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
