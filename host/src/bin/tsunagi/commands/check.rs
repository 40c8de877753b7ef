//! `tsunagi check`: validates the config and compiles and validates every plugin, running
//! nothing. Prints every error of the config file (each `file:line:column: field: message`), or
//! one line per connector; exits non-zero when anything is wrong.

use std::path::Path;
use std::process::ExitCode;
use tsunagi::config::Config;
use tsunagi::runtime::Engine;
use tsunagi::topology::engine_settings;

pub async fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.errors() {
                eprintln!("error {error}");
            }
            if errors.truncated() {
                eprintln!(
                    "error {}: stopped after {} errors",
                    config_path.display(),
                    errors.errors().len()
                );
            }
            println!(
                "{}: {} error(s) in the config; no plugin was loaded",
                config_path.display(),
                errors.errors().len()
            );
            return Ok(ExitCode::from(super::exit::CONFIG));
        }
    };
    let engine = Engine::new(&engine_settings(&config))?;
    let mut failures = 0;
    for (name, settings) in &config.connectors {
        let path = config.resolve(&settings.plugin);
        match engine.load_blocking(path, settings.role).await {
            Ok(plugin) => println!(
                "ok    {name}: {} ({}, {} bytes, sha256 {})",
                plugin.path.display(),
                settings.role,
                plugin.size,
                &plugin.sha256[..16]
            ),
            Err(error) => {
                failures += 1;
                eprintln!(
                    "error {}",
                    config.error_at(&format!("connectors.{name}.plugin"), &error.to_string())
                );
            }
        }
    }
    println!(
        "{}: {} connector(s), {} sink(s), {failures} error(s)",
        config_path.display(),
        config.connectors.len(),
        config.sinks.len()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
