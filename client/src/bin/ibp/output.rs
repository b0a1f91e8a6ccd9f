//! Printing: human text or JSON on stdout, errors on stderr (or as JSON on stdout with
//! `--json`), progress bars on stderr only when it is a terminal, and the exit codes
//! documented in `client/README.md`. No message ever contains a capability.

use std::io::IsTerminal;
use std::time::Duration;

use ibp_client::proto::ErrorCode;
use ibp_client::Error;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Exit codes (documented in client/README.md).
pub mod exit {
    /// Unexpected failure or a reply the client could not understand.
    pub const OTHER: u8 = 1;
    /// Bad capability or argument (clap's own usage errors also exit 2).
    pub const BAD_INPUT: u8 = 3;
    /// The depot refused (an IBP error code).
    pub const REFUSED: u8 = 4;
    /// Could not connect, or the connection broke.
    pub const CONNECTION: u8 = 5;
    /// A deadline passed.
    pub const TIMEOUT: u8 = 6;
    /// The depot stayed out of connections (-66) past the retry budget.
    pub const BUSY: u8 = 7;
    /// Verification found differing blocks, or a network digest (`--chksum`) did not match.
    pub const VERIFY: u8 = 8;
    /// A local file could not be read or written.
    pub const LOCAL_FILE: u8 = 9;
}

/// A failed command: the library error or a local problem, with a hint.
#[derive(Debug)]
pub enum Failure {
    /// From the client library.
    Client(Error),
    /// Bad input found by the command itself.
    BadInput(String),
    /// A local file problem.
    LocalFile(String),
    /// Already printed in full (an mcopy with failed targets): exit with this code only.
    Reported(u8),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => exit::BAD_INPUT,
            Failure::LocalFile(_) => exit::LOCAL_FILE,
            Failure::Client(e) => client_exit_code(e),
            Failure::Reported(code) => *code,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Client(e) => e.to_string(),
            Failure::BadInput(m) | Failure::LocalFile(m) => m.clone(),
            Failure::Reported(_) => String::new(),
        }
    }

    fn hint(&self) -> Option<&'static str> {
        let Failure::Client(e) = self else { return None };
        Some(match e {
            Error::Timeout { .. } => "the depot did not answer in time; try a larger --timeout",
            Error::Io(_) => "is the depot running and reachable at that address?",
            Error::BackoffExhausted { .. } => "the depot is busy; try again later",
            Error::DigestMismatch { .. } => "the data was damaged in transit; try again",
            _ => match e.ibp_code()? {
                ErrorCode::CapNotFound | ErrorCode::InvalidReadCap | ErrorCode::InvalidWriteCap => {
                    "the capability is wrong, has expired, or the allocation was removed"
                }
                ErrorCode::LongDuration => {
                    "ask for a shorter --duration (or `inf` for the depot's maximum)"
                }
                ErrorCode::WouldExceedPolicy | ErrorCode::RsrcUnavail | ErrorCode::AllocFailed => {
                    "the depot has no room for that size and lease; try less, or shorter"
                }
                ErrorCode::WouldExceedLimit => "the range goes past the allocation's size or limit",
                ErrorCode::WrongPasswd => {
                    "wrong status password (--password or IBP_STATUS_PASSWORD)"
                }
                _ => return None,
            },
        })
    }
}

/// The exit code a library error maps to.
pub fn client_exit_code(e: &Error) -> u8 {
    match e {
        Error::BadCapability(_) | Error::WrongCapKind { .. } | Error::InvalidArgument(_) => {
            exit::BAD_INPUT
        }
        Error::Ibp(_) | Error::UnknownCode(_) => exit::REFUSED,
        Error::Io(_) => exit::CONNECTION,
        Error::Timeout { .. } => exit::TIMEOUT,
        Error::Backoff { .. } | Error::BackoffExhausted { .. } => exit::BUSY,
        Error::VerifyMismatch { .. } | Error::DigestMismatch { .. } => exit::VERIFY,
        Error::LocalIo(_) => exit::LOCAL_FILE,
        Error::StreamFailed { source, .. } => client_exit_code(source),
        Error::Protocol(_) => exit::OTHER,
    }
}

/// Prints a failure: JSON on stdout with `--json`, else `ibp: error: …` on stderr.
pub fn report_failure(failure: &Failure, json: bool) {
    if matches!(failure, Failure::Reported(_)) {
        return;
    }
    let code = match failure {
        Failure::Client(e) => e.ibp_code(),
        _ => None,
    };
    if json {
        let value = json!({
            "error": {
                "message": failure.message(),
                "ibp_code": code.map(ErrorCode::code),
                "ibp_name": code.map(ErrorCode::name),
                "hint": failure.hint(),
                "exit_code": failure.exit_code(),
            }
        });
        println!("{value}");
    } else {
        eprintln!("ibp: error: {}", failure.message());
        if let Some(hint) = failure.hint() {
            eprintln!("ibp: hint: {hint}");
        }
    }
}

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// A byte progress bar on stderr, only when stderr is a terminal and output is for humans.
pub fn progress_bar(total: u64, enabled: bool) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// An elapsed-time spinner on stderr for a copy (the depot reports nothing until it is over),
/// only when stderr is a terminal and output is for humans.
pub fn spinner(message: String, enabled: bool) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// A library error as JSON: message, IBP code and name, exit code.
pub fn error_json(e: &Error) -> serde_json::Value {
    let code = e.ibp_code();
    json!({
        "message": e.to_string(),
        "ibp_code": code.map(ErrorCode::code),
        "ibp_name": code.map(ErrorCode::name),
        "exit_code": client_exit_code(e),
    })
}

/// `12.3 MiB/s`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!("{}/s", ibp_client::units::format_size((bytes as f64 / secs) as u64))
}
