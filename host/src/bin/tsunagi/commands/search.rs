//! `tsunagi search QUERY [--shops A,B] [--limit N] [--sort S] [--min-price P] [--max-price P]
//! [--page N]`: the product search of the running host (`GET /v1/search`), printed as its JSON
//! answer: the merged products and each shop's status. Through the host, not beside it: only
//! it holds the shops' budgets, breakers, credentials and the answer cache.

use super::reload::ask_host;
use super::{ConfigArg, load_config};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi search \"green tea\" --sort price-asc
  tsunagi search \"green tea\" --shops rakuten,yahoo --limit 20 --max-price 3000
  tsunagi search matcha --min-price 500 --page 2 -c config/tsunagi.toml")]
pub struct SearchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to search for.
    pub query: String,
    /// Shops to ask, comma-separated (default: `search.shops`, or every searcher).
    #[arg(long)]
    pub shops: Option<String>,
    /// Products wanted (1–100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// relevance, price-asc, price-desc, review-count or review-average.
    #[arg(long)]
    pub sort: Option<String>,
    /// Only products costing at least this much (in the shops' currency).
    #[arg(long)]
    pub min_price: Option<u64>,
    /// Only products costing at most this much (in the shops' currency).
    #[arg(long)]
    pub max_price: Option<u64>,
    /// Which page of each shop's answer (from 1).
    #[arg(long)]
    pub page: Option<u32>,
}

pub async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("q", &args.query);
    let optional = [
        ("shops", args.shops.clone()),
        ("limit", args.limit.map(|n| n.to_string())),
        ("sort", args.sort.clone()),
        ("min_price", args.min_price.map(|n| n.to_string())),
        ("max_price", args.max_price.map(|n| n.to_string())),
        ("page", args.page.map(|n| n.to_string())),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            query.append_pair(name, &value);
        }
    }
    let path = format!("/v1/search?{}", query.finish());
    ask_host(&config, reqwest::Method::GET, &path, None, "").await
}
