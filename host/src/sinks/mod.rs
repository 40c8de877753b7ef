//! Sinks: where new items go besides the item store (a JSON-lines file, an HTTP webhook).
//!
//! Delivery goes through the durable job queue: the commit that stores new items also enqueues
//! one delivery job per sink, in the same transaction, so an item is never stored but not
//! delivered. A [`SinkRunner`] leases those jobs, delivers, and on failure retries with
//! exponential backoff until the job's attempts are used up, when it moves to the dead-letter
//! state with its last error. Delivery is at-least-once.

use crate::clock::SharedClock;
use crate::config::SinkSettings;
use crate::scheduler::RetryPolicy;
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, JobLease, StoredItem};

/// The job queue that feeds sink `name`.
pub fn queue_name(sink: &str) -> String {
    format!("sink:{sink}")
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook {url} failed: {reason}")]
    Webhook { url: String, reason: String },
    #[error("delivery job {job} has an unreadable payload: {reason}")]
    Payload { job: i64, reason: String },
}

/// A destination for new items.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn deliver(&self, items: &[StoredItem]) -> Result<(), SinkError>;
}

/// Builds the sink a `[sinks.NAME]` table describes; `resolve` anchors relative paths.
pub fn build_sink(
    settings: &SinkSettings,
    resolve: impl Fn(&std::path::Path) -> PathBuf,
) -> Result<Arc<dyn Sink>, reqwest::Error> {
    Ok(match settings {
        SinkSettings::Jsonl { path } => Arc::new(JsonlSink {
            path: resolve(path),
            lock: tokio::sync::Mutex::new(()),
        }),
        SinkSettings::Webhook { url, timeout, .. } => Arc::new(WebhookSink {
            url: url.clone(),
            client: reqwest::Client::builder().timeout(*timeout).build()?,
        }),
    })
}

/// Appends one JSON object per item and line.
pub struct JsonlSink {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

#[async_trait]
impl Sink for JsonlSink {
    async fn deliver(&self, items: &[StoredItem]) -> Result<(), SinkError> {
        let mut text = String::new();
        for item in items {
            // StoredItem always serialises; an error here would be a bug, not bad input.
            if let Ok(line) = serde_json::to_string(item) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let io = |source| SinkError::File {
            path: self.path.clone(),
            source,
        };
        let _guard = self.lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(io)?;
        file.write_all(text.as_bytes()).await.map_err(io)?;
        file.flush().await.map_err(io)?;
        Ok(())
    }
}

/// POSTs the new items as one JSON array; any non-2xx answer is a failed attempt.
pub struct WebhookSink {
    url: String,
    client: reqwest::Client,
}

#[async_trait]
impl Sink for WebhookSink {
    async fn deliver(&self, items: &[StoredItem]) -> Result<(), SinkError> {
        let fail = |reason: String| SinkError::Webhook {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .client
            .post(&self.url)
            .json(items)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(fail(format!("HTTP {}", response.status())))
        }
    }
}

/// Drains one sink's delivery queue.
pub struct SinkRunner {
    pub name: String,
    pub sink: Arc<dyn Sink>,
    pub backend: Arc<dyn Backend>,
    pub clock: SharedClock,
    pub worker_id: String,
    pub idle_poll: Duration,
    /// How long a delivery job stays leased; a crashed host's deliveries return after it.
    pub lease: Duration,
    /// Backoff between delivery attempts (the job's own `max_attempts` decides when to stop).
    pub retry: RetryPolicy,
}

impl SinkRunner {
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let queue = queue_name(&self.name);
        while !stop.is_cancelled() {
            let now = self.clock.now_ms();
            let leased = self
                .backend
                .lease_jobs(&queue, &self.worker_id, now, self.lease, 16)
                .await;
            let jobs = match leased {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::error!(sink = %self.name, "cannot lease delivery jobs: {error}");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.idle_poll) => {}
                }
                continue;
            }
            for job in jobs {
                // Jobs not started before a stop stay leased and return when the lease expires.
                if stop.is_cancelled() {
                    break;
                }
                self.deliver(&job).await;
            }
        }
    }

    /// Delivers one job, then records the result; returns whether it was delivered.
    pub async fn deliver(&self, job: &JobLease) -> bool {
        let result = match serde_json::from_str::<Vec<StoredItem>>(&job.payload) {
            Ok(items) => self.sink.deliver(&items).await,
            Err(e) => Err(SinkError::Payload {
                job: job.id,
                reason: e.to_string(),
            }),
        };
        let now = self.clock.now_ms();
        match result {
            Ok(()) => {
                match self.backend.complete_job(job, now).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(sink = %self.name, job = job.id,
                        "delivered after the job's lease expired; it may be delivered again"),
                    Err(error) => tracing::error!(sink = %self.name, job = job.id,
                        "delivered, but cannot mark the job done (it may be delivered again): {error}"),
                }
                true
            }
            Err(error) => {
                let retry_at = match error {
                    SinkError::Payload { .. } => None,
                    _ => Some(now.saturating_add(self.retry.delay_ms(job.attempt, job.id as u64))),
                };
                tracing::warn!(sink = %self.name, job = job.id, attempt = job.attempt,
                    max_attempts = job.max_attempts, "delivery failed: {error}");
                if let Err(store_error) = self
                    .backend
                    .fail_job(job, &error.to_string(), retry_at, now)
                    .await
                {
                    tracing::error!(sink = %self.name, job = job.id, "cannot record the failed delivery: {store_error}");
                }
                false
            }
        }
    }
}
