//! `tsunagi top`: `tsunagi status`'s tables, redrawn every second in the terminal (ratatui),
//! with each connector's calls per second since the last refresh. `q` (or Esc, Ctrl-C) quits.
//! The first read must succeed, so pointing it at no host fails at once naming the address;
//! later failures show in the title until the host answers again.

use super::reload::read_from_host;
use super::status::{Rates, Section, StatusView};
use super::{ConfigArg, load_config};
use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often the view asks the host.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi top --config config/tsunagi.toml
  tsunagi top --host 127.0.0.1:7878")]
pub struct TopArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host's admin address (`host:port`); default: the config's `host.admin_listen`.
    #[arg(long)]
    pub host: Option<String>,
}

/// What the last reads gave.
struct Screen {
    view: StatusView,
    rates: Option<Rates>,
    /// The last read's failure, until one succeeds.
    problem: Option<String>,
}

pub async fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let host = args.host.as_deref();
    let first = read_from_host(&config, host, "/status").await?;
    let mut screen = Screen {
        view: StatusView::parse(&first)?,
        rates: None,
        problem: None,
    };
    let mut read_at = Instant::now();
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let outcome = async {
        loop {
            terminal.draw(|frame| draw(frame, &screen))?;
            if wait_for_quit(REFRESH)? {
                return anyhow::Ok(());
            }
            match read_from_host(&config, host, "/status")
                .await
                .and_then(|text| StatusView::parse(&text))
            {
                Ok(view) => {
                    let elapsed = read_at.elapsed().as_secs_f64();
                    read_at = Instant::now();
                    screen.rates = Some(rates(&screen.view, &view, elapsed));
                    screen.view = view;
                    screen.problem = None;
                }
                Err(error) => screen.problem = Some(format!("{error:#}")),
            }
        }
    }
    .await;
    ratatui::restore();
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Calls (polls or jobs) per second of each connector between two reports.
fn rates(before: &StatusView, after: &StatusView, seconds: f64) -> Rates {
    let calls = |view: &StatusView, name: &str| {
        view.connectors
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| {
                let (ok, failed) = c.outcomes();
                ok + failed
            })
    };
    after
        .connectors
        .iter()
        .map(|c| {
            let made = calls(after, &c.name).saturating_sub(calls(before, &c.name));
            (c.name.clone(), made as f64 / seconds.max(0.001))
        })
        .collect()
}

/// Waits up to `wait` for a key; whether it asks to quit.
fn wait_for_quit(wait: Duration) -> anyhow::Result<bool> {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // The runtime has worker threads to spare; the terminal read blocks this one briefly.
        if tokio::task::block_in_place(|| event::poll(left))?
            && let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
        {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(true);
            }
        }
    }
}

fn draw(frame: &mut ratatui::Frame, screen: &Screen) {
    let sections = screen.view.sections(screen.rates.as_ref());
    let mut constraints = vec![Constraint::Length(1)];
    constraints.extend(
        sections
            .iter()
            .map(|section| Constraint::Length(section.rows.len().max(1) as u16 + 3)),
    );
    constraints.push(Constraint::Min(0));
    let areas = Layout::vertical(constraints).split(frame.area());
    let heading = match &screen.problem {
        Some(problem) => format!("tsunagi top — {problem} (showing the last answer) — q quits"),
        None => "tsunagi top — refreshed every second — q quits".to_string(),
    };
    frame.render_widget(Paragraph::new(heading), areas[0]);
    for (section, area) in sections.iter().zip(areas.iter().skip(1)) {
        frame.render_widget(table(section), *area);
    }
}

fn table(section: &Section) -> Table<'_> {
    let mut widths: Vec<u16> = section.header.iter().map(|h| h.len() as u16).collect();
    for row in &section.rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count().min(60) as u16);
        }
    }
    let rows = section
        .rows
        .iter()
        .map(|row| Row::new(row.iter().map(String::as_str)));
    Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(
            Row::new(section.header.iter().copied())
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .column_spacing(2)
        .block(Block::bordered().title(section.title.as_str()))
}
