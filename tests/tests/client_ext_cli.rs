//! The `ibp` subcommands for the rest of the 1.4 command set against the real depot: `allocate
//! --chksum`, `put`/`get --chksum`, `chksum get|validate`, `alias`, `split`, `merge`,
//! `rename`, their JSON, the refusal of `--chksum` with several streams, and a `get --chksum`
//! through a proxy that damages one byte (exit 8, the offset named, no file left behind).
//!
//! Build the binaries first (`cargo build --workspace --bins`); `ibp` is looked up next to the
//! depot binary (`IBP_CLI_BIN` overrides it). Every run has a wall-clock limit and is killed
//! (our own child, by its handle) past it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha1::Digest as _;

use ibp_client::proto::Capability;
use ibp_tests::depot::depot_bin;
use ibp_tests::{pattern, Depot as TestDepot, DepotOpts, FlipProxy};

/// Longest one `ibp` run may take.
const CLI_LIMIT: Duration = Duration::from_secs(60);

fn ibp_bin() -> PathBuf {
    match std::env::var_os("IBP_CLI_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => depot_bin().with_file_name("ibp"),
    }
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

/// Kills the child if the test panics while it runs.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `ibp ARGS` to completion within [`CLI_LIMIT`].
fn ibp(args: &[&str]) -> Output {
    let mut child = Command::new(ibp_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ibp (build it with `cargo build --workspace --bins`)");
    let (out, err) = (child.stdout.take().map(drain), child.stderr.take().map(drain));
    let mut child = Guard(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for ibp") {
            break status;
        }
        assert!(started.elapsed() < CLI_LIMIT, "`ibp {}` overran {CLI_LIMIT:?}", args.join(" "));
        thread::sleep(Duration::from_millis(5));
    };
    let join = |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Output { status, stdout: join(out), stderr: join(err) }
}

/// Runs a command that must succeed and print one JSON object.
fn json(args: &[&str]) -> serde_json::Value {
    let out = ibp(args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ibp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn field(v: &serde_json::Value, name: &str) -> String {
    v[name].as_str().unwrap_or_else(|| panic!("no {name} in {v}")).to_string()
}

#[track_caller]
fn fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "message lacks {needle:?}: {stderr}");
}

#[test]
fn ext_subcommands_round_trip() {
    let proc = TestDepot::start(DepotOpts::default());
    let addr = proc.addr().to_string();
    let caps = json(&[
        "--json",
        "allocate",
        &addr,
        "--size",
        "1MiB",
        "--duration",
        "10m",
        "--chksum",
        "sha1:8KiB",
    ]);
    let (read, write, manage) =
        (field(&caps, "read"), field(&caps, "write"), field(&caps, "manage"));
    // put/get --chksum, in several commands of --chunk bytes, with different digests.
    let data = pattern(5, 300_001);
    let src = proc.dir().join("src");
    std::fs::write(&src, &data).expect("source file");
    let src = src.to_str().expect("utf-8 path");
    let put = ["put", src, &write, "--chksum", "md5:1000", "--chunk", "100KiB", "--quiet"];
    assert!(ibp(&put).status.success(), "put --chksum");
    fails(&ibp(&["put", src, &write, "--chksum", "md5", "--streams", "4"]), 3, "one stream");
    let dst = proc.dir().join("dst");
    let dst_s = dst.to_str().expect("utf-8 path");
    let get = ["get", &read, dst_s, "--chksum", "sha256:4KiB", "--chunk", "64KiB", "--quiet"];
    assert!(ibp(&get).status.success(), "get --chksum");
    assert!(std::fs::read(&dst).expect("downloaded") == data, "get --chksum differs");
    let out = ibp(&["get", &read, "-", "--length", "10", "--offset", "5", "--chksum", "sha512"]);
    assert_eq!(out.stdout, &data[5..15], "get - --chksum");
    // The disk digests: SHA-1 per 8 KiB block.
    let info = json(&["--json", "chksum", "get", &manage]);
    assert_eq!(
        (field(&info, "type"), &info["blocksize"], &info["nblocks"]),
        ("sha1".into(), &8192.into(), &37.into())
    );
    let first: String =
        sha1::Sha1::digest(&data[..8192]).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(info["digests"][0].as_str(), Some(first.as_str()));
    assert_eq!(info["digests"].as_array().map(Vec::len), Some(37));
    let out = ibp(&["chksum", "validate", &manage]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "validate: 0 bad block(s)");
    assert!(out.status.success());
    // Aliases.
    let alias = json(&["--json", "alias", "create", &manage, "--offset", "100", "--length", "200"]);
    let p = json(&["--json", "alias", "probe", &field(&alias, "manage")]);
    assert_eq!(
        (&p["offset"], &p["length"], &p["read_refs"]),
        (&100.into(), &200.into(), &1.into())
    );
    let a_manage = field(&alias, "manage");
    let change =
        ["alias", "change", &a_manage, "--master", &manage, "--offset", "0", "--length", "50"];
    assert!(ibp(&change).status.success());
    assert_eq!(json(&["--json", "alias", "probe", &a_manage])["length"], 50);
    assert!(ibp(&["alias", "decr", &a_manage, "--master", &manage]).status.success());
    fails(&ibp(&["alias", "probe", &a_manage]), 4, "IBP_E_CAP_NOT_FOUND");
    // Split and merge.
    let child = json(&["--json", "split", &manage, "--size", "100KiB", "--duration", "10m"]);
    assert_eq!(json(&["--json", "probe", &manage])["max_size"], (1 << 20) - 102_400);
    assert!(ibp(&["merge", &manage, &field(&child, "manage")]).status.success());
    assert_eq!(json(&["--json", "probe", &manage])["max_size"], 1 << 20);
    fails(&ibp(&["merge", &manage, &read]), 3, "MANAGE");
    // Rename retires the old capabilities.
    let new = json(&["--json", "rename", &manage]);
    fails(&ibp(&["probe", &manage]), 4, "IBP_E_CAP_NOT_FOUND");
    assert_eq!(json(&["--json", "probe", &field(&new, "manage")])["size"], 300_001);
}

#[test]
fn a_damaged_get_chksum_fails_and_leaves_no_file() {
    let proc = TestDepot::start(DepotOpts::default());
    let addr = proc.addr().to_string();
    let caps = json(&["--json", "allocate", &addr, "--size", "64KiB", "--duration", "10m"]);
    let data = pattern(6, 20_000);
    let src = proc.dir().join("src");
    std::fs::write(&src, &data).expect("source file");
    let put = ["put", src.to_str().expect("utf-8"), &field(&caps, "write"), "--streams", "1"];
    assert!(ibp(&put).status.success());
    // The read capability, pointed at a proxy that damages a byte of the 3rd MD5 block of the
    // first 8 KiB piece (pieces share the pooled connection; the flip counts from its first
    // reply line).
    let proxy = FlipProxy::start(proc.addr(), Some(2 * (1024 + 32) + 40));
    let mut cap = Capability::parse(&field(&caps, "read")).expect("read cap");
    cap.host = "127.0.0.1".into();
    cap.port = proxy.addr().port();
    let dst = proc.dir().join("dst");
    let args = ["get", &cap.to_url(), dst.to_str().expect("utf-8"), "--length", "20000"];
    let out = ibp(&[&args[..], &["--chksum", "md5:1KiB", "--chunk", "8KiB", "--quiet"]].concat());
    fails(&out, 8, "payload offset 2048");
    assert!(!dst.exists(), "a damaged download leaves no file");
    // Through an honest proxy the same command gets the data.
    let honest = FlipProxy::start(proc.addr(), None);
    cap.port = honest.addr().port();
    let args = ["get", &cap.to_url(), dst.to_str().expect("utf-8"), "--length", "20000"];
    let out = ibp(&[&args[..], &["--chksum", "md5:1KiB", "--chunk", "8KiB", "--quiet"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dst).expect("downloaded") == data);
}
