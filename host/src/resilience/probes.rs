//! Health probes: one request per breaker on its own schedule, apart from users' traffic.
//!
//! While a breaker with a probe is open, only probe results close it, so no user's request is
//! the one that finds out whether a broken upstream is back. Probes run whatever the breaker's
//! state, so `/status` always shows how the upstream last answered.

use super::Resilience;
use crate::config::ProbeSettings;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Starts the probe of `breaker`; it ends when `stop` fires (a reload that changes or removes
/// the breaker, or shutdown).
pub fn spawn_probe(
    resilience: Arc<Resilience>,
    breaker: String,
    settings: ProbeSettings,
    stop: CancellationToken,
) {
    match probe_client(&settings) {
        Ok(client) => {
            tokio::spawn(run_probe(resilience, breaker, settings, client, stop));
        }
        Err(error) => {
            tracing::error!(%breaker, "cannot build the probe's HTTP client; no probe runs: {error}");
        }
    }
}

fn probe_client(settings: &ProbeSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

async fn run_probe(
    resilience: Arc<Resilience>,
    breaker: String,
    settings: ProbeSettings,
    client: reqwest::Client,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let verdict = probe_once(&client, &settings).await;
        let before = resilience.breaker_state(&breaker);
        resilience.record_probe(&breaker, verdict.is_ok());
        let after = resilience.breaker_state(&breaker);
        let url = crate::redact::url(&settings.url);
        match (&verdict, before != after) {
            (_, true) => tracing::info!(%breaker, %url, ?before, ?after,
                "probe {}; breaker changed state", describe(&verdict)),
            (Err(_), false) => tracing::debug!(%breaker, %url,
                "probe {}", describe(&verdict)),
            (Ok(()), false) => {}
        }
    }
}

async fn probe_once(client: &reqwest::Client, settings: &ProbeSettings) -> Result<(), String> {
    // The whole exchange, body included, must fit in the probe's timeout.
    let exchange = async {
        let response = client
            .get(&settings.url)
            .send()
            .await
            .map_err(|e| format!("failed: {e}"))?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map_err(|e| format!("body failed: {e}"))?;
        if settings.healthy(status) {
            Ok(())
        } else {
            Err(format!("answered HTTP {status}"))
        }
    };
    tokio::time::timeout(settings.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", settings.timeout)))
}

fn describe(verdict: &Result<(), String>) -> String {
    match verdict {
        Ok(()) => "succeeded".to_string(),
        Err(reason) => crate::redact::text(reason).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{Answer, Server};
    use std::time::Duration;

    fn settings(url: String, timeout: Duration) -> ProbeSettings {
        let mut settings: ProbeSettings =
            toml::from_str(&format!("url = {url:?}\n")).expect("probe settings");
        settings.timeout = timeout;
        settings
    }

    async fn probe(answer: Answer, timeout: Duration) -> Result<(), String> {
        let server = Server::start(answer).await;
        let settings = settings(server.url("/health"), timeout);
        let client = probe_client(&settings).expect("client");
        probe_once(&client, &settings).await
    }

    #[tokio::test]
    async fn a_healthy_answer_passes() {
        assert_eq!(
            probe(Answer::new(200, &[], b"ok"), Duration::from_secs(5)).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn an_unhealthy_status_fails_naming_it() {
        assert_eq!(
            probe(Answer::new(503, &[], b"down"), Duration::from_secs(5)).await,
            Err("answered HTTP 503".to_string())
        );
    }

    #[tokio::test]
    async fn a_body_that_never_ends_fails_within_the_probe_timeout() {
        let mut answer = Answer::new(200, &[], b"slow");
        answer.hold_body = Duration::from_secs(30);
        let verdict = probe(answer, Duration::from_millis(300)).await;
        let reason = verdict.expect_err("too slow");
        assert!(
            reason.contains("timed out") || reason.contains("body failed"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn nobody_listening_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        drop(listener);
        let settings = settings(url, Duration::from_secs(5));
        let client = probe_client(&settings).expect("client");
        let reason = probe_once(&client, &settings).await.expect_err("refused");
        assert!(reason.starts_with("failed:"), "{reason}");
    }
}
