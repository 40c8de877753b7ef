//! What the CLI says about itself, generated from its clap definition: `tsunagi completions
//! <shell>` (bash, zsh, fish, elvish, powershell) and `tsunagi man [--out-dir DIR]` (man pages:
//! `tsunagi.1` and one per subcommand, `tsunagi-targets-add.1` …).

use super::Cli;
use anyhow::Context;
use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi completions bash > /etc/bash_completion.d/tsunagi
  tsunagi completions zsh > \"${fpath[1]}/_tsunagi\"")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi man | man -l -
  tsunagi man --out-dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write every page here (tsunagi.1, tsunagi-run.1, …); without it, print tsunagi.1.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "tsunagi", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    match args.out_dir {
        None => {
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let written = write_pages(&command, &dir)?;
            eprintln!("{written} man page(s) in {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The page of `command` and of every subcommand under it; how many were written.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    let mut stack = vec![(command.clone(), command.get_name().to_string())];
    while let Some((command, name)) = stack.pop() {
        let page = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&page)
            .with_context(|| format!("cannot write {}", page.display()))?;
        clap_mangen::Man::new(command.clone().name(name.clone()))
            .render(&mut file)
            .with_context(|| format!("cannot write {}", page.display()))?;
        written += 1;
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                stack.push((sub.clone(), format!("{name}-{}", sub.get_name())));
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command a user can run, with its full name.
    fn leaves(command: &clap::Command, name: String, out: &mut Vec<(String, clap::Command)>) {
        let subs: Vec<_> = command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((name.clone(), command.clone()));
        }
        for sub in subs {
            leaves(sub, format!("{name} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_command_documents_each_argument_and_shows_examples() {
        let mut command = Cli::command();
        command.build();
        let mut all = Vec::new();
        leaves(&command, "tsunagi".into(), &mut all);
        let mut missing = Vec::new();
        for (name, leaf) in &all {
            let examples = leaf
                .get_after_help()
                .map(|help| help.to_string())
                .unwrap_or_default();
            if !examples.starts_with("Examples:") || !examples.contains("\n  tsunagi ") {
                missing.push(format!("{name}: no \"Examples:\" section"));
            }
            if leaf.get_about().is_none() {
                missing.push(format!("{name}: no description"));
            }
            for arg in leaf.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{name}: argument {id} has no help"));
                }
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        // The tools feature adds demo and bench; the walk must reach the nested commands either way.
        assert!(all.len() > 25, "{} commands", all.len());
        assert!(
            all.iter().any(|(name, _)| name == "tsunagi dlq drop"),
            "dlq drop not walked"
        );
    }

    #[test]
    fn man_pages_are_written_for_every_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(&Cli::command(), dir.path()).unwrap();
        assert!(written > 30, "{written}");
        let page = std::fs::read_to_string(dir.path().join("tsunagi-dlq-drop.1")).unwrap();
        assert!(page.contains(".TH") && page.contains("yes"), "{page}");
    }
}
