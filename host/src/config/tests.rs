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
fn instance_slots_must_cover_the_connectors() {
    let error = parse(&format!("[host]\ninstance_slots = 10\n{MINIMAL}")).unwrap_err();
    assert_eq!(error.field, "host.instance_slots", "{error}");
    assert!(error.message.contains("72"), "32 × 2 + 8: {error}");
    assert!(parse(&format!("[host]\ninstance_slots = 72\n{MINIMAL}")).is_ok());
}
