//! Dates as feeds write them: RFC 822 / 2822 (RSS) with the broken variants real servers send,
//! and W3CDTF / ISO 8601 / RFC 3339 (Atom, Dublin Core, JSON Feed) down to a year alone.
//! A date that cannot be read is `None`, never a guess at "now".

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Reads `text` in whichever of the two families it is written in.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() || text.len() > 128 {
        return None;
    }
    if text.as_bytes()[0].is_ascii_digit()
        && let Some(at) = w3cdtf(text)
    {
        return Some(at);
    }
    rfc822(text)
}

/// W3CDTF and its ISO 8601 relatives: `2024`, `2024-05`, `2024-05-01`, `2024-05-01T12:00Z`,
/// `2024-05-01T12:00:00.25+09:00`, `2024-05-01 12:00:00`, `20240501T120000Z`, offsets with or
/// without a colon, lower-case `t`/`z`. No offset means UTC.
pub fn w3cdtf(text: &str) -> Option<DateTime<Utc>> {
    let (date_part, time_part) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(text[at + 1..].trim())),
        None => (text, None),
    };
    let date = iso_date(date_part)?;
    let Some(time_part) = time_part.filter(|t| !t.is_empty()) else {
        return Some(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)));
    };
    let (clock, offset) = split_offset(time_part)?;
    let time = iso_time(clock)?;
    let local = NaiveDateTime::new(date, time);
    Some(
        offset
            .from_local_datetime(&local)
            .single()?
            .with_timezone(&Utc),
    )
}

fn iso_date(text: &str) -> Option<NaiveDate> {
    let field = |part: &str| -> Option<u32> {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let parts: Vec<&str> = text.split('-').collect();
    let (year, month, day) = match parts.as_slice() {
        [compact] if compact.len() == 8 => (
            field(&compact[..4])?,
            field(&compact[4..6])?,
            field(&compact[6..])?,
        ),
        [year] if year.len() == 4 => (field(year)?, 1, 1),
        [year, month] if year.len() == 4 => (field(year)?, field(month)?, 1),
        [year, month, day] if year.len() == 4 => (field(year)?, field(month)?, field(day)?),
        _ => return None,
    };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// `12:00`, `12:00:00`, `12:00:00.123`, `120000`.
fn iso_time(text: &str) -> Option<NaiveTime> {
    let (whole, fraction) = match text.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let numbers: Vec<u32> = if whole.contains(':') {
        whole
            .split(':')
            .map(|part| part.parse().ok())
            .collect::<Option<_>>()?
    } else if whole.len() == 6 || whole.len() == 4 {
        (0..whole.len() / 2)
            .map(|i| whole.get(i * 2..i * 2 + 2)?.parse().ok())
            .collect::<Option<_>>()?
    } else {
        return None;
    };
    let nanos = match fraction {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = &digits[..digits.len().min(9)];
            digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    match numbers.as_slice() {
        [hour, minute] => NaiveTime::from_hms_nano_opt(*hour, *minute, 0, nanos),
        [hour, minute, second] => {
            // A leap second as feeds write it: the last second of the minute.
            NaiveTime::from_hms_nano_opt(*hour, *minute, (*second).min(59), nanos)
        }
        _ => None,
    }
}

/// Splits `12:00:00+09:00` into the clock and its offset; `Z`, `+0900`, `+09`, `-05:00` and no
/// offset at all (UTC).
fn split_offset(text: &str) -> Option<(&str, FixedOffset)> {
    if let Some(clock) = text.strip_suffix(['Z', 'z']) {
        return Some((clock.trim_end(), FixedOffset::east_opt(0)?));
    }
    if let Some(at) = text.rfind(['+', '-']) {
        let (clock, offset) = text.split_at(at);
        return Some((clock.trim_end(), numeric_offset(offset)?));
    }
    Some((text, FixedOffset::east_opt(0)?))
}

/// `+0900`, `+09:00`, `-05`, `+9` (hours alone).
fn numeric_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        3 => (
            digits[..1].parse::<i32>().ok()?,
            digits[1..].parse::<i32>().ok()?,
        ),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// RFC 822 and what servers make of it: the day name optional (and wrong, or followed by a
/// period), day and month in either order, full or three-letter month names (`Sept` too), two-
/// or four-digit years, seconds optional, a time zone as a name (`GMT`, `EST`, military letters),
/// a number (`+0900`, `+09:00`, `GMT+9`), or missing (UTC); commas and case as they come.
pub fn rfc822(text: &str) -> Option<DateTime<Utc>> {
    let cleaned: String = text
        .chars()
        .map(|c| if c == ',' { ' ' } else { c })
        .collect();
    let mut tokens: Vec<&str> = cleaned.split_whitespace().collect();
    if tokens
        .first()
        .is_some_and(|first| weekday(first.trim_end_matches('.')))
    {
        tokens.remove(0);
    }
    // "01 May 2024", "May 01 2024", "1-May-2024".
    if !tokens.is_empty() && tokens[0].matches('-').count() == 2 {
        let joined: Vec<&str> = tokens[0].split('-').collect();
        let rest = tokens.split_off(1);
        tokens = joined;
        tokens.extend(rest);
    }
    if tokens.len() < 3 {
        return None;
    }
    let (day, month) = match (tokens[0].parse::<u32>(), month(tokens[1])) {
        (Ok(day), Some(month)) => (day, month),
        _ => (tokens[1].parse::<u32>().ok()?, month(tokens[0])?),
    };
    let year = match tokens[2].parse::<i32>().ok()? {
        year @ 0..=49 if tokens[2].len() <= 2 => 2000 + year,
        year @ 50..=99 if tokens[2].len() <= 2 => 1900 + year,
        year if tokens[2].len() == 4 => year,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let mut rest = &tokens[3..];
    let time = match rest.first() {
        Some(clock) if clock.contains(':') => {
            rest = &rest[1..];
            clock_time(clock)?
        }
        _ => NaiveTime::MIN,
    };
    let offset = match rest {
        [] => FixedOffset::east_opt(0)?,
        [zone, ..] => zone_offset(zone)?,
    };
    Some(
        offset
            .from_local_datetime(&NaiveDateTime::new(date, time))
            .single()?
            .with_timezone(&Utc),
    )
}

fn clock_time(text: &str) -> Option<NaiveTime> {
    let mut parts = text.split(':');
    let hour = parts.next()?.parse().ok()?;
    let minute = parts.next()?.parse().ok()?;
    let second = match parts.next() {
        Some(second) => second.split('.').next()?.parse::<u32>().ok()?.min(59),
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(hour, minute, second)
}

fn weekday(token: &str) -> bool {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = token.to_ascii_lowercase();
    lower.len() >= 3
        && lower.bytes().all(|b| b.is_ascii_alphabetic())
        && DAYS.iter().any(|day| day.starts_with(&lower))
}

fn month(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let lower = token.trim_end_matches('.').to_ascii_lowercase();
    if lower.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|name| name.starts_with(&lower))
        .map(|index| index as u32 + 1)
}

/// RFC 822's zone names, military letters, numeric offsets, and `GMT+9` / `UTC-05:00`.
fn zone_offset(zone: &str) -> Option<FixedOffset> {
    let upper = zone.to_ascii_uppercase();
    let hours = match upper.as_str() {
        "GMT" | "UT" | "UTC" | "Z" | "WET" => 0,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        "CET" | "BST" => 1,
        "CEST" | "EET" => 2,
        "JST" | "KST" => 9,
        letter if letter.len() == 1 => {
            // RFC 822's military zones (A–I, K–M east; N–Y west). RFC 2822 notes their sign was
            // specified backwards and says to treat them as -0000; feeds that use them mean UTC.
            let c = letter.as_bytes()[0];
            if c.is_ascii_alphabetic() && c != b'J' {
                0
            } else {
                return None;
            }
        }
        _ => {
            let numeric = upper
                .strip_prefix("GMT")
                .or_else(|| upper.strip_prefix("UTC"))
                .unwrap_or(&upper);
            return numeric_offset(numeric);
        }
    };
    FixedOffset::east_opt(hours * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<String> {
        parse(text).map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    #[test]
    fn rfc822_and_its_variants() {
        for (text, expected) in [
            ("Wed, 01 May 2024 21:00:00 +0900", "2024-05-01T12:00:00Z"),
            ("Wed, 1 May 2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("1 May 2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 24 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("Sat, 01 May 99 12:00:00 GMT", "1999-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 12:00 GMT", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 08:00:00 EDT", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 04:00:00 PST", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 21:00:00 +09:00", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 21:00:00 GMT+9", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 12:00:00", "2024-05-01T12:00:00Z"),
            (
                "Wednesday, 01 May 2024 12:00:00 GMT",
                "2024-05-01T12:00:00Z",
            ),
            ("wed, 01 may 2024 12:00:00 gmt", "2024-05-01T12:00:00Z"),
            ("Wed,01 May 2024 12:00:00 Z", "2024-05-01T12:00:00Z"),
            ("Thu, 01 May 2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("Wed, 04 Sept 2024 12:00:00 GMT", "2024-09-04T12:00:00Z"),
            (
                "Wed, 01 September 2024 12:00:00 GMT",
                "2024-09-01T12:00:00Z",
            ),
            ("Wed, May 01 2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("01-May-2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("Wed., 01 May 2024 12:00:00 GMT", "2024-05-01T12:00:00Z"),
            ("Wed, 01 May 2024 12:00:60 GMT", "2024-05-01T12:00:59Z"),
            ("Wed, 01 May 2024", "2024-05-01T00:00:00Z"),
        ] {
            assert_eq!(read(text).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn w3cdtf_and_iso_8601() {
        for (text, expected) in [
            ("2024", "2024-01-01T00:00:00Z"),
            ("2024-05", "2024-05-01T00:00:00Z"),
            ("2024-05-01", "2024-05-01T00:00:00Z"),
            ("2024-05-01T12:00Z", "2024-05-01T12:00:00Z"),
            ("2024-05-01T21:00:00+09:00", "2024-05-01T12:00:00Z"),
            ("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00Z"),
            ("2024-05-01t12:00:00z", "2024-05-01T12:00:00Z"),
            ("2024-05-01 12:00:00", "2024-05-01T12:00:00Z"),
            ("2024-05-01T07:00:00-0500", "2024-05-01T12:00:00Z"),
            ("2024-05-01T21:00:00+09", "2024-05-01T12:00:00Z"),
            ("20240501T120000Z", "2024-05-01T12:00:00Z"),
            ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),
        ] {
            assert_eq!(read(text).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn unreadable_dates_are_none() {
        for text in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-02-30T00:00:00Z",
            "Wed, 32 May 2024 12:00:00 GMT",
            "Wed, 01 Foo 2024 12:00:00 GMT",
            "12:00:00",
            "2024-05-01T25:00:00Z",
            "Wed, 01 May 2024 12:00:00 +2500",
            &"9".repeat(200),
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
    }
}
