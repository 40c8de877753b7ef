//! Builder-style helpers on the WIT `item` record, the unit pollers and searchers produce.

pub use crate::__bindings::base::tsunagi::connector::types::Item;

/// A value for an optional text field: `&str`, `String`, `&String`, or an `Option` of `&str` or
/// `String` (`None` clears the field). Lets setters such as [`Item::title`] take a literal and an
/// upstream's optional field alike.
pub trait IntoOptionalString {
    /// The value as the field stores it.
    fn into_optional_string(self) -> Option<String>;
}

impl IntoOptionalString for &str {
    fn into_optional_string(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl IntoOptionalString for String {
    fn into_optional_string(self) -> Option<String> {
        Some(self)
    }
}

impl IntoOptionalString for &String {
    fn into_optional_string(self) -> Option<String> {
        Some(self.clone())
    }
}

impl IntoOptionalString for Option<String> {
    fn into_optional_string(self) -> Option<String> {
        self
    }
}

impl IntoOptionalString for Option<&str> {
    fn into_optional_string(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

/// `Item` is the WIT record itself (all fields public). Build one with a struct literal and
/// `..Default::default()`, or with [`Item::new`] and the setters:
///
/// ```
/// use tsunagi_sdk::Item;
///
/// let a = Item::new("post-1")
///     .title("Hello")
///     .link("https://example.com/post-1")
///     .author("Ann")
///     .category("news");
/// let b = Item {
///     id: "post-1".into(),
///     title: Some("Hello".into()),
///     link: Some("https://example.com/post-1".into()),
///     authors: vec!["Ann".into()],
///     categories: vec!["news".into()],
///     ..Default::default()
/// };
/// assert_eq!(a, b);
/// ```
///
/// The optional setters take a `&str` or `String`, or an `Option` of either straight from the
/// upstream's document (see [`IntoOptionalString`]).
impl Item {
    /// An item with `id` and nothing else. The id must be stable for the same upstream item:
    /// the host deduplicates on it.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Sets the headline or name.
    #[must_use]
    pub fn title(mut self, title: impl IntoOptionalString) -> Self {
        self.title = title.into_optional_string();
        self
    }

    /// Sets where the item lives on the web.
    #[must_use]
    pub fn link(mut self, link: impl IntoOptionalString) -> Self {
        self.link = link.into_optional_string();
        self
    }

    /// Sets the publication time: RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
    #[must_use]
    pub fn published(mut self, published: impl IntoOptionalString) -> Self {
        self.published = published.into_optional_string();
        self
    }

    /// Sets the last-modification time: RFC 3339 in UTC.
    #[must_use]
    pub fn updated(mut self, updated: impl IntoOptionalString) -> Self {
        self.updated = updated.into_optional_string();
        self
    }

    /// Adds one author name.
    #[must_use]
    pub fn author(mut self, name: impl Into<String>) -> Self {
        self.authors.push(name.into());
        self
    }

    /// Replaces the author names.
    #[must_use]
    pub fn authors(mut self, names: Vec<String>) -> Self {
        self.authors = names;
        self
    }

    /// Sets the short plain or HTML text.
    #[must_use]
    pub fn summary(mut self, summary: impl IntoOptionalString) -> Self {
        self.summary = summary.into_optional_string();
        self
    }

    /// Sets the full body, HTML or text.
    #[must_use]
    pub fn content(mut self, content: impl IntoOptionalString) -> Self {
        self.content = content.into_optional_string();
        self
    }

    /// Adds one tag, category or label.
    #[must_use]
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.categories.push(category.into());
        self
    }

    /// Replaces the tags, categories or labels.
    #[must_use]
    pub fn categories(mut self, categories: Vec<String>) -> Self {
        self.categories = categories;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_field_names_and_defaults_missing_fields() {
        let item = Item::new("a").title("T");
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(json["id"], "a");
        assert_eq!(json["title"], "T");
        assert!(json["link"].is_null());
        let back: Item = serde_json::from_str(r#"{"id":"a","title":"T"}"#).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn optional_setters_take_literals_and_options() {
        let none: Option<&str> = None;
        let body = "body".to_owned();
        let item = Item::new("a")
            .title("T")
            .link(Some("https://example.com/a".to_owned()))
            .summary(none)
            .content(&body);
        assert_eq!(item.title.as_deref(), Some("T"));
        assert_eq!(item.link.as_deref(), Some("https://example.com/a"));
        assert_eq!(item.summary, None);
        assert_eq!(item.content.as_deref(), Some("body"));
    }
}
