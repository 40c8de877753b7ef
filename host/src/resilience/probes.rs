//! Health probes: one request per breaker on its own schedule, apart from users' traffic.
//!
//! While a breaker with a probe is open, only probe results close it, so no user's request is
//! the one that finds out whether a broken upstream is back. Probes run whatever the breaker's
//! state, so `/status` always shows how the upstream last answered.
//!
//! With a probe board (`[backends] cluster`), hosts take turns: the first host to ask in each
//! interval probes and shares the result; the others record the latest shared result they
//! have not seen, so an upstream is probed once per interval however many hosts there are.
//! When the board cannot be reached, the host probes on its own.

use super::Resilience;
use crate::config::ProbeSettings;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::coordination::ProbeBoard;

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
    let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let mut seen: Option<u64> = None;
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let verdict = match resilience.probe_board() {
            None => probe_once(&client, &settings).await,
            Some(board) => {
                match shared_turn(board.as_ref(), &breaker, &holder, &settings, &mut seen).await {
                    Turn::Mine => {
                        let verdict = probe_once(&client, &settings).await;
                        match board.share_probe(&breaker, verdict.is_ok()).await {
                            Ok(seq) => seen = Some(seq),
                            Err(error) => tracing::warn!(%breaker,
                                "cannot share the probe's result: {error}"),
                        }
                        verdict
                    }
                    Turn::Shared(ok) => shared_verdict(ok),
                    Turn::NothingNew => continue,
                }
            }
        };
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

/// What a host does with its tick when hosts share probes.
enum Turn {
    /// Probe, then share.
    Mine,
    /// Record a result another host shared.
    Shared(bool),
    /// Another host probes and has shared nothing new yet.
    NothingNew,
}

async fn shared_turn(
    board: &dyn ProbeBoard,
    breaker: &str,
    holder: &str,
    settings: &ProbeSettings,
    seen: &mut Option<u64>,
) -> Turn {
    match board
        .take_probe_turn(breaker, holder, settings.interval)
        .await
    {
        Ok(true) => Turn::Mine,
        Ok(false) => match board.latest_probe(breaker).await {
            Ok(Some(shared)) if Some(shared.seq) != *seen => {
                *seen = Some(shared.seq);
                Turn::Shared(shared.ok)
            }
            Ok(_) => Turn::NothingNew,
            Err(error) => {
                tracing::warn!(%breaker, "cannot read the shared probe result; probing here: {error}");
                Turn::Mine
            }
        },
        Err(error) => {
            tracing::warn!(%breaker, "the probe board cannot be reached; probing here: {error}");
            Turn::Mine
        }
    }
}

fn shared_verdict(ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err("failed on another host".to_string())
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
