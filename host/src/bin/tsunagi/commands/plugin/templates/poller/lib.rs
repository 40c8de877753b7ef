//! {{name}}: a tsunagi poller. For each due target (a URL), the host calls `poll`; this one
//! fetches a JSON list `{"items": [{"id", "title", "url", "published"}]}` with a conditional
//! GET and returns the entries as items. Change `Entry` and `to_item` for your API.

use serde::Deserialize;
use tsunagi_sdk::prelude::*;

struct Connector;

/// The upstream's answer.
#[derive(Deserialize)]
struct Page {
    items: Vec<Entry>,
}

/// One entry of the upstream's list.
#[derive(Deserialize)]
struct Entry {
    id: String,
    title: Option<String>,
    url: Option<String>,
    published: Option<String>,
}

impl Poller for Connector {
    fn poll(request: PollRequest) -> Result<PollResponse> {
        let response = http::Request::get(&request.target)
            .header("accept", "application/json")
            .header_opt("if-none-match", request.etag.as_deref())
            .follow_redirects(3)
            .send()?;
        if response.status() == 304 {
            let etag = response.header("etag").or(request.etag);
            return Ok(PollResponse::not_modified(etag, None));
        }
        // 429 → rate limited, 410 → permanent, 5xx → transient: the host retries accordingly.
        let response = response.error_for_status()?;
        let etag = response.header("etag");
        let page: Page = response.json()?;
        let items = page.items.into_iter().map(to_item).collect();
        Ok(PollResponse::items(items).etag(etag))
    }
}

fn to_item(entry: Entry) -> Item {
    Item::new(entry.id)
        .title(entry.title)
        .link(entry.url)
        .published(entry.published)
}

tsunagi_sdk::export_poller!(Connector);
