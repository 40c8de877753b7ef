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
