//! Sinks: where new items go besides the item store (a JSON-lines file, an HTTP webhook).
//!
//! Delivery goes through the durable job queue: the commit that stores new items also enqueues
//! one delivery job per sink, in the same transaction, so an item is never stored but not
//! delivered. A [`SinkRunner`] leases those jobs, delivers, and on failure retries with
//! exponential backoff until the job's attempts are used up, when it moves to the dead-letter
//! state with its last error. Delivery is at-least-once.
//!
//! A webhook goes out through the egress path like a plugin's request (an
//! [`egress::Destination`](crate::egress::Destination)): its URL's own scheme, host and port
//! are its allowlist, names are screened after DNS, no proxy, and a redirect is followed only
//! within that rule. Errors print the URL redacted.

use crate::clock::SharedClock;
use crate::config::SinkSettings;
use crate::egress::{Destination, PolicyOwner};
use crate::outage::StoreOutage;
use crate::redact;
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
    /// `url` is redacted.
    #[error("webhook {url} failed: {reason}")]
    Webhook { url: String, reason: String },
    #[error("delivery job {job} has an unreadable payload: {reason}")]
    Payload { job: i64, reason: String },
    #[error("cannot set up the webhook: {0}")]
    Setup(#[source] crate::egress::DestinationError),
}

/// A destination for new items.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn deliver(&self, items: &[StoredItem]) -> Result<(), SinkError>;
}

/// Builds the sink `[sinks.NAME]` describes; `resolve` anchors relative paths.
pub fn build_sink(
    name: &str,
    settings: &SinkSettings,
    resolve: impl Fn(&std::path::Path) -> PathBuf,
) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match settings {
        SinkSettings::Jsonl { path } => Arc::new(JsonlSink {
            path: resolve(path),
            lock: tokio::sync::Mutex::new(()),
        }),
        SinkSettings::Webhook {
            url,
            timeout,
            allow_internal,
            ..
        } => Arc::new(WebhookSink {
            destination: Destination::new(
                PolicyOwner::Sink(name.to_string()),
                url,
                *allow_internal,
                *timeout,
            )
            .map_err(SinkError::Setup)?,
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
    destination: Destination,
}

#[async_trait]
impl Sink for WebhookSink {
    async fn deliver(&self, items: &[StoredItem]) -> Result<(), SinkError> {
        let fail = |reason: String| SinkError::Webhook {
            url: self.destination.printed_url().to_string(),
            reason: redact::text(&reason).into_owned(),
        };
        let status = self
            .destination
            .post_json(items)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("HTTP {status}")))
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
        let mut outage = StoreOutage::new(
            format!("sink '{}' leasing deliveries", self.name),
            self.idle_poll,
        );
        while !stop.is_cancelled() {
            let now = self.clock.now_ms();
            let leased = self
                .backend
                .lease_jobs(&queue, &self.worker_id, now, self.lease, 16)
                .await;
            let (jobs, wait) = match leased {
                Ok(jobs) => {
                    outage.answered();
                    (jobs, self.idle_poll)
                }
                Err(error) => (Vec::new(), outage.failed(&error)),
            };
            if jobs.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::loopback::{Answer, Server};
    use std::path::Path;
    use tsunagi_backends::{Item, NewJob};

    fn stored(id: &str) -> StoredItem {
        StoredItem {
            seq: 1,
            connector: "rss".into(),
            target: "http://127.0.0.1/feed".into(),
            fetched_at: 0,
            item: Item {
                id: id.to_string(),
                ..Item::default()
            },
        }
    }

    fn webhook(url: &str) -> Arc<dyn Sink> {
        let settings: SinkSettings =
            toml::from_str(&format!("kind = \"webhook\"\nurl = \"{url}\"\n")).expect("webhook");
        build_sink("hook", &settings, Path::to_path_buf).expect("sink builds")
    }

    #[tokio::test]
    async fn the_jsonl_sink_appends_one_line_per_item() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("items.jsonl");
        let settings: SinkSettings =
            toml::from_str(&format!("kind = \"jsonl\"\npath = {:?}\n", path)).expect("jsonl");
        let sink = build_sink("archive", &settings, Path::to_path_buf).expect("sink builds");
        sink.deliver(&[stored("a"), stored("b")])
            .await
            .expect("first");
        sink.deliver(&[stored("c")]).await.expect("second");
        let text = std::fs::read_to_string(&path).expect("written");
        let ids: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<StoredItem>(line).expect("a line is an item"))
            .map(|item| item.item.id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn the_webhook_posts_one_json_array_per_delivery() {
        let server = Server::start(Answer::new(204, &[], b"")).await;
        let sink = webhook(&server.url("/hook"));
        sink.deliver(&[stored("a"), stored("b")])
            .await
            .expect("accepted");
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].head.starts_with("POST /hook "),
            "{}",
            requests[0].head
        );
        let posted: Vec<StoredItem> = serde_json::from_slice(&requests[0].body).expect("JSON");
        let ids: Vec<&str> = posted.iter().map(|i| i.item.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_webhook_answer_other_than_2xx_fails_the_attempt() {
        let server = Server::start(Answer::new(500, &[], b"down")).await;
        let error = webhook(&server.url("/hook"))
            .deliver(&[stored("a")])
            .await
            .expect_err("500 is a failure");
        assert!(
            matches!(&error, SinkError::Webhook { reason, .. } if reason.contains("500")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn webhook_errors_print_the_url_redacted() {
        let server = Server::start(Answer::new(500, &[], b"down")).await;
        let secret_url =
            |base: String| base.replace("http://", "http://alice:hunter2@") + "?token=hunter3";
        let answered = webhook(&secret_url(server.url("/hook")))
            .deliver(&[stored("a")])
            .await
            .expect_err("500");
        // A port nobody listens on: the transport error names the URL too.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("port").port();
        drop(closed);
        let unreachable = webhook(&secret_url(format!("http://127.0.0.1:{port}/hook")))
            .deliver(&[stored("a")])
            .await
            .expect_err("nobody listens");
        for error in [answered, unreachable] {
            let text = error.to_string();
            assert!(
                !text.contains("hunter") && text.contains("token=REDACTED"),
                "{text}"
            );
        }
    }

    /// The case: a 307 sent the payload to an internal address. Now the hop is
    /// checked against the sink's rule, nothing reaches the target, and the dead job says why.
    #[tokio::test]
    async fn a_webhook_redirected_to_an_internal_address_delivers_nothing_and_says_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend =
            tsunagi_backends::open(&format!("sqlite://{}", dir.path().join("q.db").display()))
                .await
                .expect("backend");
        let internal = Server::start(Answer::new(204, &[], b"")).await;
        let landing = internal.url("/latest/meta-data");
        let hook = Server::start(Answer::new(307, &[("location", landing.as_str())], b"")).await;
        let clock = ManualClock::starting_at(1_000_000);
        let runner = SinkRunner {
            name: "hook".into(),
            sink: webhook(&hook.url("/hook")),
            backend: backend.clone(),
            clock: Arc::new(clock.clone()),
            worker_id: "w".into(),
            idle_poll: Duration::from_millis(10),
            lease: Duration::from_secs(60),
            retry: RetryPolicy {
                first_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
                multiplier: 2.0,
                jitter: 0.0,
                max_failures: 1,
            },
        };
        let queue = queue_name("hook");
        backend
            .enqueue(NewJob::new(
                queue.clone(),
                serde_json::to_string(&[stored("a")]).expect("JSON"),
                1,
                0,
            ))
            .await
            .expect("enqueued");
        let jobs = backend
            .lease_jobs(&queue, "w", clock.now_ms(), Duration::from_secs(60), 10)
            .await
            .expect("leased");
        assert!(!runner.deliver(&jobs[0]).await, "not delivered");
        assert!(internal.requests().is_empty(), "nothing reached {landing}");
        assert_eq!(hook.requests().len(), 1);
        let dead = backend.list_dead(Some(&queue), 10).await.expect("dead");
        let error = dead[0].last_error.as_deref().unwrap_or_default();
        assert!(
            error.contains("a redirect was refused: egress refused by sink 'hook' allowlist")
                && error.contains(&landing)
                && error.contains("127.0.0.1 is a loopback address (RFC 1122)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_payload_dies_at_once_and_a_failed_delivery_is_retried_later() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend =
            tsunagi_backends::open(&format!("sqlite://{}", dir.path().join("q.db").display()))
                .await
                .expect("backend");
        let server = Server::start(Answer::new(503, &[], b"")).await;
        let clock = ManualClock::starting_at(1_000_000);
        let runner = SinkRunner {
            name: "hook".into(),
            sink: webhook(&server.url("/hook")),
            backend: backend.clone(),
            clock: Arc::new(clock.clone()),
            worker_id: "w".into(),
            idle_poll: Duration::from_millis(10),
            lease: Duration::from_secs(60),
            retry: RetryPolicy {
                first_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
                multiplier: 2.0,
                jitter: 0.0,
                max_failures: 5,
            },
        };
        let queue = queue_name("hook");
        for payload in ["not json", "[]"] {
            backend
                .enqueue(NewJob::new(queue.clone(), payload, 5, 0))
                .await
                .expect("enqueued");
        }
        let jobs = backend
            .lease_jobs(&queue, "w", clock.now_ms(), Duration::from_secs(60), 10)
            .await
            .expect("leased");
        assert_eq!(jobs.len(), 2);
        for job in &jobs {
            assert!(!runner.deliver(job).await, "both fail");
        }
        let counts = backend.queue_counts(&queue).await.expect("counts");
        assert_eq!(counts.dead, 1, "the unreadable payload");
        assert_eq!(counts.queued, 1, "the 503 waits for its retry");
        let dead = backend.list_dead(Some(&queue), 10).await.expect("dead");
        let error = dead[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains("unreadable payload"), "{error}");
        // Not before the backoff's first delay.
        let early = backend
            .lease_jobs(
                &queue,
                "w",
                clock.now_ms() + 500,
                Duration::from_secs(60),
                10,
            )
            .await
            .expect("leased");
        assert!(early.is_empty());
    }
}
