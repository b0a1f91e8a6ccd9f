//! The client library's error type: one variant per cause, each message naming the cause
//! and never a capability (capabilities are secrets; PROTOCOL.md §4).

use std::fmt;
use std::io;
use std::time::Duration;

use crate::proto::netframe::FrameError;
use crate::proto::{CapKind, CapParseError, ErrorCode, ReplyError};

/// Everything a client call can fail with.
#[derive(Debug)]
pub enum Error {
    /// The connection failed (refused, reset, closed early).
    Io(io::Error),
    /// A connect, read or write deadline passed.
    Timeout {
        /// What was being waited for.
        what: &'static str,
    },
    /// A local file could not be read or written (never retried: a new connection won't help).
    LocalIo(io::Error),
    /// The depot refused with an IBP error code.
    Ibp(ErrorCode),
    /// The depot refused with a negative code outside PROTOCOL.md §7.1.
    UnknownCode(i32),
    /// The depot's reply made no sense (wrong shape, wrong length).
    Protocol(String),
    /// The depot announced it is closing the connection (`-66 <secs>`); the retry loop
    /// waits and tries again, so this surfaces only from calls that do not retry.
    Backoff {
        /// Seconds the depot asked us to wait.
        secs: f64,
    },
    /// The depot kept answering `-66` (out of connections) past our retry budget.
    BackoffExhausted {
        /// Attempts made.
        attempts: u32,
        /// Total time spent waiting.
        waited: Duration,
    },
    /// A capability string did not parse.
    BadCapability(CapParseError),
    /// The call needs another kind of capability.
    WrongCapKind {
        /// What the call needs.
        expected: CapKind,
        /// What it was given.
        actual: CapKind,
    },
    /// A caller-supplied value is out of range.
    InvalidArgument(String),
    /// A parallel transfer stream failed after all its retries.
    StreamFailed {
        /// Stream index.
        stream: usize,
        /// First byte (allocation offset) the stream had not confirmed.
        offset: u64,
        /// Retries used.
        retries: u32,
        /// The last error.
        source: Box<Error>,
    },
    /// A network digest (PROTOCOL.md §10) did not match what arrived: the bytes were damaged
    /// between the depot's disk and here. Nothing of the transfer is returned.
    DigestMismatch {
        /// Payload offset of the bad block's first byte, counted from the first byte the
        /// call asked for (for `load_chksum` at `o`, the allocation offset is `o + offset`;
        /// for a vector read, the offset in the spans' bytes in list order).
        offset: u64,
    },
    /// Verification found blocks whose CRC differs from the source.
    VerifyMismatch {
        /// How many blocks differ.
        blocks: usize,
        /// Allocation offset of the first differing block.
        first_offset: u64,
    },
}

impl Error {
    /// True when a fresh connection might succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(_)
            | Error::Timeout { .. }
            | Error::Backoff { .. }
            | Error::BackoffExhausted { .. } => true,
            Error::Ibp(code) => matches!(
                code,
                ErrorCode::SockRead
                    | ErrorCode::SockWrite
                    | ErrorCode::Connection
                    | ErrorCode::ServerTimeout
                    | ErrorCode::ServerRecovering
                    | ErrorCode::QueueFull
                    | ErrorCode::OutOfSockets
                    | ErrorCode::WouldBlock
            ),
            _ => false,
        }
    }

    /// The IBP code, when the depot sent one.
    pub fn ibp_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Ibp(code) => Some(*code),
            Error::StreamFailed { source, .. } => source.ibp_code(),
            _ => None,
        }
    }

    pub(crate) fn protocol(what: impl Into<String>) -> Error {
        Error::Protocol(what.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "connection error: {e}"),
            Error::LocalIo(e) => write!(f, "local file error: {e}"),
            Error::Timeout { what } => write!(f, "timed out {what}"),
            Error::Ibp(code) => write!(f, "depot refused: {code}"),
            Error::UnknownCode(code) => write!(f, "depot refused with unknown error code {code}"),
            Error::Protocol(what) => write!(f, "protocol error: {what}"),
            Error::Backoff { secs } => {
                write!(f, "depot closed the connection and asked to retry in {secs:.3} s")
            }
            Error::BackoffExhausted { attempts, waited } => write!(
                f,
                "depot is out of connections: gave up after {attempts} attempts and {:.1} s of back-off",
                waited.as_secs_f64()
            ),
            Error::BadCapability(e) => write!(f, "bad capability: {e}"),
            Error::WrongCapKind { expected, actual } => write!(
                f,
                "this needs a {} capability, but a {} capability was given",
                expected.word(),
                actual.word()
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::StreamFailed { stream, offset, retries, source } => write!(
                f,
                "stream {stream} failed at offset {offset} after {retries} retries: {source}"
            ),
            Error::DigestMismatch { offset } => write!(
                f,
                "network digest mismatch: the block at payload offset {offset} arrived damaged"
            ),
            Error::VerifyMismatch { blocks, first_offset } => write!(
                f,
                "verification failed: {blocks} block(s) differ, first at offset {first_offset}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::LocalIo(e) => Some(e),
            Error::StreamFailed { source, .. } => Some(source.as_ref()),
            Error::BadCapability(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Error::Timeout { what: "waiting for the depot" }
            }
            _ => Error::Io(e),
        }
    }
}

impl From<CapParseError> for Error {
    fn from(e: CapParseError) -> Self {
        Error::BadCapability(e)
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::DigestMismatch { offset } => Error::DigestMismatch { offset },
            FrameError::Overrun => Error::protocol("more payload than announced"),
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}

impl From<ReplyError> for Error {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Ibp(code) => Error::Ibp(code),
            ReplyError::UnknownCode(code) => Error::UnknownCode(code),
            ReplyError::Backoff(secs) => Error::Backoff { secs },
            ReplyError::Malformed(what) => Error::Protocol(what.to_owned()),
        }
    }
}

/// Result alias for the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
