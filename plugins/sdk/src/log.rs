//! Logging into the host's structured log, where each line is tagged with the connector and the
//! target or job of the current call. The host caps how many lines one call may write, so log
//! what an operator needs, not every step.
//!
//! The macros [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error) take `format!` arguments:
//!
//! ```no_run
//! let url = "https://example.com/feed";
//! tsunagi_sdk::warn!("{url} moved permanently; consider updating the target");
//! tsunagi_sdk::log::info("polled");
//! ```

use crate::__bindings::base::tsunagi::connector::log as wit;

pub use wit::Level;

/// Writes one line at `level`.
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Writes one line at [`Level::Trace`]: step-by-step detail.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`]: detail for debugging a connector.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`]: a normal event worth a line.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`]: something odd that did not fail the call.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`]: a failure.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Logs a `format!`-style message at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}
