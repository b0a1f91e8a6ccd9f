//! `TcpListener`: bound with SO_REUSEADDR (and SO_REUSEPORT when every core listens on the
//! same port), accepting through IORING_OP_ACCEPT.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::addr::{tcp_socket, RawAddr};
use super::TcpStream;
use crate::driver::Op;
use crate::fd::SharedFd;

/// Pending connections the kernel queues per listener before refusing.
const LISTEN_BACKLOG: i32 = 1024;

#[derive(Debug)]
pub struct TcpListener {
    fd: SharedFd,
    local_addr: SocketAddr,
}

impl TcpListener {
    /// Binds and listens on `addr` (port 0 picks a free port; see `local_addr`).
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        let fd = tcp_socket(&addr)?;
        set_flag(&fd, libc::SO_REUSEADDR)?;
        if reuse_port {
            set_flag(&fd, libc::SO_REUSEPORT)?;
        }
        let raw = RawAddr::from_socket_addr(addr);
        // SAFETY: `raw` holds a valid sockaddr of `raw.len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), raw.len) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")));
        }
        // SAFETY: listen takes no pointers.
        if unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let local_addr = local_addr_of(fd.as_raw_fd())?;
        Ok(TcpListener { fd: SharedFd::new(fd), local_addr })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut peer = Box::new(RawAddr::empty());
        let entry = opcode::Accept::new(
            types::Fd(self.fd.raw()),
            (&mut peer.storage as *mut libc::sockaddr_storage).cast(),
            &mut peer.len,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        let (completion, (peer, _fd)) = Op::submit(entry, (peer, self.fd.clone())).await;
        let raw = completion.into_io()? as RawFd;
        // SAFETY: a successful accept returns a new fd that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok((TcpStream::from_owned(fd), peer.to_socket_addr()?))
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

fn set_flag(fd: &OwnedFd, option: i32) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn local_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: storage and len describe a writable sockaddr_storage.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
            &mut raw.len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    raw.to_socket_addr()
}
