use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config/test.toml")).map_err(|errors| errors.first().clone())
}

fn all_errors(text: &str) -> Vec<ConfigError> {
    Config::parse(text, Path::new("config/test.toml"))
        .expect_err("the text has errors")
        .errors()
        .to_vec()
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
fn an_origin_is_a_short_lowercase_name() {
    let config = parse(&format!("{MINIMAL}origin = \"x\"\n")).unwrap();
    assert_eq!(config.connectors["rss"].origin.as_deref(), Some("x"));
    assert_eq!(parse(MINIMAL).unwrap().connectors["rss"].origin, None);
    let error = parse(&format!("{MINIMAL}origin = \"X feed\"\n")).unwrap_err();
    assert_eq!(error.field, "connectors.rss.origin", "{error}");
    assert_eq!(error.line, 5, "{error}");
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

    // A typo is two errors: the unknown key, and the key its element then lacks. The element
    // then takes its array out of the checks (the gopher scheme shows up once those are
    // fixed), as cutting it alone would shift the indices the others are named by.
    let typo = text.replace("host = \"b.example\"", "hots = \"b.example\"");
    let errors = all_errors(&typo);
    assert_eq!(
        places(&errors),
        vec![
            (6, 1, "connectors.rss.egress.allow[1]"),
            (7, 1, "connectors.rss.egress.allow[1].hots"),
        ],
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("missing field `host`"),
        "{errors:?}"
    );
}

/// (line, column, field) of each error.
fn places(errors: &[ConfigError]) -> Vec<(usize, usize, &str)> {
    errors
        .iter()
        .map(|e| (e.line, e.column, e.field.as_str()))
        .collect()
}

#[test]
fn every_error_of_a_file_is_reported_in_file_order() {
    let text = r#"[host]
claim_lease = "500000000 years"

[connectors.a]
plugin = "a.wasm"
role = "poller"
concurrency = 18446744073709551615
sinks = ["nowhere"]

[connectors.b]
plugin = "b.wasm"
role = "poller"
concurrancy = 4

[connectors.b.limits]
memory = "1 TiB"
call_timeout = "soon"
"#;
    let errors = Config::parse(text, Path::new("config/test.toml")).unwrap_err();
    assert_eq!(
        places(errors.errors()),
        vec![
            (2, 1, "host.claim_lease"),
            (7, 1, "connectors.a.concurrency"),
            (8, 1, "connectors.a.sinks"),
            (13, 1, "connectors.b.concurrancy"),
            (16, 1, "connectors.b.limits.memory"),
            (17, 16, "connectors.b.limits.call_timeout"),
        ],
        "{errors}"
    );
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 6, "one line per error:\n{shown}");
    assert!(
        shown.lines().nth(1).unwrap()
            == "config/test.toml:7:1: connectors.a.concurrency: must be between 1 and 1024, not 18446744073709551615",
        "{shown}"
    );
    assert!(
        shown.contains("must be between 1s and 1day, not 500000000years"),
        "{shown}"
    );
    assert!(shown.contains("unknown field `concurrancy`"), "{shown}");
    assert!(
        shown.contains("must be between 2.0 MiB and 4.0 GiB, not 1.0 TiB"),
        "{shown}"
    );
}

#[test]
fn positions_come_from_the_parser_spans() {
    // A multi-line string holding lines that look like headers and keys, then the real ones.
    let text = r#"[connectors.rss]
plugin = "rss.wasm"
role = "poller"
config.note = """
[connectors.rss.limits]
memory = "1 MiB"
concurrency = 0
"""
"concurrency" = 0
limits = { memory = "64 MiB", call_timeout = "0s" }
egress.allow = [
  { host = "a.example" },
  { host = "b.example", scheme = "gopher" },
]

[[connectors.rss.sinkz]]
"#;
    let errors = all_errors(text);
    assert_eq!(
        places(&errors),
        vec![
            (9, 1, "connectors.rss.concurrency"),
            (10, 31, "connectors.rss.limits.call_timeout"),
            (13, 25, "connectors.rss.egress.allow[1].scheme"),
            (16, 18, "connectors.rss.sinkz"),
        ],
        "{errors:?}"
    );
}

#[test]
fn arrays_of_tables_and_dotted_tables_are_located_per_element() {
    let text = "[connectors.rss]\nplugin = \"a.wasm\"\nrole = \"poller\"\n\
[[connectors.rss.egress.allow]]\nhost = \"a.example\"\n\
[[connectors.rss.egress.allow]]\nport = 0\nhost = \"b.example\"\n\
[connectors.rss.retry]\njitter = nan\n";
    let errors = all_errors(text);
    assert_eq!(
        places(&errors),
        vec![
            (7, 1, "connectors.rss.egress.allow[1].port"),
            (10, 1, "connectors.rss.retry.jitter"),
        ],
        "{errors:?}"
    );
    assert!(errors[1].message.contains("not NaN"), "{errors:?}");
}

#[test]
fn numbers_and_durations_are_held_to_their_ranges() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[host]\nclaim_batch = 100000\n",
            "host.claim_batch",
            "between 1 and 10000",
        ),
        (
            "[host]\nidle_poll = \"30days\"\n",
            "host.idle_poll",
            "between 1ms and 10m",
        ),
        (
            "[host]\nshutdown_grace = \"2h\"\n",
            "host.shutdown_grace",
            "between 0s and 1h",
        ),
        (
            "[connectors.x]\nplugin = \"a\"\nrole = \"poller\"\ncalls_per_instance = 0\n",
            "connectors.x.calls_per_instance",
            "between 1 and 1000000",
        ),
        (
            "[connectors.x]\nplugin = \"a\"\nrole = \"poller\"\n[connectors.x.schedule]\nmax_interval = \"1year\"\n",
            "connectors.x.schedule.max_interval",
            "between 100ms and 30days",
        ),
        (
            "[connectors.x]\nplugin = \"a\"\nrole = \"poller\"\n[connectors.x.retry]\nmultiplier = inf\n",
            "connectors.x.retry.multiplier",
            "between 1 and 100, not inf",
        ),
        (
            "[connectors.x]\nplugin = \"a\"\nrole = \"poller\"\n[connectors.x.limits]\nresponse_size = \"2 GiB\"\n",
            "connectors.x.limits.response_size",
            "between 1 B and 1.0 GiB",
        ),
        (
            "[sinks.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nmax_attempts = 0\ntimeout = \"2h\"\n",
            "sinks.hook.max_attempts",
            "between 1 and 1000",
        ),
        (
            "[budgets.shop]\nrate = \"1/1000day\"\n",
            "budgets.shop.rate",
            "the period must be between 1ms and 30days",
        ),
        (
            "[budgets.shop]\nrate = \"1/s\"\nburst = 0\n",
            "budgets.shop.burst",
            "between 1 and 100000",
        ),
        (
            "[budgets.shop]\nrate = \"1/s\"\nper = \"host\"\nin_flight = 0\n",
            "budgets.shop.in_flight",
            "between 1 and 10000",
        ),
        (
            "[breakers.shop]\nwindow = \"1000000 calls\"\n",
            "breakers.shop.window",
            "between 1 and 10000",
        ),
        (
            "[breakers.shop]\nopen_wait = \"30days\"\n",
            "breakers.shop.open_wait",
            "between 1ms and 1day",
        ),
        (
            "[breakers.shop.probe]\nurl = \"http://a/\"\nexpect_status = [200, 1000]\n",
            "breakers.shop.probe.expect_status[1]",
            "between 100 and 599",
        ),
    ];
    for (text, field, message) in cases {
        let error = parse(text).unwrap_err();
        assert_eq!(error.field, *field, "{text}: {error}");
        assert!(error.message.contains(message), "{text}: {error}");
        assert!(error.line > 1, "{text}: {error}");
    }
}

#[test]
fn an_error_after_a_refused_field_is_not_made_up() {
    // The sink does not deserialize (a typo); the connector naming it must not be told that
    // no such sink exists, and a refused lease must not be compared with the call timeout.
    let text = "[host]\nclaim_lease = 5\n[connectors.x]\nplugin = \"a\"\nrole = \"poller\"\n\
sinks = [\"archive\"]\n[sinks.archive]\nkind = \"jsonl\"\npaht = \"x\"\n";
    let errors = all_errors(text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].field, "host.claim_lease");
    assert!(errors[0].message.contains("invalid type"), "{errors:?}");
    assert_eq!(
        (errors[1].line, errors[1].field.as_str()),
        (7, "sinks.archive")
    );
    assert!(errors[1].message.contains("paht"), "{errors:?}");
}

#[test]
fn a_missing_field_is_located_at_its_table_and_reported_once() {
    // `plugin` is cut for its type; that it is then missing is an echo, not a second error.
    let errors = all_errors("[connectors.x]\nrole = \"poller\"\nplugin = 5\n");
    assert_eq!(
        places(&errors),
        vec![(3, 10, "connectors.x.plugin")],
        "{errors:?}"
    );
    // A field that is really missing is reported beside the others, at its table.
    let text = "[connectors.x]\nplugin = \"x.wasm\"\nconcurrency = \"many\"\n";
    let errors = all_errors(text);
    assert_eq!(
        places(&errors),
        vec![(1, 1, "connectors.x"), (3, 15, "connectors.x.concurrency")],
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("missing field `role`"),
        "{errors:?}"
    );
    // No plugin is fine only for a no-code connector.
    let errors = all_errors("[connectors.x]\nrole = \"poller\"\n");
    assert_eq!(
        places(&errors),
        vec![(1, 1, "connectors.x.plugin")],
        "{errors:?}"
    );
    assert!(
        errors[0]
            .message
            .contains("or declare the connector in [connectors.NAME.declarative]"),
        "{errors:?}"
    );
}

#[test]
fn syntax_errors_are_all_reported_with_their_position() {
    let text = "[host]\nwatch = tru\nclaim_batch = 3\nidle_poll = \"1s\n";
    let errors = all_errors(text);
    assert_eq!(
        errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 4],
        "{errors:?}"
    );
    assert!(
        errors.iter().all(|e| !e.message.contains('\n')),
        "{errors:?}"
    );
}

#[test]
fn a_file_nested_without_end_is_refused_before_parsing() {
    // Dotted keys are not bounded by the toml parser; a tree this deep overflows the stack
    // when it is walked or dropped.
    let text = format!("{}b = 1\n", "a.".repeat(200_000));
    let errors = all_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("levels deep; at most 64"),
        "{errors:?}"
    );
    let arrays = format!("x = {}{}\n", "[".repeat(70), "]".repeat(70));
    assert!(all_errors(&arrays)[0].message.contains("levels deep"));
}

#[test]
fn a_file_with_hundreds_of_errors_stops_at_the_cap() {
    let mut text = String::new();
    for n in 0..200 {
        text.push_str(&format!(
            "[connectors.c{n}]\nplugin = \"a\"\nrole = \"poller\"\nconcurrency = 0\n"
        ));
    }
    let errors = Config::parse(&text, Path::new("t.toml")).unwrap_err();
    assert_eq!(errors.errors().len(), MAX_ERRORS);
    assert!(errors.truncated());
    assert!(
        errors
            .to_string()
            .ends_with("t.toml: stopped after 50 errors"),
        "{errors}"
    );
}

#[test]
fn the_config_file_must_be_a_regular_file_under_the_cap() {
    let error = Config::load(Path::new("/dev/zero")).unwrap_err();
    assert!(
        error.first().message.contains("not a regular file"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
    let error = Config::load(&big).unwrap_err();
    assert!(
        error
            .first()
            .message
            .contains("larger than the config file limit of 1.0 MiB"),
        "{error}"
    );
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token() {
    let error = parse("[host]\nadmin_listen = \"0.0.0.0:7878\"\n").unwrap_err();
    assert_eq!(error.field, "host.admin_listen", "{error}");
    assert_eq!(error.line, 2, "{error}");
    assert!(error.message.contains("host.admin_token"), "{error}");
    for loopback in ["127.0.0.1:7878", "[::1]:7878"] {
        assert!(parse(&format!("[host]\nadmin_listen = \"{loopback}\"\n")).is_ok());
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "t0ken\n").unwrap();
    let config = Config::parse(
        "[host]\nadmin_listen = \"0.0.0.0:7878\"\nadmin_token = { file = \"admin.token\" }\n",
        &dir.path().join("tsunagi.toml"),
    )
    .unwrap();
    let token = config.admin_token().unwrap().expect("a token");
    assert!(token.matches("t0ken"));
}

#[test]
fn an_admin_token_that_cannot_be_read_is_a_config_error_that_never_shows_a_value() {
    let error =
        parse("[host]\nadmin_token = { env = \"TSUNAGI_SURELY_UNSET_TOKEN\" }\n").unwrap_err();
    assert_eq!(error.field, "host.admin_token", "{error}");
    assert!(
        error
            .message
            .contains("TSUNAGI_SURELY_UNSET_TOKEN is not set"),
        "{error}"
    );
    let error = parse("[host]\nadmin_token = { file = \"missing.token\" }\n").unwrap_err();
    assert!(error.message.contains("missing.token"), "{error}");
    let error = parse("[host]\nadmin_token = \"plain-secret-in-toml\"\n").unwrap_err();
    assert_eq!(error.line, 2, "{error}");
    assert!(!error.to_string().contains("plain-secret"), "{error}");
    let error = parse("[host]\nadmin_hosts = [\"ok.example\", \"bad host\"]\n").unwrap_err();
    assert_eq!(error.field, "host.admin_hosts[1]", "{error}");
}

#[test]
fn the_inbound_listener_is_an_address_apart_from_the_admin_port() {
    assert!(parse("[host]\ninbound_listen = \"0.0.0.0:8080\"\n").is_ok());
    let error = parse("[host]\ninbound_listen = \"everywhere\"\n").unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.line),
        ("host.inbound_listen", 2),
        "{error}"
    );
    let error =
        parse("[host]\nadmin_listen = \"127.0.0.1:7878\"\ninbound_listen = \"127.0.0.1:7878\"\n")
            .unwrap_err();
    assert_eq!(error.field, "host.inbound_listen", "{error}");
    assert!(error.message.contains("port of its own"), "{error}");
}

#[test]
fn websub_needs_a_listener_hubs_can_call_back() {
    let rss = "[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\nwebsub = true\n";
    let error = parse(rss).unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.line),
        ("connectors.rss.websub", 4),
        "{error}"
    );
    assert!(error.message.contains("host.inbound_listen"), "{error}");
    assert!(
        parse(&format!(
            "[host]\ninbound_listen = \"127.0.0.1:8080\"\n{rss}"
        ))
        .is_ok()
    );
    let error = parse(&format!("[host]\ninbound_listen = \"0.0.0.0:8080\"\n{rss}")).unwrap_err();
    assert!(error.message.contains("host.inbound_url"), "{error}");
    assert!(
        parse(&format!(
            "[host]\ninbound_listen = \"0.0.0.0:8080\"\ninbound_url = \"https://feeds.example.com\"\n{rss}"
        ))
        .is_ok()
    );
    let error =
        parse("[host]\ninbound_listen = \"0.0.0.0:8080\"\ninbound_url = \"ftp://user:pw@x/?q\"\n")
            .unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.line),
        ("host.inbound_url", 3),
        "{error}"
    );
    assert!(
        !error.message.contains("pw"),
        "credentials are not echoed: {error}"
    );
}

#[test]
fn instance_slots_must_cover_the_connectors() {
    let error = parse(&format!("[host]\ninstance_slots = 10\n{MINIMAL}")).unwrap_err();
    assert_eq!(error.field, "host.instance_slots", "{error}");
    assert!(error.message.contains("72"), "32 × 2 + 8: {error}");
    assert!(parse(&format!("[host]\ninstance_slots = 72\n{MINIMAL}")).is_ok());
}

#[test]
fn names_are_bounded() {
    let long = "c".repeat(65);
    let text = format!("[connectors.{long}]\nplugin = \"a\"\nrole = \"poller\"\n");
    let error = parse(&text).unwrap_err();
    assert_eq!(error.field, format!("connectors.{long}"));
    assert!(error.message.contains("1 to 64"), "{error}");
}

#[test]
fn fields_keep_their_location_after_loading() {
    let text = "[connectors.rss]\nrole = \"poller\"\n\n  plugin = \"x.wasm\"\n";
    let config = Config::parse(text, Path::new("c.toml")).unwrap();
    let at = config.locate("connectors.rss.plugin");
    assert_eq!(at.to_string(), "c.toml:4:3: connectors.rss.plugin");
    // Not written: its table's position.
    assert_eq!(
        config.locate("connectors.rss.limits.memory").to_string(),
        "c.toml:1:1: connectors.rss.limits.memory"
    );
    assert_eq!(
        config.error_at("host", "x").to_string(),
        "c.toml:1:1: host: x"
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
            "between 1 and",
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

#[test]
fn memory_bounds_get_defaults_and_a_connector_default_for_requests() {
    let config = parse(MINIMAL).unwrap();
    let limits = &config.connectors["rss"].limits;
    assert_eq!(limits.request_size, ByteSize::mib(1));
    assert_eq!(limits.requests_in_flight, 8);
    assert_eq!(limits.requests_per_call, 1000);
    assert_eq!(limits.connector_requests_in_flight, None);
    assert_eq!(
        limits.connector_requests_in_flight_for(32),
        64,
        "twice concurrency"
    );
    assert_eq!(limits.state_value_size, ByteSize::kib(64));
    assert_eq!(limits.log_lines_per_call, 200);
    assert_eq!(limits.items_per_call, 10_000);
    let text = format!("{MINIMAL}[connectors.rss.limits]\nconnector_requests_in_flight = 5\n");
    let limits = &parse(&text).unwrap().connectors["rss"].limits;
    assert_eq!(limits.connector_requests_in_flight_for(32), 5);
}

#[test]
fn memory_bounds_out_of_range_name_their_field_and_range() {
    for (line, field, range) in [
        (
            "request_size = \"0 B\"",
            "request_size",
            "between 1 B and 256 MiB",
        ),
        (
            "request_size = \"1 GiB\"",
            "request_size",
            "between 1 B and 256 MiB",
        ),
        (
            "requests_in_flight = 0",
            "requests_in_flight",
            "between 1 and 256",
        ),
        (
            "requests_per_call = 100001",
            "requests_per_call",
            "between 1 and 100000",
        ),
        (
            "connector_requests_in_flight = 0",
            "connector_requests_in_flight",
            "between 1 and 65536",
        ),
        (
            "state_key_size = \"1 MiB\"",
            "state_key_size",
            "between 1 B and 64 KiB",
        ),
        (
            "state_value_size = \"0 B\"",
            "state_value_size",
            "between 1 B and 16 MiB",
        ),
        (
            "state_per_connector = \"2 GiB\"",
            "state_per_connector",
            "between 1 B and 1 GiB",
        ),
        (
            "log_line_size = \"10 B\"",
            "log_line_size",
            "between 64 B and 1 MiB",
        ),
        (
            "log_lines_per_call = 0",
            "log_lines_per_call",
            "between 1 and 100000",
        ),
        (
            "items_per_call = 2000000",
            "items_per_call",
            "between 1 and 1000000",
        ),
        (
            "items_size = \"100 B\"",
            "items_size",
            "between 1 KiB and 1 GiB",
        ),
    ] {
        let text = format!("{MINIMAL}[connectors.rss.limits]\n{line}\n");
        let error = parse(&text).unwrap_err();
        assert_eq!(
            error.field,
            format!("connectors.rss.limits.{field}"),
            "{line}"
        );
        assert_eq!(error.line, 6, "{line}: {error}");
        assert!(error.message.contains(range), "{line}: {error}");
    }
    let text = format!(
        "{MINIMAL}[connectors.rss.limits]\nstate_key_size = \"2 KiB\"\nstate_per_target = \"1 KiB\"\n"
    );
    let error = parse(&text).unwrap_err();
    assert_eq!(error.field, "connectors.rss.limits.state_per_target");
    assert!(error.message.contains("no key would fit"), "{error}");
}

// --- Handler jobs (`[connectors.NAME.jobs]`).

#[test]
fn a_handlers_queue_defaults_to_its_name_and_must_be_unique_and_valid() {
    let two = "[connectors.a]\nplugin = \"a.wasm\"\nrole = \"handler\"\n\
               [connectors.b]\nplugin = \"b.wasm\"\nrole = \"handler\"\n[connectors.b.jobs]\nqueue = \"posts\"\n";
    let config = parse(two).unwrap();
    assert_eq!(config.connectors["a"].job_queue("a"), "a");
    assert_eq!(config.connectors["b"].job_queue("b"), "posts");

    let clash = "[connectors.a]\nplugin = \"a.wasm\"\nrole = \"handler\"\n[connectors.a.jobs]\nqueue = \"posts\"\n\
                 [connectors.b]\nplugin = \"b.wasm\"\nrole = \"handler\"\n[connectors.b.jobs]\nqueue = \"posts\"\n";
    let error = parse(clash).unwrap_err();
    assert_eq!(error.field, "connectors.b.jobs.queue");
    assert_eq!(error.line, 10, "{error}");
    assert!(
        error.message.contains("already the queue of connector 'a'"),
        "{error}"
    );

    let bad = "[connectors.a]\nplugin = \"a.wasm\"\nrole = \"handler\"\n[connectors.a.jobs]\nqueue = \"Posts!\"\n";
    let error = parse(bad).unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.line),
        ("connectors.a.jobs.queue", 5)
    );

    let poller = "[connectors.a]\nplugin = \"a.wasm\"\nrole = \"poller\"\n[connectors.a.jobs]\nqueue = \"q\"\n";
    let error = parse(poller).unwrap_err();
    assert!(error.message.contains("only handlers run jobs"), "{error}");
}

#[test]
fn event_topics_are_for_handlers_and_rankings_must_be_declared() {
    let errors = all_errors(
        "[connectors.x]\nplugin = \"x.wasm\"\nrole = \"poller\"\nrankings = [\"top\"]\n\
         [connectors.x.jobs]\nevents = [\"paid\", \"Bad Topic\"]\n",
    );
    let places: Vec<(usize, String)> = errors.iter().map(|e| (e.line, e.field.clone())).collect();
    assert_eq!(
        places,
        vec![
            (4, "connectors.x.rankings[0]".to_string()),
            (6, "connectors.x.jobs.events[0]".to_string()),
            (6, "connectors.x.jobs.events[1]".to_string()),
            (6, "connectors.x.jobs.events[1]".to_string()),
        ],
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("no [rankings.top] is declared"),
        "{errors:?}"
    );
    assert!(
        errors[1].message.contains("only handlers take events"),
        "{errors:?}"
    );
    let errors = all_errors("[rankings.q]\ntime_zone = \"Mars/Olympus\"\n");
    assert_eq!(
        (errors[0].line, errors[0].field.as_str()),
        (2, "rankings.q.time_zone")
    );
}

#[test]
fn backends_name_redis_urls_and_anything_else_is_located_without_its_password() {
    let config = parse(&format!(
        "{MINIMAL}\n[backends]\nbudgets = \"redis://127.0.0.1:6379/0?prefix=shop\"\n"
    ))
    .expect("a Redis URL is taken");
    assert_eq!(
        config.backends.budgets.as_deref(),
        Some("redis://127.0.0.1:6379/0?prefix=shop")
    );
    assert_eq!(config.backends.rankings, None);
    let errors = all_errors(
        "[backends]\nbudgets = \"redis://h/0\"\nrankings = \"postgres://u:hunter2@db/x\"\nqueue = \"redis://h\"\ncluster = \"nats://h\"\n",
    );
    let fields: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        fields,
        [(3, "backends.rankings"), (5, "backends.cluster")],
        "a Redis queue is taken"
    );
    assert!(errors[0].message.contains("not a Redis URL"), "{errors:?}");
    assert!(
        errors.iter().all(|e| !e.to_string().contains("hunter2")),
        "{errors:?}"
    );
}

#[test]
fn a_backends_queue_that_is_not_redis_is_refused_at_its_line_and_field() {
    let config = parse(&format!(
        "{MINIMAL}\n[backends]\nqueue = \"redis://127.0.0.1:6379/0?prefix=shop\"\n"
    ))
    .expect("a Redis URL is taken");
    assert_eq!(
        config.backends.queue.as_deref(),
        Some("redis://127.0.0.1:6379/0?prefix=shop")
    );
    let errors =
        all_errors("[backends]\nrankings = \"redis://h/0\"\nqueue = \"sqlite://jobs.db\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let shown = errors[0].to_string();
    assert!(
        shown.starts_with("config/test.toml:3:") && shown.contains("backends.queue"),
        "{shown}"
    );
    assert!(shown.contains("not a Redis URL"), "{shown}");
}

#[test]
fn a_cluster_key_without_a_cluster_is_refused_at_its_line_and_field() {
    let errors =
        all_errors("[backends]\nbudgets = \"redis://h/0\"\ncluster_key = { env = \"KEY\" }\n");
    let fields: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(fields, [(3, "backends.cluster_key")], "{errors:?}");
    assert!(errors[0].message.contains("backends.cluster"), "{errors:?}");
    let config = parse(&format!(
        "{MINIMAL}\n[backends]\ncluster = \"redis://h/0\"\ncluster_key = {{ env = \"KEY\" }}\n"
    ))
    .expect("with a cluster it is taken");
    assert!(config.backends.cluster_key.is_some());
}
