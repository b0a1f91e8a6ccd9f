//! Socket tests on 127.0.0.1 with real io_uring.

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::{TcpListener, TcpStream};
use crate::buf::{acquire, try_acquire};
use crate::time::timeout;
use crate::{spawn, Runtime, RuntimeConfig};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Echo server that bounces every byte back through pool buffers.
async fn echo(stream: TcpStream) {
    loop {
        let buf = acquire().await;
        let (n, buf) = stream.read(buf).await;
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let (res, _buf) = stream.write_all(buf, 0..n).await;
                res.expect("echo write");
            }
        }
    }
    stream.shutdown(Shutdown::Write).expect("shutdown");
}

fn echo_round_trip(register: bool) {
    let cfg = RuntimeConfig { register_buffers: register, ..Default::default() };
    let rt = Runtime::new(cfg).expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        spawn(async move {
            let (stream, peer) = listener.accept().await.expect("accept");
            assert!(peer.ip().is_loopback());
            echo(stream).await;
        });
        let client = Rc::new(TcpStream::connect(addr).await.expect("connect"));
        client.set_nodelay(true).expect("nodelay");
        assert_eq!(client.peer_addr().expect("peer"), addr);
        let total = 8 << 20;
        let writer = {
            let client = client.clone();
            spawn(async move {
                let mut sent = 0;
                while sent < total {
                    let mut buf = acquire().await;
                    let n = buf.capacity().min(total - sent);
                    for (i, b) in buf.as_full_mut()[..n].iter_mut().enumerate() {
                        *b = pattern(sent + i);
                    }
                    buf.set_len(n);
                    let (res, _) = client.write_all(buf, 0..n).await;
                    res.expect("client write");
                    sent += n;
                }
                client.shutdown(Shutdown::Write).expect("client shutdown");
            })
        };
        let mut received = 0;
        loop {
            let buf = acquire().await;
            assert_eq!(buf.index().is_some(), register);
            let (n, buf) = client.read(buf).await;
            let n = n.expect("client read");
            if n == 0 {
                break;
            }
            for (i, &b) in buf.iter().enumerate() {
                assert_eq!(b, pattern(received + i), "byte {}", received + i);
            }
            received += n;
        }
        writer.await;
        assert_eq!(received, total);
    });
}

#[test]
fn echo_8_mib_registered() {
    echo_round_trip(true);
}

#[test]
fn echo_8_mib_unregistered() {
    echo_round_trip(false);
}

#[test]
fn dropped_read_keeps_buffer_until_completion() {
    let cfg = RuntimeConfig { buffer_count: 1, buffer_size: 4096, ..Default::default() };
    let rt = Runtime::new(cfg).expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        // Nobody writes, so the read stays in the kernel until the timeout drops it.
        let buf = acquire().await;
        let res = timeout(Duration::from_millis(20), server.read(buf)).await;
        assert!(res.is_err(), "read should time out");
        // The kernel still owns the buffer: the ASYNC_CANCEL is only queued.
        assert!(try_acquire().is_none());
        // Dropping the stream now must not close the fd under the in-flight op.
        drop(server);
        let back = timeout(Duration::from_secs(2), acquire()).await;
        let buf = back.expect("buffer returns after the cancellation completes");
        // The client still works and sees the server gone.
        let (n, _) = client.read(buf).await;
        assert_eq!(n.expect("eof"), 0);
    });
}

/// 8 MiB each way through `send_slice`/`recv_slice` (plain slices, no pool buffers): every
/// byte arrives in order, and a reader waiting on an idle socket is woken by readiness.
#[test]
fn slice_transfer_round_trip() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let total = 8 << 20;
        let sender = spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            // Let the reader find the socket empty first, so it waits on readiness.
            crate::time::sleep(Duration::from_millis(20)).await;
            let data: Vec<u8> = (0..total).map(pattern).collect();
            stream.send_slice(&data).await.expect("send_slice");
            stream.shutdown(Shutdown::Write).expect("shutdown");
        });
        let client = TcpStream::connect(addr).await.expect("connect");
        let mut got = vec![0u8; total];
        let mut at = 0;
        loop {
            let end = (at + 300_001).min(total);
            if at == end {
                let mut extra = [0u8; 16];
                let n = client.recv_slice(&mut extra).await.expect("eof");
                assert_eq!(n, 0, "no bytes past the total");
                break;
            }
            let n = client.recv_slice(&mut got[at..end]).await.expect("recv_slice");
            assert!(n > 0, "early end of stream at {at}");
            at += n;
        }
        sender.await;
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)), "bytes differ");
        assert!(client.recv_slice(&mut []).await.is_err(), "empty slice is refused");
    });
}

/// A timed-out `recv_slice` leaves nothing behind that could still write into the slice:
/// bytes sent after the timeout stay in the socket for the next read.
#[test]
fn timed_out_recv_slice_holds_no_memory() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let mut first = [0u8; 8];
        let res = timeout(Duration::from_millis(20), server.recv_slice(&mut first)).await;
        assert!(res.is_err(), "nothing was sent, so the read times out");
        client.send_slice(b"abcdefgh").await.expect("send");
        crate::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(first, [0u8; 8], "the abandoned read wrote nothing");
        let mut second = [0u8; 8];
        let n = server.recv_slice(&mut second).await.expect("recv");
        assert_eq!(&second[..n], &b"abcdefgh"[..n]);
        assert!(n > 0);
    });
}

#[test]
fn write_to_closed_peer_is_an_error_not_sigpipe() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(loopback(), true).expect("bind reuseport");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        drop(server);
        let mut failed = false;
        for _ in 0..100 {
            if client.write_all_vec(vec![b'x'; 65536]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writes to a closed peer must fail");
    });
}

#[test]
fn hand_off_to_another_runtime() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let (std_stream, addr) = rt.block_on(async {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        client.write_all_vec(b"ping\n".to_vec()).await.expect("send");
        spawn(async move {
            let (n, buf) = client.read(Vec::with_capacity(16)).await;
            assert_eq!(n.expect("reply"), 5);
            assert_eq!(&buf[..], b"pong\n");
        });
        (server.into_std().expect("into_std"), addr)
    });
    let handle = std::thread::spawn(move || {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime on core 2");
        rt.block_on(async {
            let stream = TcpStream::from_std(std_stream);
            assert_eq!(stream.local_addr().expect("local"), addr);
            let (n, buf) = stream.read(Vec::with_capacity(16)).await;
            assert_eq!(n.expect("read"), 5);
            assert_eq!(&buf[..], b"ping\n");
            stream.write_all_vec(b"pong\n".to_vec()).await.expect("reply");
        });
    });
    handle.join().expect("other core");
    rt.block_on(async { crate::time::sleep(Duration::from_millis(50)).await });
}

/// Throughput check, not run by default: `cargo test --release -p ibp-io -- --ignored --nocapture`.
#[test]
#[ignore]
fn loopback_throughput() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let total: usize = 4 << 30;
    let secs = rt.block_on(async move {
        let listener = TcpListener::bind(loopback(), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sink = spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut got = 0;
            loop {
                let (n, _buf) = stream.read(acquire().await).await;
                match n.expect("read") {
                    0 => break,
                    n => got += n,
                }
            }
            assert_eq!(got, total);
        });
        let client = TcpStream::connect(addr).await.expect("connect");
        let start = std::time::Instant::now();
        let mut sent = 0;
        while sent < total {
            let mut buf = acquire().await;
            let cap = buf.capacity();
            buf.set_len(cap);
            let (res, _) = client.write_all(buf, 0..cap).await;
            res.expect("write");
            sent += cap;
        }
        client.shutdown(Shutdown::Write).expect("shutdown");
        sink.await;
        start.elapsed().as_secs_f64()
    });
    println!("ibp-io loopback, one stream, one core: {:.2} GB/s", total as f64 / secs / 1e9);
}
