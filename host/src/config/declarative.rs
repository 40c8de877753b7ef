//! No-code connectors (`[connectors.NAME.declarative]`): their checks, at the fields they are
//! written at, and what the host fills in for them once the file is good — the interpreter's
//! component when no `plugin` is named, the allow rule for the request's host (with the spec's
//! credential, budget and breaker), and the checked spec as JSON for the interpreter to read
//! (`tsunagi_declarative_spec::SPEC_CONFIG_KEY`). The spec's own rules live in
//! `tsunagi-declarative-spec`, shared with the interpreter.

use super::validate::Checks;
use super::{AllowRule, Config, Role};
use tsunagi_declarative_spec::{Role as SpecRole, SPEC_CONFIG_KEY, Spec};

fn spec_role(role: Role) -> Option<SpecRole> {
    match role {
        Role::Searcher => Some(SpecRole::Searcher),
        Role::Poller => Some(SpecRole::Poller),
        Role::Handler => None,
    }
}

pub(super) fn validate(config: &Config, checks: &mut Checks) {
    for (name, connector) in &config.connectors {
        let at = |field: &str| format!("connectors.{name}.{field}");
        let Some(spec) = &connector.declarative else {
            if connector.plugin.as_os_str().is_empty() {
                checks.error(
                    &at("plugin"),
                    "missing: name the connector's component (.wasm), or declare the connector \
                     in [connectors.NAME.declarative]",
                );
            }
            continue;
        };
        let Some(role) = spec_role(connector.role) else {
            checks.error(
                &at("declarative"),
                "a no-code connector is a searcher or a poller; a handler needs a plugin",
            );
            continue;
        };
        for problem in spec.check(role) {
            checks.error(
                &at(&format!("declarative.{}", problem.field)),
                problem.message,
            );
        }
        let known = [
            (
                "credential",
                &spec.credential,
                config
                    .credentials
                    .contains_key(spec.credential.as_deref().unwrap_or("")),
            ),
            (
                "budget",
                &spec.budget,
                config
                    .budgets
                    .contains_key(spec.budget.as_deref().unwrap_or("")),
            ),
            (
                "breaker",
                &spec.breaker,
                config
                    .breakers
                    .contains_key(spec.breaker.as_deref().unwrap_or("")),
            ),
        ];
        for (what, named, exists) in known {
            if let Some(named) = named
                && !exists
            {
                checks.error(
                    &at(&format!("declarative.{what}")),
                    format!("no [{what}s.{named}] is declared"),
                );
            }
        }
    }
}

/// The allow rule a spec's request needs: its scheme, host and port, through the spec's
/// credential, budget and breaker. None for a poller whose URL is the target itself (its
/// rules are written out).
fn allow_rule(spec: &Spec) -> Option<AllowRule> {
    let url = url::Url::parse(&spec.request.url).ok()?;
    Some(AllowRule {
        scheme: Some(url.scheme().to_string()),
        host: url.host_str()?.to_string(),
        port: url.port(),
        budget: spec.budget.iter().cloned().collect(),
        breaker: spec.breaker.clone(),
        credential: spec.credential.clone(),
        ..AllowRule::default()
    })
}

/// Fills in what a good file's no-code connectors need to run.
pub(super) fn complete(config: &mut Config) {
    let interpreters = config.host.declarative_plugins.clone();
    for connector in config.connectors.values_mut() {
        let Some(spec) = &connector.declarative else {
            continue;
        };
        if connector.plugin.as_os_str().is_empty() {
            connector.plugin = interpreters.join(format!(
                "tsunagi_plugin_declarative_{}.wasm",
                connector.role
            ));
        }
        if let Some(rule) = allow_rule(spec)
            && !connector.egress.allow.contains(&rule)
        {
            connector.egress.allow.push(rule);
        }
        if let Ok(json) = serde_json::to_string(spec) {
            connector
                .config
                .insert(SPEC_CONFIG_KEY.to_string(), toml::Value::String(json));
        }
    }
}
