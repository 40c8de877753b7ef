//! The exit codes of `tsunagi`, the same for every command (listed in `tsunagi --help`), so a
//! script can tell a bad config from a host that is down from a partly refused import.

use std::process::ExitCode;

// 0: everything asked was done. 2: the command line itself is wrong (clap's own code).

/// The command ran and failed: the host refused, nothing matched, a store failed.
pub const FAILURE: u8 = 1;
/// The config file is missing, unreadable or invalid (the error says file:line:column).
pub const CONFIG: u8 = 3;
/// Part of the input was refused (each refusal printed) and the rest was done.
pub const PARTIAL: u8 = 4;
/// No host answered at the admin address tried.
pub const UNREACHABLE: u8 = 5;

/// For `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  everything asked was done
  1  the command failed (the host refused, nothing matched, a store failed)
  2  the command line is wrong
  3  the config file is missing, unreadable or invalid
  4  part of the input was refused (each refusal printed), the rest was done
  5  no host answered at the admin address tried";

/// The code for an error a command returned.
pub fn for_error(error: &anyhow::Error) -> ExitCode {
    let code = if error.chain().any(|cause| {
        cause
            .downcast_ref::<tsunagi::config::ConfigErrors>()
            .is_some()
    }) {
        CONFIG
    } else if error.chain().any(|cause| {
        cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|failure| failure.is_connect())
    }) {
        UNREACHABLE
    } else {
        FAILURE
    };
    ExitCode::from(code)
}
