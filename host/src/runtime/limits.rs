//! What one call may make the host hold outside the plugin's linear memory, and how each bound
//! is measured: state keys, values and totals, log lines, and the result the host copies out.
//!
//! Every string or list a plugin hands the host is copied by wasmtime before host code sees it
//! ("lifting"). Copies are not bounded by the plugin's memory: a result may point many items at
//! one string, and each is copied. So every store gets wasmtime's *hostcall fuel*, the bytes one
//! transfer (a host call's arguments, or a call's whole result) may copy: [`CallLimits::transfer_cap`].
//! Lifting stops with an error once it is spent, before the host allocates more. The host
//! services that take text (state, log) take it uncopied ([`wasmtime::component::WasmStr`]) and
//! copy only what their own bound allows. Right after a result is lifted, its item count and
//! size are checked against `items_per_call` and `items_size` before anything else is built
//! from it.

use super::bindings::WitItem;
use crate::config::LimitSettings;
use std::borrow::Cow;
use std::mem::size_of;

/// Room in the transfer cap beyond the largest bound it serves (a result's fixed fields, a
/// state call's scope and key).
const TRANSFER_MARGIN: usize = 64 * 1024;

/// The per-call bounds of one connector, in host units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub state_key_size: usize,
    pub state_value_size: usize,
    pub state_per_target: usize,
    pub state_per_connector: u64,
    pub log_line_size: usize,
    pub log_lines_per_call: u32,
    pub items_per_call: usize,
    pub items_size: usize,
}

impl CallLimits {
    pub fn from_settings(limits: &LimitSettings) -> Self {
        let size =
            |value: bytesize::ByteSize| usize::try_from(value.as_u64()).unwrap_or(usize::MAX);
        Self {
            state_key_size: size(limits.state_key_size),
            state_value_size: size(limits.state_value_size),
            state_per_target: size(limits.state_per_target),
            state_per_connector: limits.state_per_connector.as_u64(),
            log_line_size: size(limits.log_line_size),
            log_lines_per_call: limits.log_lines_per_call,
            items_per_call: usize::try_from(limits.items_per_call).unwrap_or(usize::MAX),
            items_size: size(limits.items_size),
        }
    }

    /// The most one transfer from the plugin may copy into the host (wasmtime's hostcall fuel,
    /// counted in bytes of the host's copy): enough for a result of `items_size` and for a state
    /// write of the largest key and value, and no more.
    pub fn transfer_cap(&self) -> usize {
        self.items_size
            .max(self.state_key_size.saturating_add(self.state_value_size))
            .saturating_add(TRANSFER_MARGIN)
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self::from_settings(&LimitSettings::default())
    }
}

/// A bound a call ran into: which one, for which connector, and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connector '{connector}': {what} (limits.{limit})")]
pub struct LimitExceeded {
    pub connector: String,
    /// The `[connectors.NAME.limits]` field.
    pub limit: &'static str,
    pub what: String,
}

/// The message of a wasmtime lift that ran out of hostcall fuel.
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Whether `error` is a transfer stopped by the hostcall fuel.
pub fn is_transfer_cap(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains(FUEL_EXHAUSTED)
}

/// Bytes the host holds for one lifted item: the record itself, its text, and one `String` per
/// author and category (what wasmtime charges against the hostcall fuel for it).
pub fn item_size(item: &WitItem) -> usize {
    let optional = [
        &item.title,
        &item.link,
        &item.published,
        &item.updated,
        &item.summary,
        &item.content,
    ];
    let text: usize = item.id.len()
        + optional
            .iter()
            .map(|field| field.as_ref().map_or(0, String::len))
            .sum::<usize>();
    let lists: usize = item
        .authors
        .iter()
        .chain(&item.categories)
        .map(|entry| size_of::<String>() + entry.len())
        .sum();
    size_of::<WitItem>() + text + lists
}

/// Checks a lifted result's items (and the other text it carries) against the bounds, before
/// the host builds anything from them.
pub fn check_items<'a>(
    connector: &str,
    limits: &CallLimits,
    items: &[WitItem],
    other_text: impl IntoIterator<Item = Option<&'a String>>,
) -> Result<(), LimitExceeded> {
    let size = items.iter().map(item_size).sum::<usize>()
        + other_text
            .into_iter()
            .map(|text| text.map_or(0, String::len))
            .sum::<usize>();
    check_counted(connector, limits, items.len(), size, "items")
}

/// Checks `count` records (`what`: items, products) of `size` bytes in all against
/// `items_per_call` and `items_size`.
pub fn check_counted(
    connector: &str,
    limits: &CallLimits,
    count: usize,
    size: usize,
    what: &str,
) -> Result<(), LimitExceeded> {
    let over = |limit, what| LimitExceeded {
        connector: connector.to_string(),
        limit,
        what,
    };
    if count > limits.items_per_call {
        return Err(over(
            "items_per_call",
            format!(
                "the plugin returned {count} {what}, more than {}",
                limits.items_per_call
            ),
        ));
    }
    if size > limits.items_size {
        return Err(over(
            "items_size",
            format!(
                "the plugin returned {size} bytes of {what}, more than {}",
                limits.items_size
            ),
        ));
    }
    Ok(())
}

/// `text` cut to at most `max` bytes (on a character boundary), with a marker saying how long
/// it was; unchanged when it fits.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [cut: {} bytes in all]",
        &text[..end],
        text.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, content: &str, authors: &[&str]) -> WitItem {
        WitItem {
            id: id.into(),
            title: None,
            link: None,
            published: None,
            updated: None,
            authors: authors.iter().map(|a| a.to_string()).collect(),
            summary: None,
            content: Some(content.into()),
            categories: vec![],
        }
    }

    #[test]
    fn clip_keeps_what_fits_and_cuts_on_a_character_boundary() {
        assert_eq!(clip("short", 5), "short");
        assert!(matches!(clip("short", 5), Cow::Borrowed(_)));
        // "é" is two bytes: a cut at byte 2 would split it.
        assert_eq!(clip("aébc", 2), "a… [cut: 5 bytes in all]");
        assert_eq!(clip("abcdef", 3), "abc… [cut: 6 bytes in all]");
    }

    #[test]
    fn an_item_costs_its_record_its_text_and_its_list_entries() {
        let one = item("id", "body", &["a", "bc"]);
        assert_eq!(
            item_size(&one),
            size_of::<WitItem>() + 2 + 4 + 2 * size_of::<String>() + 3
        );
    }

    #[test]
    fn items_are_checked_by_count_then_by_size() {
        let limits = CallLimits {
            items_per_call: 2,
            items_size: 2 * size_of::<WitItem>() + 10,
            ..CallLimits::default()
        };
        let fits = [item("a", "1234", &[]), item("b", "1234", &[])];
        assert_eq!(check_items("c", &limits, &fits, [None]), Ok(()));
        let cursor = "xx".to_string();
        let error = check_items("c", &limits, &fits, [Some(&cursor)]).unwrap_err();
        assert_eq!(error.limit, "items_size", "{error}");
        assert_eq!(
            error.to_string(),
            format!(
                "connector 'c': the plugin returned {} bytes of items, more than {} (limits.items_size)",
                limits.items_size + 2,
                limits.items_size
            )
        );
        let three = [item("a", "", &[]), item("b", "", &[]), item("c", "", &[])];
        let error = check_items("c", &limits, &three, [None]).unwrap_err();
        assert_eq!(error.limit, "items_per_call", "{error}");
    }

    #[test]
    fn the_transfer_cap_covers_the_largest_result_and_state_write() {
        let limits = CallLimits {
            items_size: 1 << 20,
            state_key_size: 1024,
            state_value_size: 4 << 20,
            ..CallLimits::default()
        };
        assert_eq!(limits.transfer_cap(), (4 << 20) + 1024 + TRANSFER_MARGIN);
        let limits = CallLimits {
            items_size: 8 << 20,
            ..limits
        };
        assert_eq!(limits.transfer_cap(), (8 << 20) + TRANSFER_MARGIN);
    }
}
