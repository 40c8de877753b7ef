use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config/test.toml"))
}

const MINIMAL: &str = r#"
[connectors.rss]
plugin = "rss.wasm"
role = "poller"
"#;

#[test]
fn minimal_config_gets_defaults_and_resolves_paths() {
    let config = parse(MINIMAL).unwrap();
    let rss = &config.connectors["rss"];
    assert_eq!(rss.concurrency, 32);
    assert_eq!(rss.role, Role::Poller);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.resolve(&rss.plugin), cwd.join("config/rss.wasm"));
    assert_eq!(
        config.database_url(),
        format!("sqlite://{}", cwd.join("config/tsunagi.db").display())
    );
}

#[test]
fn unknown_field_names_file_line_column_and_field() {
    let text = "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\n\n[connectors.rss.schedule]\nmin_intervall = \"5m\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!((error.line, error.column), (6, 1), "{error}");
    assert_eq!(error.field, "connectors.rss.schedule.min_intervall");
    assert!(error.message.contains("unknown field"), "{error}");
    assert!(
        error.to_string().starts_with("config/test.toml:6:1: "),
        "{error}"
    );
}

#[test]
fn bad_duration_is_located() {
    let text = "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\n[connectors.rss.limits]\ncall_timeout = \"soon\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.line, 5, "{error}");
    assert_eq!(error.field, "connectors.rss.limits.call_timeout");
}

#[test]
fn semantic_errors_point_at_the_field() {
    let text =
        "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\nsinks = [\"archive\"]\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.field, "connectors.rss.sinks");
    assert_eq!(error.line, 4, "{error}");
    assert!(error.message.contains("[sinks.archive]"), "{error}");

    let text = "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\n[connectors.rss.schedule]\nmin_interval = \"3h\"\nmax_interval = \"1h\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.line, 5, "{error}");
}

#[test]
fn egress_rules_and_sinks_parse() {
    let text = r#"
[connectors.rss]
plugin = "rss.wasm"
role = "poller"
sinks = ["archive", "hook"]
[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = 8080
[connectors.rss.config]
user_agent = "x"
max = 3

[sinks.archive]
kind = "jsonl"
path = "items.jsonl"
[sinks.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
"#;
    let config = parse(text).unwrap();
    let rss = &config.connectors["rss"];
    assert_eq!(rss.egress.allow[0].port, Some(8080));
    assert_eq!(config_value_text(&rss.config["max"]).as_deref(), Some("3"));
    assert!(matches!(
        config.sinks["hook"],
        SinkSettings::Webhook {
            max_attempts: 12,
            ..
        }
    ));
}

#[test]
fn wrong_role_and_bad_scheme_are_refused() {
    let error = parse("[connectors.rss]\nplugin = \"a.wasm\"\nrole = \"scraper\"\n").unwrap_err();
    assert_eq!(error.line, 3, "{error}");
    assert!(error.to_string().contains("poller"), "{error}");
    for role in [Role::Poller, Role::Handler, Role::Searcher] {
        let text = format!("[connectors.x]\nplugin = \"a.wasm\"\nrole = \"{role}\"\n");
        assert_eq!(parse(&text).unwrap().connectors["x"].role, role);
    }
    let text = "[connectors.rss]\nplugin = \"a.wasm\"\nrole = \"poller\"\n[[connectors.rss.egress.allow]]\nscheme = \"ftp\"\nhost = \"x\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.field, "connectors.rss.egress.allow[0].scheme");
    assert_eq!(error.line, 5, "{error}");
}

#[test]
fn call_timeout_must_fit_inside_the_claim_lease() {
    let text = "[host]\nclaim_lease = \"30s\"\n[connectors.rss]\nplugin = \"a.wasm\"\nrole = \"poller\"\n[connectors.rss.limits]\ncall_timeout = \"30s\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.field, "connectors.rss.limits.call_timeout");
    assert_eq!(error.line, 7, "{error}");
    assert!(error.message.contains("host.claim_lease (30s)"), "{error}");
    let error = parse("[host]\nidle_poll = \"0s\"\n").unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.line),
        ("host.idle_poll", 2),
        "{error}"
    );
}

#[test]
fn errors_in_an_array_of_tables_point_at_the_right_element() {
    let text = "[connectors.rss]\nplugin = \"a.wasm\"\nrole = \"poller\"\n\
[[connectors.rss.egress.allow]]\nhost = \"a.example\"\n\
[[connectors.rss.egress.allow]]\nhost = \"b.example\"\n\
[[connectors.rss.egress.allow]]\nscheme = \"gopher\"\nhost = \"c.example\"\n";
    let error = parse(text).unwrap_err();
    assert_eq!(error.field, "connectors.rss.egress.allow[2].scheme");
    assert_eq!(error.line, 9, "{error}");

    let typo = text.replace("host = \"b.example\"", "hots = \"b.example\"");
    let error = parse(&typo).unwrap_err();
    assert_eq!(error.line, 7, "{error}");
    assert_eq!(
        error.field, "connectors.rss.egress.allow[1].hots",
        "{error}"
    );
}

#[test]
fn retention_settings_have_defaults_and_parse_days() {
    let config = parse(MINIMAL).unwrap();
    let host = &config.host;
    assert_eq!(host.keep_done_jobs, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(host.retention_interval, Duration::from_secs(600));
    assert_eq!(
        host.keep_forgotten_ids,
        Duration::from_secs(365 * 24 * 3600)
    );
    assert_eq!(host.max_forgotten_ids, 10_000_000);
    let rss = &config.connectors["rss"];
    assert_eq!((rss.keep_items, rss.keep_items_count), (None, None));

    let text = "[host]\nkeep_done_jobs = \"2d\"\nretention_interval = \"30s\"\nkeep_forgotten_ids = \"30d\"\n[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\nkeep_items = \"90d\"\nkeep_items_count = 50000\n";
    let config = parse(text).unwrap();
    assert_eq!(
        config.host.keep_done_jobs,
        Duration::from_secs(2 * 24 * 3600)
    );
    assert_eq!(config.host.retention_interval, Duration::from_secs(30));
    assert_eq!(
        config.host.keep_forgotten_ids,
        Duration::from_secs(30 * 24 * 3600)
    );
    let rss = &config.connectors["rss"];
    assert_eq!(rss.keep_items, Some(Duration::from_secs(90 * 24 * 3600)));
    assert_eq!(rss.keep_items_count, Some(50_000));
}

#[test]
fn retention_settings_out_of_range_name_their_field_and_line() {
    let connector = "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\n";
    for (text, field, line, says) in [
        (
            format!("{connector}keep_items = \"90s\"\n"),
            "connectors.rss.keep_items",
            4,
            "between 1h and",
        ),
        (
            format!("{connector}keep_items_count = 0\n"),
            "connectors.rss.keep_items_count",
            4,
            "at least 1",
        ),
        (
            format!("[host]\nkeep_done_jobs = \"10s\"\n{connector}"),
            "host.keep_done_jobs",
            2,
            "between 1m and",
        ),
        (
            format!("[host]\nretention_interval = \"0s\"\n{connector}"),
            "host.retention_interval",
            2,
            "between 1s and 1day",
        ),
        (
            format!("[host]\nkeep_forgotten_ids = \"1d\"\n{connector}"),
            "host.keep_forgotten_ids",
            2,
            "between 2days and",
        ),
        (
            format!("[host]\nmax_forgotten_ids = 10\n{connector}"),
            "host.max_forgotten_ids",
            2,
            "between 1000 and",
        ),
        (
            format!("[host]\nkeep_done_jobs = \"20000d\"\n{connector}"),
            "host.keep_done_jobs",
            2,
            "and 9years",
        ),
    ] {
        let error = parse(&text).expect_err(field);
        assert_eq!(error.field, field, "{error}");
        assert_eq!(error.line, line, "{error}");
        assert!(error.message.contains(says), "{error}");
    }
    let error = parse(&format!("{connector}keep_items_count = -3\n")).expect_err("negative");
    assert_eq!(error.field, "connectors.rss.keep_items_count", "{error}");
}
