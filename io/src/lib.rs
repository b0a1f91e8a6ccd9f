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
//!     let listener = ibp_io::net::TcpListener::bind("127.0.0.1:0".parse().unwrap(), false)?;
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
