//! Framing: find one bounded command or reply line in a receive buffer, then split it into
//! tokens.
//!
//! Step one ([`find_line`]) only answers "is a whole line buffered, and how long is it";
//! the caller keeps any bytes after it, because clients pipeline (PROTOCOL.md §1). Step two
//! ([`Tokens`]) splits like ACCRE's `strtok_r(" ")`: runs of separators collapse, so the
//! LStore client's empty path token (a double space) simply disappears (§2).

use std::fmt;

/// ACCRE's `read_command` limit: a longer line gets `-21` (PROTOCOL.md §2).
pub const MAX_LINE_BYTES: usize = 200 * 1024;

/// The buffered bytes hold no newline within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was exceeded.
    pub max: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.max)
    }
}

impl std::error::Error for LineTooLong {}

/// Length of the first complete line in `buf`, including its `\n`.
///
/// `Ok(None)` means "need more bytes". The limit is checked on what is buffered so far, so a
/// peer that never sends `\n` is refused as soon as `max` bytes have arrived.
pub fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, LineTooLong> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i + 1)),
        None if buf.len() >= max => Err(LineTooLong { max }),
        None => Ok(None),
    }
}

/// Strips one trailing `\n` and any `\r` before it.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

fn is_separator(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Iterator over the tokens of one line: separated by runs of spaces or tabs, with the line
/// end (`\n`, `\r\n`) trimmed first.
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    rest: &'a [u8],
}

/// Tokenizes one line (with or without its terminator).
pub fn tokens(line: &[u8]) -> Tokens<'_> {
    Tokens { rest: trim_line_end(line) }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| !is_separator(b))?;
        let rest = &self.rest[start..];
        let len = rest.iter().position(|&b| is_separator(b)).unwrap_or(rest.len());
        let (token, after) = rest.split_at(len);
        self.rest = after;
        Some(token)
    }
}

/// Appends a decimal integer without allocating (replies and requests are hot paths).
pub fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_keeps_the_rest() {
        let buf = b"1 8 k t 0 10 30\n1 8 k t";
        assert_eq!(find_line(buf, MAX_LINE_BYTES), Ok(Some(16)));
        assert_eq!(find_line(&buf[16..], MAX_LINE_BYTES), Ok(None));
        assert_eq!(find_line(b"", MAX_LINE_BYTES), Ok(None));
        assert_eq!(find_line(b"\n", MAX_LINE_BYTES), Ok(Some(1)));
    }

    #[test]
    fn limit_applies_without_newline() {
        assert_eq!(find_line(b"abc", 4), Ok(None));
        assert_eq!(find_line(b"abcd", 4), Err(LineTooLong { max: 4 }));
        assert_eq!(find_line(b"abc\n", 4), Ok(Some(4)));
        assert_eq!(find_line(b"abcd\n", 4), Err(LineTooLong { max: 4 }));
        let big = vec![b'1'; MAX_LINE_BYTES];
        assert!(find_line(&big, MAX_LINE_BYTES).is_err());
    }

    #[test]
    fn splits_like_strtok() {
        let got: Vec<&[u8]> =
            tokens(b"1 5  1#k ibp://h:1/0#x/1/WRITE tk 0 10 30 30 30 \r\n").collect();
        assert_eq!(got.len(), 10);
        assert_eq!(got[2], b"1#k");
        assert_eq!(got[9], b"30");
        let tabs: Vec<&[u8]> = tokens(b"\t1\t\t4 3  30 ").collect();
        assert_eq!(tabs, vec![&b"1"[..], b"4", b"3", b"30"]);
        assert_eq!(tokens(b"   \n").count(), 0);
        assert_eq!(tokens(b"").count(), 0);
    }
}
