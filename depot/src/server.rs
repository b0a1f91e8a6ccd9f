//! Start-up and the per-core serving loops.
//!
//! Design: `run` checks everything that can fail before serving (io_uring, O_DIRECT, space,
//! the secret), binds every socket, then starts one pinned thread per shard. Each thread owns
//! a runtime (ring, buffer pool), opens and recovers its shard, and serves:
//! * its share of the base port (SO_REUSEPORT spreads new connections over the cores),
//! * its own port (base + 1 + shard), which the capabilities it issues name, so clients reach
//!   the owning core directly,
//! * connections handed over by other cores: a command whose key belongs to another shard
//!   moves the whole connection (socket plus unread bytes) to the owner, so bulk data never
//!   crosses cores and every port serves every command.
//!
//! The main thread prints `listening on ADDR:PORT` once every shard has recovered, then waits.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::AtomicI64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ibp_client::proto::request::ext::{ext_command, parse_ext, ExtRequest};
use ibp_client::proto::request::Request;
use ibp_client::proto::{parse_request, ErrorCode};
use ibp_io::channel::{channel, Receiver, Sender};
use ibp_io::net::{TcpListener, TcpStream};
use ibp_io::seam::{OsEntropy, SystemClock};
use ibp_io::{Runtime, RuntimeConfig};

use crate::cmd::{self, Ctx, Next};
use crate::config::{Config, ResourceKind};
use crate::conn::{Conn, LineError};
use crate::keys::{self, DepotSecret};
use crate::shard::{Shard, Shared};
use crate::stats::ShardStats;

/// A connection moving to the core that owns the allocation it asked for.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    /// Bytes received but not consumed (starting with the command that caused the move).
    pub buffered: Vec<u8>,
}

/// Connections waiting to be adopted by a core.
const HANDOFF_QUEUE: usize = 1024;
/// How long start-up waits for a fixed port still held by a dying previous instance.
const PORT_WAIT: Duration = Duration::from_secs(10);
/// Back-off suggested to clients refused for lack of connection slots.
const BUSY_BACKOFF_S: f64 = 1.0;

/// Sockets bound for one core.
struct CoreSockets {
    base: TcpListener,
    own: TcpListener,
}

/// Checks the machine and the data directories; fails fast naming the cause.
pub fn preflight(cfg: &Config) -> Result<(), String> {
    ibp_io::probe::probe_io_uring()?;
    std::fs::create_dir_all(&cfg.meta_dir)
        .map_err(|e| format!("cannot create meta_dir {}: {e}", cfg.meta_dir.display()))?;
    for (i, r) in cfg.resources.iter().enumerate() {
        if let ResourceKind::Device(dev) = &r.kind {
            ibp_io::fs::DmaFile::open(dev, ibp_io::fs::OpenMode::default()).map_err(|e| {
                format!(
                    "resource {}: cannot open device {} with O_DIRECT: {e}",
                    r.rid,
                    dev.display()
                )
            })?;
        }
        if let ResourceKind::Disk(dir) = &r.kind {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            ibp_io::probe::probe_o_direct(dir)?;
            let need = (0..cfg.cores)
                .map(|s| {
                    let have = std::fs::metadata(crate::store::region_path(dir, s))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    cfg.region_bytes(i).saturating_sub(have)
                })
                .sum::<u64>();
            let free = ibp_io::probe::free_space(dir)
                .map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
            if need > free {
                return Err(format!(
                    "resource {}: {} needs {need} more bytes for its data files but only {free} are free; \
                     lower `capacity` in the config",
                    r.rid,
                    dir.display()
                ));
            }
        }
    }
    Ok(())
}

/// Reads the depot secret, creating it (mode 0600) on first start.
pub fn load_secret(meta_dir: &Path) -> Result<DepotSecret, String> {
    let path = meta_dir.join("depot.secret");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => {
            let mut s = [0u8; 32];
            s.copy_from_slice(&b);
            Ok(DepotSecret(s))
        }
        Ok(_) => Err(format!("{} is damaged (expected 32 bytes)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| format!("OS random source failed: {e}"))?;
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            f.write_all(&s)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(DepotSecret(s))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Binds the base port on every core and each core's own port. With port 0 the base port is
/// chosen by the kernel and the shard ports follow it; a collision retries with a new one.
///
/// A fixed port that is still in use is retried for a few seconds: after `kill -9` the kernel
/// tears an io_uring instance down asynchronously, and the sockets its pending accepts hold
/// stay bound for a moment after the process is gone.
fn bind_all(listen: SocketAddr, cores: usize) -> Result<(u16, Vec<CoreSockets>), String> {
    let deadline = Instant::now() + PORT_WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_bind(listen, cores) {
            Ok(v) => return Ok(v),
            Err(e) if listen.port() == 0 && attempts < 20 => {
                tracing::debug!(cause = %e, "port collision, trying another")
            }
            Err(e) if listen.port() != 0 && e.contains("in use") && Instant::now() < deadline => {
                if attempts == 1 {
                    tracing::info!(cause = %e, "port still held (a previous instance is being torn down); waiting");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_bind(listen: SocketAddr, cores: usize) -> Result<(u16, Vec<CoreSockets>), String> {
    let first = TcpListener::bind(listen, true).map_err(|e| e.to_string())?;
    let port = first.local_addr().map_err(|e| e.to_string())?.port();
    if usize::from(port) + cores >= 65536 {
        return Err(format!("port {port}: no room for {cores} shard ports above it"));
    }
    let mut bases = vec![first];
    for _ in 1..cores {
        bases.push(
            TcpListener::bind(SocketAddr::new(listen.ip(), port), true)
                .map_err(|e| e.to_string())?,
        );
    }
    let mut out = Vec::with_capacity(cores);
    for (i, base) in bases.into_iter().enumerate() {
        let own_port = port + 1 + i as u16;
        let own = TcpListener::bind(SocketAddr::new(listen.ip(), own_port), false)
            .map_err(|e| format!("shard {i} port {own_port}: {e}"))?;
        out.push(CoreSockets { base, own });
    }
    Ok((port, out))
}

/// Runs the depot until the process is killed. Prints `listening on ADDR:PORT` when ready.
pub fn run(cfg: Config) -> Result<(), String> {
    preflight(&cfg)?;
    let secret = load_secret(&cfg.meta_dir)?;
    let (port, sockets) = bind_all(cfg.listen, cfg.cores)?;
    let ports: Arc<Vec<u16>> = Arc::new((0..cfg.cores).map(|i| port + 1 + i as u16).collect());
    let cfg = Arc::new(cfg);
    let all_stats: Arc<Vec<Arc<ShardStats>>> =
        Arc::new((0..cfg.cores).map(|_| Arc::new(ShardStats::new(cfg.resources.len()))).collect());
    let max_durations: Arc<Vec<AtomicI64>> =
        Arc::new(cfg.resources.iter().map(|r| AtomicI64::new(r.max_duration_s as i64)).collect());
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..cfg.cores {
        let (tx, rx) = channel::<Handoff>(HANDOFF_QUEUE);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let peers = Arc::new(senders);
    let shared = Shared { cfg: cfg.clone(), secret, all_stats, ports, max_durations };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
    let t0 = Instant::now();
    let mut threads = Vec::new();
    for (i, (socks, rx)) in sockets.into_iter().zip(receivers).enumerate() {
        let ctx = CoreStart {
            idx: i as u16,
            shared: shared.clone(),
            socks,
            handoffs: rx.expect("one receiver per core"),
            peers: peers.clone(),
            ready: ready_tx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("ibp-shard-{i}"))
            .spawn(move || core_main(ctx))
            .map_err(|e| format!("cannot start shard thread: {e}"))?;
        threads.push(handle);
    }
    drop(ready_tx);
    for _ in 0..cfg.cores {
        match ready_rx.recv() {
            Ok(Ok(line)) => tracing::info!("{line}"),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard thread died during start-up".into()),
        }
    }
    tracing::info!(
        shards = cfg.cores,
        recovery_ms = t0.elapsed().as_millis() as u64,
        "recovery complete"
    );
    println!("listening on {}", SocketAddr::new(cfg.listen.ip(), port));
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    for t in threads {
        if t.join().is_err() {
            return Err("a shard thread panicked".into());
        }
    }
    Ok(())
}

struct CoreStart {
    idx: u16,
    shared: Shared,
    socks: CoreSockets,
    handoffs: Receiver<Handoff>,
    peers: Arc<Vec<Sender<Handoff>>>,
    ready: mpsc::Sender<Result<String, String>>,
}

fn core_main(c: CoreStart) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[c.idx as usize % cores.len()]);
    }
    let rt_cfg = RuntimeConfig {
        ring_entries: 512,
        buffer_size: c.shared.cfg.buffer_bytes as usize,
        buffer_count: c.shared.cfg.buffers_per_core,
        register_buffers: true,
    };
    let rt = match Runtime::new(rt_cfg) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = c.ready.send(Err(format!("shard {}: {e}", c.idx)));
            return;
        }
    };
    rt.block_on(serve_core(c));
}

async fn serve_core(c: CoreStart) {
    let opened = Shard::open(c.idx, &c.shared, Rc::new(SystemClock), Box::new(OsEntropy));
    let (shard, report) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = c.ready.send(Err(format!("shard {}: {e}", c.idx)));
            return;
        }
    };
    let shard = Rc::new(shard);
    ibp_io::spawn(shard.clone().run_committer());
    ibp_io::spawn(shard.clone().run_reaper());
    let line = format!(
        "shard {} recovered: {} allocations, {} journal records, {} expired reaped, {} RAM dropped{}, {} ms",
        c.idx,
        report.allocations,
        report.journal.records,
        report.reaped,
        report.dropped_ram,
        report.journal.torn.map(|t| format!(", torn tail cut ({t})")).unwrap_or_default(),
        report.took.as_millis()
    );
    let _ = c.ready.send(Ok(line));
    let peers = c.peers;
    ibp_io::spawn(accept_loop(shard.clone(), c.socks.base, peers.clone()));
    ibp_io::spawn(accept_loop(shard.clone(), c.socks.own, peers.clone()));
    let mut handoffs = c.handoffs;
    while let Some(h) = handoffs.recv().await {
        let stream = TcpStream::from_std(h.stream);
        start_conn(&shard, stream, h.buffered, peers.clone());
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, peers: Arc<Vec<Sender<Handoff>>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => start_conn(&shard, stream, Vec::new(), peers.clone()),
            Err(e) => {
                tracing::warn!(shard = shard.idx, cause = %e, "accept failed");
                ibp_io::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn start_conn(
    shard: &Rc<Shard>,
    stream: TcpStream,
    buffered: Vec<u8>,
    peers: Arc<Vec<Sender<Handoff>>>,
) {
    let conn = match Conn::new(stream, buffered) {
        Ok(c) => c,
        Err(_) => return,
    };
    let live = crate::stats::get(&shard.stats.connections);
    if live as usize >= shard.cfg.max_connections_per_core {
        ibp_io::spawn(async move { conn.close_with_notice(BUSY_BACKOFF_S).await });
        return;
    }
    ibp_io::spawn(serve(shard.clone(), conn, peers));
}

/// Counts a live connection for the per-core cap.
struct ConnSlot(Arc<ShardStats>);

impl ConnSlot {
    fn new(s: &Arc<ShardStats>) -> ConnSlot {
        s.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ConnSlot(s.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves one connection: read a line, parse, route, dispatch, until it closes or moves.
async fn serve(shard: Rc<Shard>, mut conn: Conn, peers: Arc<Vec<Sender<Handoff>>>) {
    let _slot = ConnSlot::new(&shard.stats);
    let idle = Duration::from_secs(shard.cfg.idle_timeout_s);
    loop {
        // A deferred reply (a pipelined write's commit) that failed ends the connection.
        match conn.lane_ended() {
            Next::Continue => {}
            end => return finish(conn, end).await,
        }
        let line = match conn.read_line(idle).await {
            Ok(l) => l,
            Err(LineError::Closed) | Err(LineError::Io(_)) => return,
            Err(LineError::Idle) => return conn.close_with_notice(0.0).await,
            Err(LineError::LaneEnded) => {
                let end = conn.lane_ended();
                return finish(conn, end).await;
            }
            Err(LineError::TooLong) => {
                let _ = conn.send_error(ErrorCode::BadFormat).await;
                return conn.close_with_notice(0.0).await;
            }
        };
        let t0 = Instant::now();
        if ext_command(&line).is_some() {
            match conn.flush_lane().await {
                Next::Continue => {}
                end => return finish(conn, end).await,
            }
            match serve_ext(&shard, &mut conn, &line, peers.len()).await {
                Ok(Next::Continue) => continue,
                Ok(Next::Close) => return conn.close_with_notice(0.0).await,
                Ok(Next::Drop) => return,
                Err(owner) => {
                    return hand_off_line(&shard, conn, &line, &peers[owner as usize]).await
                }
            }
        }
        let req = match parse_request(&line) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(shard = shard.idx, reason = e.reason, "malformed command");
                shard.stats.record("malformed", false, t0.elapsed());
                let _ = conn.send_error(e.code).await;
                return conn.close_with_notice(0.0).await;
            }
        };
        // Only a write that follows a write may start while an earlier write still commits:
        // anything else (a LOAD of what was just stored, a MANAGE) sees it committed.
        if !cmd::carries_payload(&req) {
            match conn.flush_lane().await {
                Next::Continue => {}
                end => return finish(conn, end).await,
            }
        }
        if let Request::Allocate(a) = &req {
            if let Some(to) = cmd::allocate::placed_elsewhere(&shard, a) {
                return hand_off_line(&shard, conn, &line, &peers[usize::from(to)]).await;
            }
        }
        if let Some(key) = cmd::key_of(&req) {
            match route(&shard, &key.key, peers.len()) {
                Route::Here => {}
                Route::Shard(owner) => {
                    return hand_off_line(&shard, conn, &line, &peers[owner as usize]).await
                }
                Route::Nowhere => {
                    shard.stats.record(req.name(), false, t0.elapsed());
                    let next =
                        if cmd::carries_payload(&req) { Next::Close } else { Next::Continue };
                    let (next, _) = cmd::reply_error(&conn, ErrorCode::CapNotFound, next).await;
                    match next {
                        Next::Continue => continue,
                        Next::Close => return conn.close_with_notice(0.0).await,
                        Next::Drop => return,
                    }
                }
            }
        }
        let name = req.name();
        let mut ctx = Ctx { shard: &shard, conn: &mut conn, name, t0, deferred: false };
        let (next, ok) = cmd::dispatch(&mut ctx, req).await;
        if !ctx.deferred {
            shard.stats.record(name, ok, t0.elapsed());
        }
        match next {
            Next::Continue => {}
            Next::Close => return conn.close_with_notice(0.0).await,
            Next::Drop => return,
        }
    }
}

/// Ends a connection as `end` says: with ACCRE's close notice, or silently (`Drop`).
async fn finish(conn: Conn, end: Next) {
    if end != Next::Drop {
        conn.close_with_notice(0.0).await;
    }
}

/// Where a key's allocation lives.
enum Route {
    Here,
    Shard(u16),
    /// Not one of our keys at all.
    Nowhere,
}

fn route(shard: &Shard, key: &str, shards: usize) -> Route {
    match keys::shard_of(key) {
        Some(owner) if owner == shard.idx => Route::Here,
        Some(owner) if (owner as usize) < shards => Route::Shard(owner),
        _ => Route::Nowhere,
    }
}

/// Moves the connection, with `line` put back in front of its unread bytes, to the shard
/// that owns the key in `line`.
async fn hand_off_line(shard: &Shard, mut conn: Conn, line: &[u8], to: &Sender<Handoff>) {
    match conn.flush_lane().await {
        Next::Continue => {}
        end => return finish(conn, end).await,
    }
    conn.unread(line);
    hand_off(shard, conn, to).await
}

/// Serves an extension command; `Err(owner)` means it belongs to shard `owner`.
async fn serve_ext(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    line: &[u8],
    shards: usize,
) -> Result<Next, u16> {
    let t0 = Instant::now();
    let r = match parse_ext(line) {
        Ok(r) => r,
        Err(e) => {
            shard.stats.record("malformed", false, t0.elapsed());
            let _ = conn.send_error(e.code).await;
            return Ok(Next::Close);
        }
    };
    let name = match &r {
        ExtRequest::McopyExt(_) => "MCOPY_EXT",
        ExtRequest::ChainStore(_) => "CHAIN_STORE",
    };
    match route(shard, &cmd::mcopy::key_of(&r).key, shards) {
        Route::Here => {}
        Route::Shard(owner) => return Err(owner),
        Route::Nowhere => {
            let next =
                if matches!(r, ExtRequest::ChainStore(_)) { Next::Close } else { Next::Continue };
            return Ok(cmd::reply_error(conn, ErrorCode::CapNotFound, next).await.0);
        }
    }
    let mut ctx = Ctx { shard, conn, name, t0, deferred: false };
    let (next, ok) = cmd::mcopy::run_ext(&mut ctx, r).await;
    shard.stats.record(name, ok, t0.elapsed());
    Ok(next)
}

async fn hand_off(shard: &Shard, conn: Conn, to: &Sender<Handoff>) {
    let (stream, buffered) = match conn.into_parts() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(shard = shard.idx, cause = %e, "hand-off failed");
            return;
        }
    };
    match stream.into_std() {
        Ok(stream) => {
            if let Err(h) = to.try_send(Handoff { stream, buffered }) {
                tracing::warn!(shard = shard.idx, "hand-off queue full; closing a connection");
                let c = Conn::new(TcpStream::from_std(h.stream), Vec::new());
                if let Ok(c) = c {
                    c.close_with_notice(BUSY_BACKOFF_S).await;
                }
            }
        }
        Err(e) => tracing::warn!(shard = shard.idx, cause = %e, "hand-off failed"),
    }
}
