//! A depot endpoint: its address, a small pool of idle connections, and the retry loop that
//! honours ACCRE's `-66 <secs>` back-off notices with a bounded count and total wait.
//!
//! Depot-level calls (allocate, status) live here; calls on a capability live in
//! [`crate::handle`], and the rest of the 1.4 command set in [`crate::ext`].

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::config::Config;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::handle::CapHandle;
use crate::proto::capability::{is_valid_host, is_valid_rid, Capability};
use crate::proto::reply::{self, InqBody, MAX_INQ_BODY_BYTES};
use crate::proto::request::{
    self, Allocate, ChksumSpec, Password, Reliability, Request, Status, StatusOp,
};

/// The IBP default port (PROTOCOL.md §1).
pub const DEFAULT_PORT: u16 = 6714;
/// Most text an ST_VERSION reply may carry before we call it malformed.
pub const MAX_VERSION_TEXT_BYTES: usize = 1024 * 1024;

/// The three capabilities of a new allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocCaps {
    /// Load, send.
    pub read: Capability,
    /// Store, write.
    pub write: Capability,
    /// Probe, change, refcounts.
    pub manage: Capability,
}

/// One depot: address, configuration and idle connections.
#[derive(Debug)]
pub struct Depot {
    host: String,
    port: u16,
    config: Config,
    /// Idle connections, most recently used last; at most `config.pool_max_idle`.
    idle: Mutex<Vec<Conn>>,
}

/// Splits `HOST[:PORT]` (IPv6 as `[addr]:port`), defaulting the port to 6714.
pub fn parse_host_port(text: &str) -> Result<(String, u16)> {
    let bad = || Error::InvalidArgument(format!("not a HOST[:PORT]: {text:?}"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if text.matches(':').count() > 1 {
        (text, None) // a bare IPv6 address
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    if !is_valid_host(host) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

impl Depot {
    /// A depot at `host:port`.
    pub fn new(host: impl Into<String>, port: u16, config: Config) -> Depot {
        Depot { host: host.into(), port, config, idle: Mutex::new(Vec::new()) }
    }

    /// A depot from `HOST[:PORT]`.
    pub fn parse(addr: &str, config: Config) -> Result<Depot> {
        let (host, port) = parse_host_port(addr)?;
        Ok(Depot::new(host, port, config))
    }

    /// The depot that issued `cap`.
    pub fn for_capability(cap: &Capability, config: Config) -> Depot {
        Depot::new(cap.host.clone(), cap.port, config)
    }

    /// Host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A handle for calls on `cap` through this depot's pool.
    pub fn handle<'a>(&'a self, cap: &'a Capability) -> CapHandle<'a> {
        CapHandle::new(self, cap)
    }

    /// A fresh connection outside the pool (the parallel engine owns one per stream).
    pub fn connect(&self) -> Result<Conn> {
        Conn::connect(&self.host, self.port, self.config.connect_timeout, self.config.io_timeout)
    }

    fn checkout(&self) -> Result<(Conn, bool)> {
        loop {
            let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
            match pooled {
                Some(conn) if conn.is_reusable() => return Ok((conn, true)),
                Some(_stale) => continue,
                None => return Ok((self.connect()?, false)),
            }
        }
    }

    fn checkin(&self, mut conn: Conn) {
        if !conn.is_drained() {
            return;
        }
        conn.disarm();
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.config.pool_max_idle {
                idle.push(conn);
            }
        }
    }

    /// Runs `op` on a connection with deadline `budget`, retrying after `-66` back-off
    /// notices (bounded by the config) and, for `idempotent` calls, once after an I/O error
    /// on a reused connection that the depot may have closed while it sat idle.
    pub fn call<T>(
        &self,
        budget: Duration,
        idempotent: bool,
        mut op: impl FnMut(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let mut attempts: u32 = 0;
        let mut waited = Duration::ZERO;
        let mut stale_retry_left = idempotent;
        loop {
            attempts += 1;
            let (mut conn, pooled) = self.checkout()?;
            conn.arm(budget);
            match op(&mut conn) {
                Ok(value) => {
                    self.checkin(conn);
                    return Ok(value);
                }
                Err(Error::Backoff { secs }) => {
                    drop(conn);
                    let wait = self.backoff_wait(secs);
                    if attempts > self.config.max_backoff_retries
                        || waited + wait > self.config.max_backoff_total
                    {
                        return Err(Error::BackoffExhausted { attempts, waited });
                    }
                    thread::sleep(wait);
                    waited += wait;
                }
                Err(Error::Io(_)) if pooled && stale_retry_left => stale_retry_left = false,
                Err(e) => return Err(e),
            }
        }
    }

    /// How long to wait for a back-off notice of `secs` (at least 10 ms, at most the cap).
    pub fn backoff_wait(&self, secs: f64) -> Duration {
        let asked = Duration::try_from_secs_f64(secs).unwrap_or(self.config.max_single_backoff);
        asked.clamp(Duration::from_millis(10), self.config.max_single_backoff)
    }

    /// ALLOCATE: a byte array of `size` bytes for `duration_s` seconds (−1 = the depot's
    /// maximum), on resource `rid` (`None` = any, sent as `0`).
    pub fn allocate(
        &self,
        size: u64,
        duration_s: i64,
        reliability: Reliability,
        rid: Option<&str>,
    ) -> Result<AllocCaps> {
        self.allocate_with(size, duration_s, reliability, rid, None)
    }

    /// ALLOCATE, or ALLOCATE_CHKSUM (29) when `chksum` is given: the depot then keeps a
    /// digest of every `chksum.blocksize` bytes on disk (see [`Depot::allocate_chksum`]).
    pub fn allocate_with(
        &self,
        size: u64,
        duration_s: i64,
        reliability: Reliability,
        rid: Option<&str>,
        chksum: Option<ChksumSpec>,
    ) -> Result<AllocCaps> {
        let rid = rid.unwrap_or("0");
        if !is_valid_rid(rid) {
            return Err(Error::InvalidArgument(
                "resource id is empty, too long or has bad characters".into(),
            ));
        }
        let size =
            i64::try_from(size).map_err(|_| Error::InvalidArgument("size too large".into()))?;
        let req = Request::Allocate(Allocate {
            version: 1,
            chksum,
            rid: Some(rid.to_owned()),
            reliability: reliability.code(),
            atype: request::AllocType::ByteArray.code(),
            duration_s,
            size,
            timeout_s: self.config.server_timeout_s,
        });
        let line = encode(&req);
        let [read, write, manage] = self.call(self.config.op_timeout, false, |conn| {
            conn.send(&line)?;
            conn.read_reply(reply::parse_caps)
        })?;
        Ok(AllocCaps { read, write, manage })
    }

    fn status(&self, op: StatusOp) -> Vec<u8> {
        encode(&Request::Status(Status { version: 1, op, timeout_s: self.config.server_timeout_s }))
    }

    /// ST_INQ: capacity and usage of resource `rid` (`None` = `0`, any).
    pub fn status_inq(&self, rid: Option<&str>) -> Result<InqBody> {
        let rid = rid.unwrap_or("0");
        if !is_valid_rid(rid) {
            return Err(Error::InvalidArgument(
                "resource id is empty, too long or has bad characters".into(),
            ));
        }
        let line = self.status(StatusOp::Inq {
            rid: Some(rid.to_owned()),
            password: Password(self.config.status_password.clone()),
        });
        self.call(self.config.op_timeout, true, |conn| {
            conn.send(&line)?;
            let n = conn.read_reply(reply::parse_count)?;
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_INQ_BODY_BYTES)
                .ok_or_else(|| Error::protocol("status body length out of range"))?;
            let mut body = vec![0; n];
            conn.read_exact(&mut body)?;
            reply::parse_inq_body(&body).map_err(Error::from)
        })
    }

    /// ST_RES: the depot's resource ids.
    pub fn status_res(&self) -> Result<Vec<String>> {
        let line = self.status(StatusOp::Res);
        self.call(self.config.op_timeout, true, |conn| {
            conn.send(&line)?;
            conn.read_reply(reply::parse_res)
        })
    }

    /// ST_VERSION: the depot's free-text version report (lines before `END`).
    pub fn status_version(&self) -> Result<String> {
        let line = self.status(StatusOp::Version);
        self.call(self.config.op_timeout, true, |conn| {
            conn.send(&line)?;
            conn.read_reply(reply::parse_ok)?;
            let mut text = String::new();
            loop {
                let line = conn.read_line()?;
                if reply::is_version_end(&line) {
                    return Ok(text);
                }
                if text.len() + line.len() > MAX_VERSION_TEXT_BYTES {
                    return Err(Error::protocol("version report too long"));
                }
                text.push_str(&String::from_utf8_lossy(&line));
            }
        })
    }
}

pub(crate) fn encode(req: &Request) -> Vec<u8> {
    let mut line = Vec::with_capacity(128);
    req.encode(&mut line);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("depot").ok(), Some(("depot".into(), 6714)));
        assert_eq!(parse_host_port("depot:7000").ok(), Some(("depot".into(), 7000)));
        assert_eq!(parse_host_port("127.0.0.1:1").ok(), Some(("127.0.0.1".into(), 1)));
        assert_eq!(parse_host_port("[::1]:7000").ok(), Some(("::1".into(), 7000)));
        assert_eq!(parse_host_port("[::1]").ok(), Some(("::1".into(), 6714)));
        assert_eq!(parse_host_port("::1").ok(), Some(("::1".into(), 6714)));
        for bad in ["", "h:", "h:0", "h:99999", "h:x", "[::1", "[::1]x", "a b"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_is_clamped() {
        let d = Depot::new("h", 1, Config::default());
        assert_eq!(d.backoff_wait(0.0), Duration::from_millis(10));
        assert_eq!(d.backoff_wait(0.5), Duration::from_millis(500));
        assert_eq!(d.backoff_wait(1e9), Duration::from_secs(30));
        assert_eq!(d.backoff_wait(f64::NAN), Duration::from_secs(30));
    }
}
