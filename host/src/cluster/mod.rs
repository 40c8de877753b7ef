//! Plugins and config pushed to every host of a cluster (`[backends] cluster`).
//!
//! The cluster's desired state is a numbered [`Revision`] in the shared store: the config text
//! if one was pushed (`tsunagi push-config`), and the sha256 of the plugin each pushed
//! connector runs (`tsunagi push`), whose bytes are stored by that sha256. A push goes to any
//! host's admin API: that host checks the new revision as it would apply it (config, plugin
//! compiled, instantiated, self-tested) and refuses it whole, storing nothing, if it does not
//! pass; otherwise it commits the revision, announces it on the bus, and waits for every live
//! host's report. Each host applies a revision as a reload on top of its own config file (its
//! `[host]` and `[backends]` stay its own), reports the outcome per connector, and shows its
//! revision on its membership card, so `/status` says how far behind each host is. A refusal on
//! one host is in the push's answer and on that host's card, never silent.
//!
//! Announcements are at most once; a periodic reconcile catches what a host missed (it was
//! down, or its subscription was silently cut, which the bus's watchdog repairs), and a host
//! starting up applies the newest revision before its connectors load.
//!
//! The cluster reaches the topology only through [`Apply`]: the topology builds the cluster,
//! never the other way round.

mod blobs;
mod sync;

pub use crate::membership::{Refused, Standing};
pub use crate::runtime::sha256_hex;
pub use blobs::BlobCache;
pub use sync::{Cluster, PushError, SyncError, summary};

use crate::config::{Config, ConfigErrors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tsunagi_backends::Millis;

/// The bus topic revisions are announced on.
pub const REVISIONS_TOPIC: &str = "revisions";
/// The bus topic a host says it reported on (so a push waiting for reports wakes at once).
pub const REPORTS_TOPIC: &str = "reports";
/// Silence after which a host's subscription checks itself (see the bus's watchdog).
pub const WATCHDOG: Duration = Duration::from_secs(4);
/// How often a host reads the newest revision whatever it heard.
pub const RECONCILE: Duration = Duration::from_secs(5);
/// How long a push waits for every live host's report.
pub const PUSH_WAIT: Duration = Duration::from_secs(15);
/// The longest pushed config text.
pub const MAX_CONFIG_BYTES: usize = 512 * 1024;

/// The cluster's desired state, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 0: nothing was ever pushed.
    pub number: u64,
    /// The pushed config's text, if one was pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Connector → sha256 of the plugin pushed for it.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
    pub pushed_at: Millis,
    /// The worker id of the host the push went to.
    pub pushed_through: String,
}

/// One push: what changes from the revision before.
#[derive(Debug, Clone)]
pub enum Change {
    /// `connector` runs these plugin bytes.
    Plugin { connector: String, bytes: Vec<u8> },
    /// The config is this text.
    Config(String),
}

/// A revision as one host applies it: the pushed config's text, and each pushed plugin as a
/// file on this host (verified against its sha256).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub revision: u64,
    pub config: Option<String>,
    pub plugins: BTreeMap<String, PathBuf>,
}

impl Overlay {
    /// The config this host runs under the overlay: the pushed text (or, if none was pushed, the
    /// file at `local`) with `local`'s `[host]` and `[backends]`, each pushed connector's plugin
    /// replaced by its file.
    pub fn config(&self, local: &Path) -> Result<Config, ConfigErrors> {
        let own = Config::load(local)?;
        let mut config = match &self.config {
            None => own,
            Some(text) => {
                // Named so errors say where the text came from; relative paths in it resolve
                // against this host's config directory.
                let shown =
                    local.with_file_name(format!("cluster-revision-{}.toml", self.revision));
                let mut pushed = Config::parse(text, &shown)?;
                pushed.host = own.host;
                pushed.backends = own.backends;
                pushed
            }
        };
        for (connector, path) in &self.plugins {
            if let Some(settings) = config.connectors.get_mut(connector) {
                settings.plugin = path.clone();
            }
        }
        Ok(config)
    }
}

/// What applying (or checking) a revision did on one host, per connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub ok: bool,
    /// Why the whole revision was refused, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub connectors: Vec<ConnectorApplied>,
}

/// One connector's part of [`Applied`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorApplied {
    pub connector: String,
    /// `swapped`, `unchanged`, `refused`, `added`, `removed` (as a reload says).
    pub outcome: String,
    /// sha256 of the plugin serving before and after.
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's report on one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub worker_id: String,
    pub revision: u64,
    #[serde(flatten)]
    pub applied: Applied,
    /// When this host had its outcome, by its clock.
    pub at: Millis,
    /// From the push to this host's outcome (in a push's answer; the hosts' clocks are
    /// assumed close).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<i64>,
}

/// What a push did: the revision it committed and every live host's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// True when every live host applied the revision.
    pub ok: bool,
    pub revision: u64,
    pub hosts: Vec<HostReport>,
    /// Live hosts that had not reported when the push stopped waiting ([`PUSH_WAIT`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// How the cluster changes what runs on this host (the topology's reloader).
#[async_trait::async_trait]
pub trait Apply: Send + Sync {
    /// What applying `overlay` would do here, changing nothing (plugins are compiled,
    /// instantiated and self-tested).
    async fn check(&self, overlay: &Overlay) -> Applied;
    /// Applies `overlay`; later reloads (a file change, `tsunagi reload`) keep it.
    async fn apply(&self, overlay: Overlay) -> Applied;
    /// The quick code compiled here for the plugin `sha256` (by its check), for the others.
    fn shared_code(&self, sha256: &str) -> Option<crate::runtime::SharedCode>;
    /// Whether this host has code for the plugin `sha256` without compiling (in memory or in
    /// its compile cache).
    fn has_code(&self, sha256: &str) -> bool;
    /// The tag of the code [`Apply::adopt_code`] takes.
    fn code_tag(&self) -> Option<String>;
    /// Takes another host's code for the plugin `bytes`, signature checked by the caller.
    fn adopt_code(&self, sha256: &str, bytes: &[u8], shared: &crate::runtime::SharedCode) -> bool;
}
