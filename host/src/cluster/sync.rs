//! One host's part in the cluster's revisions: the newest one at boot, a reconcile on every
//! announcement and every [`RECONCILE`], and pushes (check here, commit, announce, gather
//! every live host's report). See the module above for the whole flow.

use super::{
    Applied, Apply, BlobCache, Change, HostReport, MAX_CONFIG_BYTES, Overlay, PUSH_WAIT,
    PushReport, RECONCILE, REPORTS_TOPIC, REVISIONS_TOPIC, Refused, Revision, Standing, WATCHDOG,
};
use crate::clock::SharedClock;
use crate::outage::StoreOutage;
use crate::runtime::{MAX_PLUGIN_BYTES, SharedCode, sha256_hex};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::BackendError;
use tsunagi_backends::redis::RedisStore;
use tsunagi_backends::redis::bus::RedisBus;
use tsunagi_backends::redis::members::RedisMembers;
use tsunagi_backends::redis::revisions::{KEPT_REVISIONS, RedisRevisions};

/// How often a waiting push reads the reports again, in case an announcement was missed.
const REPORTS_REREAD: Duration = Duration::from_millis(250);
/// Commits tried when other pushes keep landing first.
const COMMIT_TRIES: usize = 4;
/// How long a stored plugin blob that no kept revision names stays (a push stores its blob
/// before it commits; a prune must not take it meanwhile).
const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// Why a revision could not be read or made into files here.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] BackendError),
    #[error("cluster revision {0} is no longer in the store (newer ones replaced it)")]
    Gone(u64),
    #[error("cluster revision {number} is unreadable: {reason}")]
    Unreadable { number: u64, reason: String },
    #[error("plugin blob {sha256} (connector '{connector}') is not in the cluster store")]
    MissingBlob { connector: String, sha256: String },
    #[error("cannot write plugin blob {sha256} to {}: {source}", dir.display())]
    Cache {
        sha256: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a push was not committed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("this host is not in a cluster ([backends] cluster is not set)")]
    NotInCluster,
    #[error("no connector named '{0}' in the cluster's config")]
    UnknownConnector(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{summary}; nothing was stored or announced")]
    Refused { summary: String, applied: Applied },
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("other pushes kept landing first; push again")]
    Contended,
}

impl From<BackendError> for PushError {
    fn from(error: BackendError) -> Self {
        Self::Sync(SyncError::Store(error))
    }
}

/// This host in the cluster's revisions.
pub struct Cluster {
    revisions: RedisRevisions,
    bus: RedisBus,
    members: RedisMembers,
    worker_id: String,
    /// This host's own config file (a revision applies on top of it).
    config_path: PathBuf,
    blobs: BlobCache,
    clock: SharedClock,
    standing: Mutex<Standing>,
    /// The key code shared through the store is signed with (`backends.cluster_key`).
    code_key: Option<Arc<[u8]>>,
    /// One revision applied at a time (a push's own and the reconcile's), and whether the store
    /// answered the last reconcile (one log line per outage).
    applying: tokio::sync::Mutex<StoreOutage>,
    /// The last revision that could not be fetched and why: said once, not every reconcile.
    unfetched: Mutex<Option<(u64, String)>>,
}

impl Cluster {
    pub fn new(
        store: RedisStore,
        worker_id: &str,
        config_path: PathBuf,
        blobs: BlobCache,
        clock: SharedClock,
    ) -> Self {
        Self {
            code_key: None,
            revisions: RedisRevisions::new(store.clone()),
            bus: RedisBus::new(store.clone()),
            members: RedisMembers::new(store),
            worker_id: worker_id.to_string(),
            config_path,
            blobs,
            clock,
            standing: Mutex::new(Standing::default()),
            applying: tokio::sync::Mutex::new(StoreOutage::new(
                "the cluster's reconcile",
                RECONCILE,
            )),
            unfetched: Mutex::new(None),
        }
    }

    /// Shares and takes compiled code signed with `key` (every host holds it, the store does
    /// not): a pushed plugin then is compiled once, where the push lands.
    pub fn with_code_key(mut self, key: &[u8]) -> Self {
        self.code_key = Some(key.into());
        self
    }

    /// The revision this host runs, and any newer one it refused.
    pub fn standing(&self) -> Standing {
        lock(&self.standing).clone()
    }

    /// The newest revision in the store (0: none), for `/status`.
    pub async fn newest(&self) -> Result<u64, BackendError> {
        self.revisions.latest().await
    }

    /// The newest revision as files here, for a host starting up; `None` when nothing was
    /// pushed, or when it cannot be had now (the reconcile tries again once the host runs).
    pub async fn boot(&self) -> Option<Overlay> {
        match self.newest_overlay().await {
            Ok(overlay) => overlay,
            Err(error) => {
                tracing::warn!(
                    "starting without the cluster's newest revision (the reconcile applies it \
                     later): {error}"
                );
                None
            }
        }
    }

    /// The host started with `revision` (from [`Cluster::boot`]).
    pub fn booted(&self, revision: u64) {
        lock(&self.standing).revision = revision;
    }

    async fn newest_overlay(&self) -> Result<Option<Overlay>, SyncError> {
        let latest = self.revisions.latest().await?;
        if latest == 0 {
            return Ok(None);
        }
        let revision = self.read(latest).await?;
        Ok(Some(self.materialize(&revision, None).await?))
    }

    async fn read(&self, number: u64) -> Result<Revision, SyncError> {
        let text = self
            .revisions
            .revision(number)
            .await?
            .ok_or(SyncError::Gone(number))?;
        let mut revision: Revision =
            serde_json::from_str(&text).map_err(|error| SyncError::Unreadable {
                number,
                reason: error.to_string(),
            })?;
        revision.number = number;
        Ok(revision)
    }

    /// `revision` with each pushed plugin as a verified file here (fetched when missing, with
    /// the code compiled for it if another host shared it and `applier` can take it).
    async fn materialize(
        &self,
        revision: &Revision,
        applier: Option<&dyn Apply>,
    ) -> Result<Overlay, SyncError> {
        let mut plugins = std::collections::BTreeMap::new();
        for (connector, sha256) in &revision.plugins {
            let path = match self.blobs.cached(sha256) {
                Some(path) => {
                    if let Some(applier) = applier
                        && self.wants_code(applier, sha256)
                        && let Ok(bytes) = std::fs::read(&path)
                    {
                        self.take_code(applier, sha256, &bytes).await;
                    }
                    path
                }
                None => {
                    let bytes = self
                        .revisions
                        .blob(sha256, MAX_PLUGIN_BYTES)
                        .await?
                        .ok_or_else(|| SyncError::MissingBlob {
                            connector: connector.clone(),
                            sha256: sha256.clone(),
                        })?;
                    if let Some(applier) = applier
                        && self.wants_code(applier, sha256)
                    {
                        self.take_code(applier, sha256, &bytes).await;
                    }
                    self.write_blob(sha256, &bytes)?
                }
            };
            plugins.insert(connector.clone(), path);
        }
        Ok(Overlay {
            revision: revision.number,
            config: revision.config.clone(),
            plugins,
        })
    }

    fn write_blob(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, SyncError> {
        self.blobs
            .write(sha256, bytes)
            .map_err(|source| SyncError::Cache {
                sha256: sha256.to_string(),
                dir: self.blobs.dir().to_path_buf(),
                source,
            })
    }

    /// Listens for announcements until `stop`, reconciling on each one and every
    /// [`RECONCILE`] (at once, too: something may have been pushed since the boot).
    pub fn spawn(
        self: Arc<Self>,
        applier: Arc<dyn Apply>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut announcements = self.bus.subscribe(REVISIONS_TOPIC, WATCHDOG);
            let mut ticks = tokio::time::interval(RECONCILE);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    heard = announcements.next() => {
                        if heard.is_none() {
                            // The listener ended (it never does by itself): listen again.
                            announcements = self.bus.subscribe(REVISIONS_TOPIC, WATCHDOG);
                        }
                        self.reconcile(&*applier).await;
                    }
                    _ = ticks.tick() => self.reconcile(&*applier).await,
                }
            }
        })
    }

    /// Applies the newest revision unless this host runs it or refused it, and reports.
    pub async fn reconcile(&self, applier: &dyn Apply) {
        let mut outage = self.applying.lock().await;
        let latest = match self.revisions.latest().await {
            Ok(latest) => {
                outage.answered();
                latest
            }
            Err(error) => {
                outage.failed(&error);
                return;
            }
        };
        let standing = self.standing();
        let refused_already = standing
            .refused
            .as_ref()
            .is_some_and(|refused| refused.revision >= latest);
        if latest <= standing.revision || refused_already {
            return;
        }
        let started = std::time::Instant::now();
        let overlay = match self.read(latest).await {
            Ok(revision) => self.materialize(&revision, Some(applier)).await,
            Err(error) => Err(error),
        };
        let fetched = started.elapsed();
        let applied = match overlay {
            Ok(overlay) => applier.apply(overlay).await,
            // The store may be coming back, or a blob was being written: the next reconcile
            // tries again.
            Err(error) => {
                let failure = Some((latest, error.to_string()));
                let mut unfetched = lock(&self.unfetched);
                if *unfetched == failure {
                    tracing::debug!(
                        revision = latest,
                        "still cannot fetch the cluster's revision"
                    );
                } else {
                    tracing::warn!(
                        revision = latest,
                        "cannot fetch the cluster's revision (tried again every reconcile): \
                         {error}"
                    );
                    *unfetched = failure;
                }
                return;
            }
        };
        *lock(&self.unfetched) = None;
        {
            let mut standing = lock(&self.standing);
            if applied.ok {
                standing.revision = latest;
                standing.refused = None;
            } else {
                standing.refused = Some(Refused {
                    revision: latest,
                    error: summary(&applied),
                });
            }
        }
        if applied.ok {
            tracing::info!(
                revision = latest,
                fetch_ms = fetched.as_millis() as u64,
                apply_ms = (started.elapsed() - fetched).as_millis() as u64,
                "applied the cluster's revision"
            );
        } else {
            tracing::error!(
                revision = latest,
                "refused the cluster's revision; the previous \
                version keeps serving: {}",
                summary(&applied)
            );
        }
        self.report(latest, applied).await;
    }

    async fn report(&self, revision: u64, applied: Applied) {
        let report = HostReport {
            worker_id: self.worker_id.clone(),
            revision,
            applied,
            at: self.clock.now_ms(),
            took_ms: None,
        };
        let text = serde_json::to_string(&report).unwrap_or_default();
        let text = if text.len() > tsunagi_backends::redis::revisions::MAX_REPORT_BYTES {
            // Connectors' errors are capped already; a host of very many connectors says less.
            let short = HostReport {
                applied: Applied {
                    ok: report.applied.ok,
                    error: Some(summary(&report.applied)),
                    connectors: Vec::new(),
                },
                ..report
            };
            serde_json::to_string(&short).unwrap_or_default()
        } else {
            text
        };
        if let Err(error) = self
            .revisions
            .report(revision, &self.worker_id, &text)
            .await
        {
            tracing::warn!(revision, "cannot write this host's report: {error}");
            return;
        }
        // Wakes a push waiting for reports; it reads them again anyway.
        let _ = self.bus.publish(REPORTS_TOPIC, &revision.to_string()).await;
    }

    /// Pushes `change` to every host: checks it here as this host would apply it (refusing it
    /// whole, nothing stored, if it does not pass), commits it as the next revision, announces
    /// it, applies it here and waits up to [`PUSH_WAIT`] for every live host's report.
    pub async fn push(&self, applier: &dyn Apply, change: Change) -> Result<PushReport, PushError> {
        // Listening before the commit, so no host's report is announced unheard.
        let mut reported = self.bus.subscribe(REPORTS_TOPIC, WATCHDOG);
        let blob = match &change {
            Change::Plugin { bytes, .. } => {
                if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_PLUGIN_BYTES {
                    return Err(PushError::TooLarge(format!(
                        "a plugin of {} bytes is over the limit of {MAX_PLUGIN_BYTES}",
                        bytes.len()
                    )));
                }
                let sha256 = sha256_hex(bytes);
                self.write_blob(&sha256, bytes)?;
                Some(sha256)
            }
            Change::Config(text) => {
                if text.len() > MAX_CONFIG_BYTES {
                    return Err(PushError::TooLarge(format!(
                        "a config of {} bytes is over the limit of {MAX_CONFIG_BYTES}",
                        text.len()
                    )));
                }
                None
            }
        };
        let mut committed = None;
        let mut pushed_at = 0;
        for _ in 0..COMMIT_TRIES {
            let read = self.revisions.latest().await?;
            let base = if read == 0 {
                Revision::default()
            } else {
                self.read(read).await?
            };
            let mut next = Revision {
                number: read + 1,
                config: base.config,
                plugins: base.plugins,
                pushed_at: self.clock.now_ms(),
                pushed_through: self.worker_id.clone(),
            };
            match &change {
                Change::Plugin { connector, .. } => {
                    let sha256 = blob.clone().unwrap_or_default();
                    next.plugins.insert(connector.clone(), sha256);
                }
                Change::Config(text) => next.config = Some(text.clone()),
            }
            let mut overlay = self.materialize(&next, None).await?;
            let connectors: BTreeSet<String> = match overlay.config(&self.config_path) {
                Ok(config) => config.connectors.into_keys().collect(),
                Err(errors) => {
                    let applied = Applied {
                        ok: false,
                        error: Some(format!("config refused: {errors}")),
                        connectors: Vec::new(),
                    };
                    return Err(PushError::Refused {
                        summary: summary(&applied),
                        applied,
                    });
                }
            };
            if let Change::Plugin { connector, .. } = &change
                && !connectors.contains(connector)
            {
                return Err(PushError::UnknownConnector(connector.clone()));
            }
            // A pushed plugin follows its connector out of the config.
            next.plugins
                .retain(|connector, _| connectors.contains(connector));
            overlay
                .plugins
                .retain(|connector, _| connectors.contains(connector));
            let checked = applier.check(&overlay).await;
            if !checked.ok {
                return Err(PushError::Refused {
                    summary: summary(&checked),
                    applied: checked,
                });
            }
            if let (Some(sha256), Change::Plugin { bytes, .. }) = (&blob, &change) {
                self.revisions.put_blob(sha256, bytes).await?;
                self.share_code(applier, sha256).await;
            }
            let text = serde_json::to_string(&next).unwrap_or_default();
            pushed_at = next.pushed_at;
            if let Some(number) = self.revisions.commit(read, &text).await? {
                committed = Some(number);
                break;
            }
        }
        let revision = committed.ok_or(PushError::Contended)?;
        tracing::info!(revision, "pushed a new cluster revision");
        if let Err(error) = self
            .bus
            .publish(REVISIONS_TOPIC, &revision.to_string())
            .await
        {
            tracing::warn!(
                revision,
                "cannot announce the revision (each host's reconcile \
                finds it): {error}"
            );
        }
        // This host at once, rather than when its own announcement comes back.
        self.reconcile(applier).await;
        let report = self.gather(revision, pushed_at, &mut reported).await;
        self.prune_blobs(revision).await;
        report
    }

    /// Stores the code this host's check compiled for the plugin `sha256`, signed, for the
    /// others; best effort (a host that finds none compiles).
    async fn share_code(&self, applier: &dyn Apply, sha256: &str) {
        let (Some(key), Some(shared)) = (&self.code_key, applier.shared_code(sha256)) else {
            return;
        };
        let mut signed = code_signature(key, sha256, &shared);
        signed.extend_from_slice(&shared.code);
        if let Err(error) = self.revisions.put_code(sha256, &shared.tag, &signed).await {
            tracing::warn!(
                "cannot share the pushed plugin's compiled code (each host compiles it): {error}"
            );
        }
    }

    /// Whether shared code could spare `applier` compiling the plugin `sha256`.
    fn wants_code(&self, applier: &dyn Apply, sha256: &str) -> bool {
        self.code_key.is_some() && !applier.has_code(sha256)
    }

    /// Hands `applier` the code another host shared for the plugin `bytes`, if its signature
    /// checks; else the plugin is compiled here as usual.
    async fn take_code(&self, applier: &dyn Apply, sha256: &str, bytes: &[u8]) {
        let (Some(key), Some(tag)) = (&self.code_key, applier.code_tag()) else {
            return;
        };
        let signed = match self.revisions.code(sha256, &tag).await {
            Ok(Some(signed)) => signed,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!("cannot read shared code, compiling here: {error}");
                return;
            }
        };
        let Some((signature, code)) = signed.split_at_checked(SIGNATURE_BYTES) else {
            tracing::warn!(%sha256, "shared code without a signature; compiling here");
            return;
        };
        let shared = SharedCode {
            tag,
            code: code.into(),
        };
        if !signature_checks(key, sha256, &shared, signature) {
            tracing::warn!(%sha256,
                "shared code whose signature does not check (another backends.cluster_key, or \
                 written by someone without it); not run, compiling here");
            return;
        }
        if !applier.adopt_code(sha256, bytes, &shared) {
            tracing::debug!(%sha256, "shared code not taken; compiling here");
        }
    }

    /// Deletes the stored plugin blobs that no kept revision up to `latest` names (past
    /// [`BLOB_GRACE`]); nothing when a kept revision cannot be read.
    async fn prune_blobs(&self, latest: u64) {
        let mut kept = BTreeSet::new();
        for number in latest.saturating_sub(KEPT_REVISIONS - 1).max(1)..=latest {
            match self.read(number).await {
                Ok(revision) => kept.extend(revision.plugins.into_values()),
                // Dropped by a newer commit meanwhile: it names nothing to keep.
                Err(SyncError::Gone(_)) => {}
                Err(error) => {
                    tracing::debug!("not pruning plugin blobs: {error}");
                    return;
                }
            }
        }
        let kept: Vec<String> = kept.into_iter().collect();
        match self.revisions.prune_blobs(&kept, BLOB_GRACE).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted plugin blobs no kept revision runs"),
            Err(error) => tracing::warn!("cannot prune the cluster's plugin blobs: {error}"),
        }
    }

    /// Every live host's report on `revision`, waiting up to [`PUSH_WAIT`] for the missing.
    async fn gather(
        &self,
        revision: u64,
        pushed_at: tsunagi_backends::Millis,
        reported: &mut tsunagi_backends::redis::bus::Subscription,
    ) -> Result<PushReport, PushError> {
        let deadline = tokio::time::Instant::now() + PUSH_WAIT;
        loop {
            let reports: Vec<HostReport> = self
                .revisions
                .reports(revision)
                .await?
                .into_iter()
                .filter_map(
                    |(member, text)| match serde_json::from_str::<HostReport>(&text) {
                        Ok(report) => Some(HostReport {
                            took_ms: Some(report.at.saturating_sub(pushed_at)),
                            ..report
                        }),
                        Err(error) => {
                            tracing::warn!(%member, "a host's report is unreadable: {error}");
                            None
                        }
                    },
                )
                .collect();
            let live: BTreeSet<String> = self
                .members
                .members()
                .await?
                .into_iter()
                .map(|(member, _)| member)
                .chain([self.worker_id.clone()])
                .collect();
            let missing: Vec<String> = live
                .iter()
                .filter(|member| !reports.iter().any(|report| &report.worker_id == *member))
                .cloned()
                .collect();
            let done = missing.is_empty() || tokio::time::Instant::now() >= deadline;
            if done {
                return Ok(PushReport {
                    ok: missing.is_empty() && reports.iter().all(|report| report.applied.ok),
                    revision,
                    hosts: reports,
                    missing,
                });
            }
            tokio::select! {
                heard = reported.next() => if heard.is_none() {
                    // The listener ended (it never does by itself): read on the timer.
                    tokio::time::sleep(REPORTS_REREAD).await;
                },
                () = tokio::time::sleep(REPORTS_REREAD) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Bytes of an HMAC-SHA256.
const SIGNATURE_BYTES: usize = 32;

fn code_mac(key: &[u8], sha256: &str, shared: &SharedCode) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in [
        b"tsunagi shared code v1\0".as_slice(),
        sha256.as_bytes(),
        b"\0",
        shared.tag.as_bytes(),
        b"\0",
        &shared.code,
    ] {
        mac.update(part);
    }
    mac
}

/// What signs `shared` as the code of the plugin `sha256`.
fn code_signature(key: &[u8], sha256: &str, shared: &SharedCode) -> Vec<u8> {
    use hmac::Mac;
    code_mac(key, sha256, shared)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Whether `signature` signs `shared` as the code of `sha256` (compared in constant time).
fn signature_checks(key: &[u8], sha256: &str, shared: &SharedCode, signature: &[u8]) -> bool {
    use hmac::Mac;
    code_mac(key, sha256, shared)
        .verify_slice(signature)
        .is_ok()
}

/// One line for a refusal: the whole revision's error, or each refused connector's.
pub fn summary(applied: &Applied) -> String {
    if let Some(error) = &applied.error {
        return error.clone();
    }
    let refused: Vec<String> = applied
        .connectors
        .iter()
        .filter(|connector| connector.outcome == "refused")
        .map(|connector| {
            format!(
                "connector '{}': {}",
                connector.connector,
                connector.error.as_deref().unwrap_or("refused")
            )
        })
        .collect();
    if refused.is_empty() {
        "refused".to_string()
    } else {
        refused.join("; ")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
