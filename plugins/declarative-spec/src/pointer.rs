//! JSON pointers (RFC 6901): checked once at load, then resolved per record.

/// Why `pointer` is not a JSON pointer, if it is not.
pub fn problem(pointer: &str) -> Option<String> {
    if pointer.is_empty() {
        return None;
    }
    if !pointer.starts_with('/') {
        return Some(format!(
            "{pointer:?} is not a JSON pointer: it must be empty or start with '/' (e.g. \"/items\")"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Some(format!(
                "{pointer:?} is not a JSON pointer: '~' must be followed by 0 or 1"
            ));
        }
    }
    None
}
