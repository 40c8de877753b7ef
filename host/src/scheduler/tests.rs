use super::*;
use tsunagi_backends::Item;

const MIN: i64 = 60_000;
const MAX: i64 = 3_600_000;

fn policy() -> PollPolicy {
    PollPolicy {
        min_interval: Duration::from_millis(MIN as u64),
        max_interval: Duration::from_millis(MAX as u64),
        retry: RetryPolicy {
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_millis(MAX as u64),
            multiplier: 2.0,
            // No jitter here, so expected times are exact (the retry module tests jitter).
            jitter: 0.0,
            max_failures: 8,
        },
    }
}

fn target(interval_ms: Option<i64>, error_count: u32) -> Target {
    Target {
        // id 0 has no spread, so expected times are exact.
        id: 0,
        connector: "rss".into(),
        target: "http://127.0.0.1/feed".into(),
        next_run_at: 0,
        etag: None,
        last_modified: None,
        cursor: None,
        error_count,
        last_error: None,
        last_polled_at: Some(1_000_000),
        interval_ms,
        dead_at: None,
        history: Vec::new(),
        refused_at: None,
        refused_reason: None,
    }
}

fn item_dated(published: &str) -> Item {
    Item {
        id: published.into(),
        published: Some(published.into()),
        ..Item::default()
    }
}

#[test]
fn active_halves_and_quiet_stretches_within_bounds() {
    let p = policy();
    let now = 10_000_000;
    let t = target(Some(600_000), 0);
    let active = p.after_success(&t, Activity::Active, UpstreamHints::default(), now);
    assert_eq!(active.interval_ms, 300_000);
    assert_eq!(active.at, now + 300_000);
    let quiet = p.after_success(&t, Activity::Quiet, UpstreamHints::default(), now);
    assert_eq!(quiet.interval_ms, 900_000);

    let at_min = p.after_success(
        &target(Some(MIN), 0),
        Activity::Active,
        UpstreamHints::default(),
        now,
    );
    assert_eq!(at_min.interval_ms, MIN);
    let at_max = p.after_success(
        &target(Some(MAX), 0),
        Activity::Quiet,
        UpstreamHints::default(),
        now,
    );
    assert_eq!(at_max.interval_ms, MAX);
}

#[test]
fn upstream_hints_set_a_floor_capped_by_max() {
    let p = policy();
    let now = 0;
    let t = target(Some(MIN), 0);
    let hints = UpstreamHints {
        max_age: Some(Duration::from_secs(600)),
        ..UpstreamHints::default()
    };
    let next = p.after_success(&t, Activity::Active, hints, now);
    assert_eq!(next.at, 600_000, "Cache-Control max-age is honoured");
    assert_eq!(
        next.interval_ms, MIN,
        "the hint does not distort the adaptive interval"
    );

    let ttl = UpstreamHints {
        feed_ttl: Some(Duration::from_secs(20 * 60)),
        ..UpstreamHints::default()
    };
    assert_eq!(
        p.after_success(&t, Activity::Unknown, ttl, now).at,
        1_200_000
    );

    let huge = UpstreamHints {
        retry_after: Some(Duration::from_secs(86_400)),
        ..UpstreamHints::default()
    };
    assert_eq!(p.after_success(&t, Activity::Unknown, huge, now).at, MAX);
}

#[test]
fn a_pushed_target_is_polled_only_at_the_longest_interval() {
    let p = policy();
    let t = target(Some(MIN), 0);
    let pushed = UpstreamHints {
        pushed: true,
        ..UpstreamHints::default()
    };
    let next = p.after_success(&t, Activity::Active, pushed, 0);
    assert_eq!(next.at, MAX, "the safety net, however active the feed");
    assert_eq!(
        next.interval_ms, MIN,
        "the adaptive interval is kept for later"
    );
}

#[test]
fn failures_back_off_exponentially_then_give_up() {
    let p = policy();
    let err = CallError::Connector {
        kind: FailureKind::Transient,
        message: "503".into(),
    };
    let runs: Vec<(i64, bool)> = (0..9)
        .map(|n| {
            let next = p.after_failure(&target(None, n), &err, UpstreamHints::default(), 0);
            (next.at, next.give_up)
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (30_000, false),
            (60_000, false),
            (120_000, false),
            (240_000, false),
            (480_000, false),
            (960_000, false),
            (1_920_000, false),
            (MAX, true),
            (MAX, true)
        ],
        "the 8th failure in a row gives the target up"
    );
}

#[test]
fn permanent_failures_give_up_at_once_and_retry_after_is_honoured() {
    let p = policy();
    let permanent = CallError::Connector {
        kind: FailureKind::Permanent,
        message: "410 Gone".into(),
    };
    assert!(
        p.after_failure(&target(None, 0), &permanent, UpstreamHints::default(), 0)
            .give_up
    );
    let limited = CallError::Connector {
        kind: FailureKind::RateLimited,
        message: "429".into(),
    };
    let hints = UpstreamHints {
        retry_after: Some(Duration::from_secs(900)),
        ..UpstreamHints::default()
    };
    let next = p.after_failure(&target(None, 0), &limited, hints, 0);
    assert_eq!((next.at, next.give_up), (900_000, false));
    // A bogus Retry-After is capped by the longest wait; throttling never gives a target up.
    let absurd = UpstreamHints {
        retry_after: Some(Duration::from_secs(10 * 365 * 24 * 3600)),
        ..UpstreamHints::default()
    };
    let next = p.after_failure(&target(None, 50), &limited, absurd, 0);
    assert_eq!((next.at, next.give_up), (MAX, false));
}

#[test]
fn activity_compares_item_dates_with_the_last_poll() {
    let t = target(None, 0); // last polled at 1_000_000 ms = 1970-01-01T00:16:40Z
    let newer = PollResult {
        items: vec![item_dated("1970-01-01T00:20:00Z")],
        ..PollResult::default()
    };
    assert_eq!(activity(&t, &newer), Activity::Active);
    let older = PollResult {
        items: vec![item_dated("1970-01-01T00:10:00Z")],
        ..PollResult::default()
    };
    assert_eq!(activity(&t, &older), Activity::Quiet);
    let undated = PollResult {
        items: vec![Item {
            id: "x".into(),
            ..Item::default()
        }],
        ..PollResult::default()
    };
    assert_eq!(activity(&t, &undated), Activity::Unknown);
    let not_modified = PollResult {
        not_modified: true,
        ..PollResult::default()
    };
    assert_eq!(activity(&t, &not_modified), Activity::Quiet);
}

#[test]
fn spread_is_bounded_and_deterministic() {
    for id in 0..1000 {
        let s = spread(id, 100_000);
        assert!((0..10_000).contains(&s), "{id}: {s}");
        assert_eq!(s, spread(id, 100_000));
    }
    assert!(
        (0..1000)
            .map(|id| spread(id, 100_000))
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 100
    );
}
