//! Thread-per-core I/O on io_uring for the IBP depot.
//!
//! Each core runs one [`Runtime`]: its own io_uring, its own pool of 4096-aligned buffers
//! allocated and registered at start-up, its own timers, and a small executor for `!Send`
//! tasks. Operations take buffers by value and give them back with the result (the kernel
//! owns a buffer until its completion arrives, even if the future is dropped). Cores talk only
//! through bounded [`channel`]s whose wake-ups travel through each ring's eventfd.
//!
//! ```no_run
//! let rt = ibp_io::Runtime::new(ibp_io::RuntimeConfig::default()).expect("io_uring");
//! rt.block_on(async {
//!     let listener = ibp_io::net::TcpListener::bind("127.0.0.1:0".parse().expect("addr"), false)?;
//!     let (stream, _peer) = listener.accept().await?;
//!     let buf = ibp_io::buf::acquire().await;
//!     let (n, buf) = stream.read(buf).await;
//!     let (res, _buf) = stream.write_all(buf, 0..n?).await;
//!     res
//! }).expect("echo");
//! ```
//!
//! # Layout
//! * [`runtime`]: `Runtime`, `RuntimeConfig`, the loop (run queue, submit, park).
//! * `task`: spawned tasks, their std `Waker`s, [`spawn`] and [`JoinHandle`].
//! * `driver`: the ring, the in-flight op table and the `Op` future (cancellation safety).
//! * [`buf`]: the registered pool (`FixedBuf`), `AlignedBuf`, the `IoBuf` traits.
//! * [`fs`]: `DmaFile`, O_DIRECT files with READ_FIXED/WRITE_FIXED and fdatasync.
//! * [`net`]: `TcpListener` and `TcpStream` with ownership-passing reads and writes.
//! * [`time`]: `sleep` and `timeout` on the loop's timer map.
//! * [`channel`]: bounded cross-core queue woken through the eventfd.
//! * [`sync`]: `Notify` between tasks of one runtime.
//! * [`seam`]: `Clock` and `Entropy` seams for deterministic tests.
//! * [`cores`]: pinned worker threads.
//! * [`probe`]: start-up checks (io_uring, O_DIRECT, memlock, free space).
//! * `slab`, `fd`: small internals (key table, fd shared with in-flight ops).
//!
//! # Choices and limits
//! * A panicking task is not caught: the panic unwinds through `Runtime::block_on` with the
//!   standard panic message (loud, never silent). Run each core's loop under its own thread so
//!   the depot can log and exit.
//! * `DmaFile::read_at`/`write_at` complete fully (they loop over short transfers); a read
//!   returns fewer bytes than asked only at end of file.
//! * Sends use SEND with MSG_NOSIGNAL (no SIGPIPE); SEND_ZC is probed but not used yet (it
//!   always copies on loopback). Receives use READ_FIXED on registered buffers, else RECV.
//! * Timers live in the loop (a deadline map), not in IORING_OP_TIMEOUT SQEs.
//! * Dropping a `Runtime` cancels every in-flight operation and waits (at most 5 s) for the
//!   kernel to let go of their buffers; if it does not, the ring and pool are leaked rather
//!   than freed under the kernel.

pub mod buf;
pub mod channel;
pub mod cores;
mod driver;
mod fd;
pub mod fs;
pub mod net;
pub mod probe;
pub mod runtime;
pub mod seam;
mod slab;
pub mod sync;
mod task;
pub mod time;

#[cfg(test)]
pub(crate) mod test_util;

pub use buf::{AlignedBuf, FixedBuf, IoBuf, IoBufMut};
pub use runtime::{Runtime, RuntimeConfig};
pub use task::{spawn, JoinHandle};
