//! `TcpStream`: connect, ownership-passing read and write_all, hand-off between cores.

use std::io;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::addr::{tcp_socket, RawAddr};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::Op;
use crate::fd::SharedFd;

/// Largest single send or receive (SQE lengths are u32).
const MAX_OP_BYTES: usize = 1 << 30;

/// `recv_slice`/`send_slice` complete by a plain syscall whenever the socket has bytes (or
/// room), without the ring, so a busy RAM transfer would never return to the executor and
/// could starve every other task of the core (and the reaping of their completions). Each such call spends one unit of
/// this per-thread budget; when it runs out the task passes through the ring once (a NOP),
/// which lets the other tasks run and the ring be reaped.
const COOP_BUDGET: u32 = 16;

thread_local! {
    static COOP_LEFT: std::cell::Cell<u32> = const { std::cell::Cell::new(COOP_BUDGET) };
}

async fn coop_spend() {
    crate::runtime::flush_submissions();
    let out = COOP_LEFT.with(|c| {
        let left = c.get().saturating_sub(1);
        c.set(if left == 0 { COOP_BUDGET } else { left });
        left == 0
    });
    if out {
        let (_completion, ()) = Op::submit(opcode::Nop::new().build(), ()).await;
    }
}

#[derive(Debug)]
pub struct TcpStream {
    fd: SharedFd,
}

impl TcpStream {
    pub(crate) fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream { fd: SharedFd::new(fd) }
    }

    /// Connects to `addr` through IORING_OP_CONNECT.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = SharedFd::new(tcp_socket(&addr)?);
        let raw = Box::new(RawAddr::from_socket_addr(addr));
        let entry = opcode::Connect::new(types::Fd(fd.raw()), raw.as_ptr(), raw.len).build();
        let (completion, (_raw, fd)) = Op::submit(entry, (raw, fd)).await;
        completion
            .into_io()
            .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
        Ok(TcpStream { fd })
    }

    /// Adopts a connected std stream (e.g. one handed over from another core).
    pub fn from_std(stream: std::net::TcpStream) -> TcpStream {
        TcpStream::from_owned(OwnedFd::from(stream))
    }

    /// Gives the connection back as a std stream, to move it to another core's runtime.
    ///
    /// If a dropped operation still holds the socket (its cancellation has not completed),
    /// the fd is duplicated so the hand-off works; the original closes when that op ends.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let fd = match self.fd.try_unwrap() {
            Ok(fd) => fd,
            Err(shared) => {
                // SAFETY: the fd is open (held by `shared`); dup takes no pointers.
                let raw = unsafe { libc::fcntl(shared.raw(), libc::F_DUPFD_CLOEXEC, 0) };
                if raw < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `raw` is a fresh fd from fcntl that we own.
                unsafe { OwnedFd::from_raw_fd(raw) }
            }
        };
        Ok(std::net::TcpStream::from(fd))
    }

    /// Like [`TcpStream::into_std`], returning the raw fd (the caller then owns it).
    pub fn into_raw_fd(self) -> io::Result<RawFd> {
        self.into_std().map(IntoRawFd::into_raw_fd)
    }

    /// Runs `f` on a std view of the socket (for getsockopt-style calls).
    fn with_std<R>(&self, f: impl FnOnce(&std::net::TcpStream) -> R) -> R {
        // SAFETY: the fd is open for the lifetime of `self`; ManuallyDrop keeps the std view
        // from closing it.
        let view = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.fd.raw()) });
        f(&view)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with_std(|s| s.peer_addr())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with_std(|s| s.local_addr())
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.with_std(|s| s.set_nodelay(nodelay))
    }

    /// Shuts down one or both directions (e.g. `Shutdown::Write` to send FIN). The socket is
    /// closed when the stream and every operation using it are dropped.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.with_std(|s| s.shutdown(how))
    }

    /// Receives into the spare room of `buf` (`buf[len..capacity]`) and advances its length.
    /// `Ok(0)` means the peer closed its side. Uses READ_FIXED on registered pool buffers,
    /// RECV otherwise. A buffer with no spare room is an `InvalidInput` error.
    pub async fn read<B: IoBufMut>(&self, mut buf: B) -> (io::Result<usize>, B) {
        let init = buf.bytes_init();
        let spare = buf.bytes_total() - init;
        if spare == 0 {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "read into a full buffer");
            return (Err(e), buf);
        }
        let len = spare.min(MAX_OP_BYTES) as u32;
        loop {
            // SAFETY: init < bytes_total, so the pointer is inside the buffer.
            let ptr = unsafe { buf.stable_mut_ptr().add(init) };
            let entry = match buf.fixed_index() {
                Some(index) => {
                    opcode::ReadFixed::new(types::Fd(self.fd.raw()), ptr, len, index).build()
                }
                None => opcode::Recv::new(types::Fd(self.fd.raw()), ptr, len).build(),
            };
            let (completion, (returned, _fd)) = Op::submit(entry, (buf, self.fd.clone())).await;
            buf = returned;
            match completion.into_io() {
                Ok(n) => {
                    // SAFETY: the kernel wrote `n` bytes right after the initialised ones.
                    unsafe { buf.set_init(init + n) };
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Sends all of `buf[range]` (looping over partial sends). A closed peer is an error
    /// (`EPIPE`/`ECONNRESET`), never a SIGPIPE.
    pub async fn write_all<B: IoBuf>(&self, buf: B, range: Range<usize>) -> (io::Result<()>, B) {
        if range.start > range.end || range.end > buf.bytes_init() {
            let msg =
                format!("send range {range:?} outside the {} initialised bytes", buf.bytes_init());
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, msg)), buf);
        }
        let mut buf = buf;
        let mut at = range.start;
        while at < range.end {
            // SAFETY: at < range.end ≤ bytes_init.
            let ptr = unsafe { buf.stable_ptr().add(at) };
            let len = (range.end - at).min(MAX_OP_BYTES) as u32;
            // MSG_WAITALL: the kernel finishes a partial send itself (retrying on readiness)
            // and posts one completion for the whole range, instead of one per socket-buffer
            // refill.
            let entry = opcode::Send::new(types::Fd(self.fd.raw()), ptr, len)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                .build();
            let (completion, (returned, _fd)) = Op::submit(entry, (buf, self.fd.clone())).await;
            buf = returned;
            match completion.into_io() {
                Ok(0) => {
                    return (Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0")), buf)
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Waits until the socket is readable (bytes, end of stream or an error pending), through
    /// IORING_OP_POLL_ADD. No memory is lent to the kernel.
    pub async fn readable(&self) -> io::Result<()> {
        self.poll(libc::POLLIN).await
    }

    /// Waits until the socket has room to send (or an error pending).
    pub async fn writable(&self) -> io::Result<()> {
        self.poll(libc::POLLOUT).await
    }

    async fn poll(&self, events: libc::c_short) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(self.fd.raw()), events as u32).build();
        let (completion, _fd) = Op::submit(entry, self.fd.clone()).await;
        completion.into_io().map(drop)
    }

    /// Receives into `dst`, which need not be an owned buffer: a non-blocking `recv(2)` copies
    /// whatever is there, and only when nothing is does the ring wait for readiness. No kernel
    /// operation ever holds `dst`, so once this returns (or its future is dropped, e.g. by a
    /// timeout) nothing writes into it any more. This is how bytes go straight from the socket
    /// into memory the runtime does not own (a RAM region). `Ok(0)` = the peer closed.
    pub async fn recv_slice(&self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "read into an empty slice"));
        }
        let len = dst.len().min(MAX_OP_BYTES);
        loop {
            // SAFETY: dst is valid for `len` writable bytes for the duration of the call.
            let n = unsafe {
                libc::recv(self.fd.raw(), dst.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT)
            };
            if n >= 0 {
                coop_spend().await;
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.readable().await?,
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
    }

    /// Sends all of `src`, which need not be an owned buffer: non-blocking `send(2)` calls copy
    /// it into the socket, waiting through the ring for room when the socket is full. Nothing
    /// refers to `src` once this returns or its future is dropped.
    pub async fn send_slice(&self, src: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < src.len() {
            let len = (src.len() - at).min(MAX_OP_BYTES);
            // SAFETY: src[at..at + len] is valid readable memory for the duration of the call.
            let n = unsafe {
                libc::send(
                    self.fd.raw(),
                    src.as_ptr().add(at).cast(),
                    len,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                at += n as usize;
                coop_spend().await;
                continue;
            }
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0"));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.writable().await?,
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends a whole `Vec` (reply lines and other small messages).
    pub async fn write_all_vec(&self, bytes: Vec<u8>) -> io::Result<()> {
        let len = bytes.len();
        self.write_all(bytes, 0..len).await.0
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}
