//! Host-side item filters, for every connector: `[connectors.NAME.filters]` drops items by
//! category (`x:reply`, `x:retweet`, …), by hashtag (`#ad`, matched as a category, case
//! folded) or by a regular expression over title, summary and content, before a poll's items
//! are stored. The counts of what each filter dropped go to `/status` through the stats module.
//!
//! The regex is compiled once, when the config is deserialized ([`MatchPattern`]), with its
//! size limits set, so a bad or oversized pattern is a config error at its field and no item
//! can make matching cost more than the compiled program allows.

use serde::{Deserialize, Deserializer};
use tsunagi_backends::Item;

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// The compiled program's size limit (the `regex` crate's `size_limit`, also used for its lazy
/// DFA cache).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Entries in one drop list.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// A compiled `drop_matching` pattern.
#[derive(Clone, Debug)]
pub struct MatchPattern(regex::Regex);

impl MatchPattern {
    /// Compiles `pattern` with the size limits; the error says why, for the config report.
    pub fn new(pattern: &str) -> Result<MatchPattern, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "the pattern is {} bytes; at most {MAX_PATTERN_BYTES} are allowed",
                pattern.len()
            ));
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(MatchPattern)
            .map_err(|err| format!("not a valid regular expression: {err}"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for MatchPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> Deserialize<'de> for MatchPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        MatchPattern::new(&pattern).map_err(serde::de::Error::custom)
    }
}

/// `[connectors.NAME.filters]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterSettings {
    /// Items carrying any of these categories are dropped (compared case-insensitively).
    #[serde(default)]
    pub drop_categories: Vec<String>,
    /// Items carrying any of these hashtags are dropped: `ad` or `#ad`, matched against the
    /// categories `#ad` (case-insensitively).
    #[serde(default)]
    pub drop_hashtags: Vec<String>,
    /// Items whose title, summary or content matches are dropped.
    #[serde(default)]
    pub drop_matching: Option<MatchPattern>,
}

/// Which filter dropped an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Category,
    Hashtag,
    Matching,
}

/// What one pass dropped, per filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub by_category: u64,
    pub by_hashtag: u64,
    pub by_matching: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.by_category + self.by_hashtag + self.by_matching
    }
}

/// Decides, item by item, whether to keep it.
pub trait ItemFilter: Send + Sync {
    /// The filter that drops `item`, or `None` to keep it.
    fn verdict(&self, item: &Item) -> Option<FilterKind>;

    /// Keeps the items no filter drops, in order, and counts the others.
    fn apply(&self, items: Vec<Item>) -> (Vec<Item>, Dropped) {
        let mut dropped = Dropped::default();
        let kept = items
            .into_iter()
            .filter(|item| match self.verdict(item) {
                None => true,
                Some(FilterKind::Category) => {
                    dropped.by_category += 1;
                    false
                }
                Some(FilterKind::Hashtag) => {
                    dropped.by_hashtag += 1;
                    false
                }
                Some(FilterKind::Matching) => {
                    dropped.by_matching += 1;
                    false
                }
            })
            .collect();
        (kept, dropped)
    }
}

/// The filters of one connector, ready to run.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    categories: Vec<String>,
    hashtags: Vec<String>,
    matching: Option<MatchPattern>,
}

impl Filters {
    pub fn new(settings: &FilterSettings) -> Filters {
        let fold = |text: &str| text.trim().to_lowercase();
        Filters {
            categories: settings.drop_categories.iter().map(|c| fold(c)).collect(),
            hashtags: settings
                .drop_hashtags
                .iter()
                .map(|tag| format!("#{}", fold(tag).trim_start_matches('#')))
                .collect(),
            matching: settings.drop_matching.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty() && self.hashtags.is_empty() && self.matching.is_none()
    }
}

impl ItemFilter for Filters {
    fn verdict(&self, item: &Item) -> Option<FilterKind> {
        if !self.categories.is_empty() || !self.hashtags.is_empty() {
            for category in &item.categories {
                let folded = category.trim().to_lowercase();
                if self.categories.contains(&folded) {
                    return Some(FilterKind::Category);
                }
                if self.hashtags.contains(&folded) {
                    return Some(FilterKind::Hashtag);
                }
            }
        }
        if let Some(pattern) = &self.matching {
            let texts = [&item.title, &item.summary, &item.content];
            if texts
                .into_iter()
                .flatten()
                .any(|text| pattern.0.is_match(text))
            {
                return Some(FilterKind::Matching);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, categories: &[&str], content: &str) -> Item {
        Item {
            id: id.into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            content: Some(content.into()),
            ..Item::default()
        }
    }

    #[test]
    fn each_filter_drops_and_counts_its_own() {
        let settings: FilterSettings = toml::from_str(
            r##"
            drop_categories = ["x:reply", "X:Retweet"]
            drop_hashtags = ["ad", "#Promo"]
            drop_matching = "(?i)giveaway"
            "##,
        )
        .unwrap();
        let filters = Filters::new(&settings);
        let items = vec![
            item("keep", &["#rust"], "hello"),
            item("reply", &["x:reply", "#ad"], "hi"),
            item("retweet", &["x:retweet"], "RT"),
            item("ad", &["#AD"], "buy"),
            item("promo", &["#promo"], "buy"),
            item("regex", &[], "a GiveAway today"),
            item("quote", &["x:quote"], "kept: not listed"),
        ];
        let (kept, dropped) = filters.apply(items);
        let ids: Vec<&str> = kept.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["keep", "quote"]);
        assert_eq!(
            dropped,
            Dropped {
                by_category: 2,
                by_hashtag: 2,
                by_matching: 1
            }
        );
        assert_eq!(dropped.total(), 5);
        let title_only = Item {
            id: "t".into(),
            title: Some("Giveaway".into()),
            ..Item::default()
        };
        assert_eq!(filters.verdict(&title_only), Some(FilterKind::Matching));
    }

    #[test]
    fn no_filters_keep_everything() {
        let filters = Filters::new(&FilterSettings::default());
        assert!(filters.is_empty());
        let (kept, dropped) = filters.apply(vec![item("a", &["x:reply"], "x")]);
        assert_eq!(kept.len(), 1);
        assert_eq!(dropped.total(), 0);
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        let err = toml::from_str::<FilterSettings>(r#"drop_matching = "(unclosed""#).unwrap_err();
        assert!(
            err.to_string().contains("not a valid regular expression"),
            "{err}"
        );
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(
            MatchPattern::new(&long)
                .unwrap_err()
                .contains("at most 4096")
        );
        // Within the byte limit, but a program far beyond the size limit.
        let err = MatchPattern::new(r"\w{1000}\w{1000}\w{1000}").unwrap_err();
        assert!(err.contains("size limit"), "{err}");
    }
}
