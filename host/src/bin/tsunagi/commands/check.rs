//! `tsunagi check`: validates the config and compiles and validates every plugin, running
//! nothing. Prints one line per connector.

use super::load_config;
use std::path::Path;
use std::process::ExitCode;
use tsunagi::runtime::Engine;
use tsunagi::topology::engine_settings;

pub async fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
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
