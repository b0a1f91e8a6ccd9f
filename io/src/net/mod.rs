//! TCP on the ring: `TcpListener` (accept) and `TcpStream` (connect, read, write_all).
//!
//! Reads and writes pass buffer ownership (`(result, buf)` back), so a registered pool buffer
//! can go from the socket to the disk and back with no copy of ours. Sends use SEND with
//! MSG_NOSIGNAL, so a vanished peer is an `EPIPE` error, not a process-killing SIGPIPE. Each
//! operation holds the socket's fd, so dropping a stream with an operation in flight closes
//! the socket only after that operation completes.

mod addr;
mod listener;
mod stream;

pub use listener::TcpListener;
pub use stream::TcpStream;

#[cfg(test)]
mod tests;
