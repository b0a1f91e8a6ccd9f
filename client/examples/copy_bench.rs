//! Depot-to-depot copy benchmark: starts four `ibp-depot` processes on 127.0.0.1, fills a
//! source allocation, and times, in one run and on the same depots:
//!
//! * raw loopback TCP, one stream (a std-socket sender and receiver): the machine's limit;
//! * SEND of the whole source A → B, and PUSH with 4 streams;
//! * the client-mediated path: the library loads from A and stores into B (two threads joined
//!   by a pipe, 1 MiB LOADs feeding one streaming STORE);
//! * mcopy to three targets, fan-out and chain, against three sequential SENDs.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/copy_bench --depot-bin target/release/ibp-depot --size-mib 1024
//! ```
//! Each row is the best of `--runs` (default 3). Results go to stdout as a Markdown table.
//! Data lives under `--dir` (default /var/tmp/ibp-copy-bench, ext4: the depot needs
//! O_DIRECT) and is removed at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ibp_client::proto::request::Reliability;
use ibp_client::proto::{CapKind, Capability};
use ibp_client::{AllocCaps, Config, Depot, McopyPlan, McopyStrategy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// Most runs per row.
const MAX_RUNS: usize = 20;
/// Longest a depot may take to print its address.
const START_WAIT: Duration = Duration::from_secs(30);
/// Write size of the raw TCP baseline and of the source fill.
const PIECE_BYTES: usize = 1 << 20;

struct Opts {
    depot_bin: PathBuf,
    dir: PathBuf,
    size: u64,
    runs: usize,
}

fn opts() -> Result<Opts> {
    let mut o = Opts {
        depot_bin: PathBuf::from("target/release/ibp-depot"),
        dir: PathBuf::from("/var/tmp/ibp-copy-bench"),
        size: 1 << 30,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--depot-bin" => o.depot_bin = PathBuf::from(value),
            "--dir" => o.dir = PathBuf::from(value),
            "--size-mib" => o.size = value.parse::<u64>()? << 20,
            "--runs" => o.runs = value.parse::<usize>()?.clamp(1, MAX_RUNS),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    Ok(o)
}

/// One depot process, killed on drop.
struct DepotProc {
    child: Child,
    port: u16,
}

impl Drop for DepotProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_depot(bin: &Path, dir: &Path, capacity_mib: u64) -> Result<DepotProc> {
    std::fs::create_dir_all(dir)?;
    let toml = format!(
        "[depot]\nidle_timeout = \"600s\"\n[[resource]]\nrid = \"1\"\npath = {:?}\ncapacity = \"{capacity_mib}MiB\"\n",
        dir.join("data").display().to_string()
    );
    std::fs::write(dir.join("depot.toml"), toml)?;
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--cores", "1", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("depot.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("depot.log"))?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the depot never blocks on a full pipe; ends at its exit.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let mut proc = DepotProc { child, port: 0 };
    let line = rx.recv_timeout(START_WAIT).map_err(|_| "depot did not start")?;
    let addr = line.trim().strip_prefix("listening on ").ok_or("unexpected first line")?;
    proc.port = addr.rsplit_once(':').ok_or("no port")?.1.parse()?;
    Ok(proc)
}

fn config() -> Config {
    Config { io_timeout: Duration::from_secs(60), ..Config::default() }
}

fn client(p: &DepotProc) -> Depot {
    Depot::new("127.0.0.1", p.port, config())
}

fn for_cap(cap: &Capability) -> Depot {
    Depot::for_capability(cap, config())
}

fn remove(caps: &AllocCaps) -> Result<()> {
    for_cap(&caps.manage).handle(&caps.manage).decr(CapKind::Read)?;
    Ok(())
}

/// Raw loopback TCP: one connection, 1 MiB writes, the receiver discards.
fn raw_tcp(len: u64) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; PIECE_BYTES];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0x5au8; PIECE_BYTES];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(PIECE_BYTES as u64) as usize;
        s.write_all(&buf[..n])?;
        sent += n as u64;
    }
    drop(s);
    let got = receiver.join().map_err(|_| "receiver panicked")??;
    if got != len {
        return Err(format!("raw TCP moved {got} of {len} bytes").into());
    }
    Ok(started.elapsed())
}

/// The library path: LOADs from A piped into one streaming STORE into B.
fn client_mediated(src: &Capability, dst: &Capability, len: u64) -> Result<Duration> {
    let (mut reader, mut writer) = std::io::pipe()?;
    let started = Instant::now();
    let (src, dst) = (src.clone(), dst.clone());
    let loader = thread::spawn(move || -> ibp_client::Result<u64> {
        let n = for_cap(&src).handle(&src).load_to(0, len, &mut writer);
        drop(writer);
        n
    });
    let stored = for_cap(&dst).handle(&dst).store_from(&mut reader, len);
    let loaded = loader.join().map_err(|_| "loader panicked")?;
    if loaded? != len || stored? != len {
        return Err("client-mediated copy came up short".into());
    }
    Ok(started.elapsed())
}

/// Best (shortest) of `runs` runs of `f`, each given fresh targets that are removed after.
fn best(
    runs: usize,
    targets: &[&DepotProc],
    len: u64,
    mut f: impl FnMut(&[AllocCaps]) -> Result<()>,
) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let ts = targets
            .iter()
            .map(|d| client(d).allocate(len, 3600, Reliability::Hard, None))
            .collect::<ibp_client::Result<Vec<_>>>()?;
        let started = Instant::now();
        f(&ts)?;
        best = best.min(started.elapsed());
        for t in &ts {
            remove(t)?;
        }
    }
    Ok(best)
}

fn mb_s(len: u64, d: Duration) -> f64 {
    len as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

fn main() -> Result<()> {
    let o = opts()?;
    let len = o.size;
    let _ = std::fs::remove_dir_all(&o.dir);
    // Targets hold two copies at once (a removed allocation is zeroed before its space is
    // free again), so 2x the size plus slack.
    let cap_mib = (len >> 20) * 2 + 64;
    let depots = ["a", "b", "c", "d"]
        .iter()
        .map(|n| start_depot(&o.depot_bin, &o.dir.join(n), cap_mib))
        .collect::<Result<Vec<_>>>()?;
    let (a, b, c, d) = (&depots[0], &depots[1], &depots[2], &depots[3]);
    let src = client(a).allocate(len, 3600, Reliability::Hard, None)?;
    let filler = for_cap(&src.write);
    let piece: Vec<u8> = (0..PIECE_BYTES).map(|i| (i * 31 + i / 4096) as u8).collect();
    let mut filled = 0u64;
    while filled < len {
        let n = (len - filled).min(PIECE_BYTES as u64) as usize;
        filler.handle(&src.write).store(&piece[..n])?;
        filled += n as u64;
    }
    let s = for_cap(&src.read);
    let h = s.handle(&src.read);
    let runs = o.runs;
    let mut rows: Vec<(&str, u64, Duration)> = Vec::new();

    let mut raw = Duration::MAX;
    for _ in 0..runs {
        raw = raw.min(raw_tcp(len)?);
    }
    rows.push(("raw loopback TCP, 1 stream", len, raw));
    let send = best(runs, &[b], len, |t| {
        h.send(&t[0].write, 0, len)?;
        Ok(())
    })?;
    rows.push(("SEND A→B", len, send));
    let push4 = best(runs, &[b], len, |t| {
        h.copy_streams(&t[0].write, 0, len, 4)?;
        Ok(())
    })?;
    rows.push(("copy --streams 4 (PUSH ×4) A→B", len, push4));
    let mediated =
        best(runs, &[b], len, |t| client_mediated(&src.read, &t[0].write, len).map(drop))?;
    rows.push(("client-mediated LOAD A + STORE B", len, mediated));
    let three = [b, c, d];
    let sequential = best(runs, &three, len, |ts| {
        for t in ts {
            h.send(&t.write, 0, len)?;
        }
        Ok(())
    })?;
    rows.push(("3 sequential SENDs A→B,C,D", 3 * len, sequential));
    for (name, strategy, streams) in [
        ("mcopy fan-out A→B,C,D", McopyStrategy::Fanout, 1),
        ("mcopy fan-out ×4 streams A→B,C,D", McopyStrategy::Fanout, 4),
        ("mcopy chain A→B→C→D", McopyStrategy::Chain, 1),
    ] {
        let t = best(runs, &three, len, |ts| {
            let writes: Vec<Capability> = ts.iter().map(|t| t.write.clone()).collect();
            let report = h.mcopy(&writes, 0, len, McopyPlan { strategy, streams })?;
            for r in report.results {
                r?;
            }
            Ok(())
        })?;
        rows.push((name, 3 * len, t));
    }

    println!("size {} MiB per copy, best of {runs} runs\n", len >> 20);
    println!("| path | bytes delivered | seconds | MB/s delivered | vs SEND | vs raw TCP |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, bytes, t) in &rows {
        println!(
            "| {name} | {bytes} | {:.2} | {:.0} | {:.2} | {:.2} |",
            t.as_secs_f64(),
            mb_s(*bytes, *t),
            mb_s(*bytes, *t) / mb_s(len, send),
            mb_s(*bytes, *t) / mb_s(len, raw),
        );
    }
    drop(depots);
    let _ = std::fs::remove_dir_all(&o.dir);
    Ok(())
}
