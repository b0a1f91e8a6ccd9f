//! [`FlipProxy`]: a loopback TCP proxy in front of a depot that damages one byte of what the
//! depot sends, to prove a client notices (PROTOCOL.md §10 digests on a load).
//!
//! Design: one accept thread and two copy threads per connection, all plain blocking I/O with
//! limits: the proxy accepts at most [`PROXY_MAX_CONNS`] connections and lives at most
//! [`PROXY_LIFE`]; every socket has that read timeout, so no thread outlives a test by long.
//! The damaged byte is counted from the end of the depot's first reply line on each
//! connection, so a test names it by its place in the framed data, whatever the header's
//! length.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest a proxy (or one of its connections) lives.
pub const PROXY_LIFE: Duration = Duration::from_secs(30);
/// Most connections one proxy accepts.
pub const PROXY_MAX_CONNS: usize = 8;

/// Forwards connections to a depot, flipping the low bit of the byte `flip_at` bytes after
/// the end of the depot's first reply line on each connection (`None`: an honest proxy).
#[derive(Debug)]
pub struct FlipProxy {
    /// The proxy's listening address, handed to the client under test.
    addr: SocketAddr,
    /// Tells the accept thread to stop (set on drop).
    stop: Arc<AtomicBool>,
    /// Joined on drop, so a test never leaves the accept loop running.
    accept: Option<JoinHandle<()>>,
}

impl FlipProxy {
    pub fn start(upstream: SocketAddr, flip_at: Option<usize>) -> FlipProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let addr = listener.local_addr().expect("proxy address");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::spawn(move || {
            let started = Instant::now();
            let mut conns = 0;
            while !flag.load(Ordering::Relaxed) && started.elapsed() < PROXY_LIFE {
                match listener.accept() {
                    Ok((client, _)) if conns < PROXY_MAX_CONNS => {
                        conns += 1;
                        client.set_nonblocking(false).expect("blocking proxy socket");
                        let depot = TcpStream::connect(upstream).expect("proxy reaches the depot");
                        pipe(client, depot, flip_at);
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FlipProxy { addr, stop, accept: Some(accept) }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for FlipProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Two detached copy threads; each ends at EOF, an error, or the socket timeout.
fn pipe(client: TcpStream, depot: TcpStream, flip_at: Option<usize>) {
    for s in [&client, &depot] {
        s.set_read_timeout(Some(PROXY_LIFE)).expect("timeout");
    }
    let (c2, d2) = (client.try_clone().expect("clone"), depot.try_clone().expect("clone"));
    thread::spawn(move || copy(client, depot, None));
    thread::spawn(move || copy(d2, c2, flip_at));
}

fn copy(mut from: TcpStream, mut to: TcpStream, flip_at: Option<usize>) {
    let mut buf = [0u8; 16 * 1024];
    // Bytes seen after the first `\n` (None until it passed).
    let mut after_line: Option<usize> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(k) = flip_at {
            for b in &mut buf[..n] {
                match after_line {
                    None if *b == b'\n' => after_line = Some(0),
                    None => {}
                    Some(i) => {
                        if i == k {
                            *b ^= 1;
                        }
                        after_line = Some(i + 1);
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
