//! Defaults and validated ranges of the `[connectors.NAME.limits]` fields that bound what a
//! plugin can make the host allocate, store, print or wait for outside its own linear memory:
//! request bodies, requests in flight, state, log lines and the items a call returns.

use super::{Checks, LimitSettings};
use bytesize::ByteSize;

pub(super) fn default_request_size() -> ByteSize {
    ByteSize::mib(1)
}
pub(super) fn default_requests_per_call() -> u32 {
    1000
}
pub(super) fn default_requests_in_flight() -> u32 {
    8
}
pub(super) fn default_state_key_size() -> ByteSize {
    ByteSize::kib(1)
}
pub(super) fn default_state_value_size() -> ByteSize {
    ByteSize::kib(64)
}
pub(super) fn default_state_per_target() -> ByteSize {
    ByteSize::mib(1)
}
pub(super) fn default_state_per_connector() -> ByteSize {
    ByteSize::mib(16)
}
pub(super) fn default_log_line_size() -> ByteSize {
    ByteSize::kib(4)
}
pub(super) fn default_log_lines_per_call() -> u32 {
    200
}
pub(super) fn default_items_per_call() -> u32 {
    10_000
}
pub(super) fn default_items_size() -> ByteSize {
    ByteSize::mib(16)
}

impl LimitSettings {
    /// `connector_requests_in_flight`, or its default for a connector running `concurrency` calls.
    pub fn connector_requests_in_flight_for(&self, concurrency: usize) -> usize {
        match self.connector_requests_in_flight {
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
            None => concurrency.saturating_mul(2),
        }
    }
}

/// A size in the largest binary unit that divides it: `64 KiB`, `1 GiB`, `100 B`.
fn size_text(bytes: u64) -> String {
    let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in units {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// Checks each bound against its range; `at` turns `limits.x` into the connector's field path.
pub(super) fn check(limits: &LimitSettings, at: &dyn Fn(&str) -> String, checks: &mut Checks) {
    let sizes = [
        (
            "limits.request_size",
            limits.request_size,
            1,
            ByteSize::mib(256),
        ),
        (
            "limits.state_key_size",
            limits.state_key_size,
            1,
            ByteSize::kib(64),
        ),
        (
            "limits.state_value_size",
            limits.state_value_size,
            1,
            ByteSize::mib(16),
        ),
        (
            "limits.state_per_target",
            limits.state_per_target,
            1,
            ByteSize::mib(256),
        ),
        (
            "limits.state_per_connector",
            limits.state_per_connector,
            1,
            ByteSize::gib(1),
        ),
        (
            "limits.log_line_size",
            limits.log_line_size,
            64,
            ByteSize::mib(1),
        ),
        (
            "limits.items_size",
            limits.items_size,
            1024,
            ByteSize::gib(1),
        ),
    ];
    for (field, value, min, max) in sizes {
        if value.as_u64() < min || value > max {
            checks.error(
                &at(field),
                format!(
                    "must be between {} and {}",
                    size_text(min),
                    size_text(max.as_u64())
                ),
            );
        }
    }
    let counts = [
        (
            "limits.requests_per_call",
            Some(limits.requests_per_call),
            100_000,
        ),
        (
            "limits.requests_in_flight",
            Some(limits.requests_in_flight),
            256,
        ),
        (
            "limits.connector_requests_in_flight",
            limits.connector_requests_in_flight,
            65_536,
        ),
        (
            "limits.log_lines_per_call",
            Some(limits.log_lines_per_call),
            100_000,
        ),
        (
            "limits.items_per_call",
            Some(limits.items_per_call),
            1_000_000,
        ),
    ];
    for (field, value, max) in counts {
        if let Some(value) = value
            && !(1..=max).contains(&value)
        {
            checks.error(&at(field), format!("must be between 1 and {max}"));
        }
    }
    if limits.state_per_target < limits.state_key_size {
        checks.error(
            &at("limits.state_per_target"),
            "is smaller than limits.state_key_size: no key would fit",
        );
    }
}
