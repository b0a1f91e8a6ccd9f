//! The `ibp` command line against the real `ibp-depot` on loopback: a full round trip with
//! capabilities in files, JSON output, and the documented exit codes. Build the binaries
//! first (`cargo build --workspace --bins`); `IBP_DEPOT_BIN` / `IBP_CLI_BIN` override them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe.parent().and_then(|deps| deps.parent()).map(|p| p.join(name));
    match bin {
        Some(bin) if bin.exists() => bin,
        _ => panic!("{name} binary not found: run `cargo build --workspace --bins` first"),
    }
}

struct DepotProcess {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl DepotProcess {
    fn start(name: &str) -> DepotProcess {
        let dir =
            PathBuf::from("/var/tmp").join(format!("ibp-cli-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        // Small capacity: the depot preallocates its region, and test machines are shared.
        let config = dir.join("depot.toml");
        let toml = format!(
            "[[resource]]\nkind = \"disk\"\npath = \"{}\"\ncapacity = \"256MiB\"\n",
            dir.join("disk").display()
        );
        std::fs::write(&config, toml).expect("config file");
        let mut child = Command::new(binary("ibp-depot", "IBP_DEPOT_BIN"))
            .args(["--listen", "127.0.0.1:0", "--cores", "2", "--data"])
            .arg(dir.join("disk"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("depot.log")).expect("log file"))
            .spawn()
            .expect("start ibp-depot");
        let stdout = child.stdout.take().expect("stdout");
        // From here on, Drop kills the process and removes the directory even on panic.
        let mut proc = DepotProcess { child, addr: String::new(), dir };
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).expect("depot prints its address");
        match first.trim().strip_prefix("listening on ") {
            Some(addr) => proc.addr = addr.to_owned(),
            None => {
                let log = std::fs::read_to_string(proc.dir.join("depot.log")).unwrap_or_default();
                panic!("depot did not start: {first:?}\n{log}");
            }
        }
        proc
    }
}

impl Drop for DepotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ibp(args: &[&str]) -> Output {
    Command::new(binary("ibp", "IBP_CLI_BIN"))
        .args(args)
        .env_remove("IBP_STATUS_PASSWORD")
        .output()
        .expect("run ibp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "ibp failed: {}\n{}", text(&out.stderr), text(&out.stdout));
    text(&out.stdout)
}

fn at(path: &Path) -> String {
    format!("@{}", path.display())
}

#[test]
fn round_trip_with_capability_files() {
    let depot = DepotProcess::start("roundtrip");
    let prefix = depot.dir.join("cap");
    ok(&ibp(&[
        "allocate",
        &depot.addr,
        "--size",
        "32MiB",
        "--duration",
        "1h",
        "--save",
        prefix.to_str().expect("utf8"),
    ]));
    let (read, write, manage) = (
        prefix.with_extension("read"),
        prefix.with_extension("write"),
        prefix.with_extension("manage"),
    );
    let secret = std::fs::read_to_string(&read).expect("read cap file");
    let src = depot.dir.join("src");
    let data: Vec<u8> = (0..9_000_123u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).expect("source");
    let put = ok(&ibp(&[
        "put",
        src.to_str().expect("utf8"),
        &at(&write),
        "--streams",
        "3",
        "--chunk",
        "1MiB",
        "--verify",
        "--read-cap",
        &at(&read),
    ]));
    assert!(put.contains("verified"), "{put}");
    let dst = depot.dir.join("dst");
    ok(&ibp(&["get", &at(&read), dst.to_str().expect("utf8"), "--verify"]));
    assert!(std::fs::read(&dst).expect("downloaded") == data);
    let piece = ibp(&["get", &at(&read), "-", "--offset", "1000", "--length", "100", "--quiet"]);
    assert_eq!(piece.stdout, data[1000..1100]);

    let probe = ok(&ibp(&["--json", "probe", &at(&manage)]));
    assert!(probe.contains("\"size\":9000123"), "{probe}");
    ok(&ibp(&["change", &at(&manage), "--duration", "2h", "--soft"]));
    assert!(ok(&ibp(&["--json", "probe", &at(&read)])).contains("\"reliability\":\"soft\""));
    ok(&ibp(&["truncate", &at(&manage), "1MiB"]));
    ok(&ibp(&["incr", &at(&manage)]));
    ok(&ibp(&["decr", &at(&manage)]));
    let status = ok(&ibp(&["status", &depot.addr]));
    assert!(status.contains("RID"), "{status}");
    ok(&ibp(&["rm", &at(&manage)]));

    let gone = ibp(&["probe", &at(&read)]);
    assert_eq!(gone.status.code(), Some(4), "removed allocation is a refusal");
    let stderr = text(&gone.stderr);
    assert!(stderr.contains("IBP_E_CAP_NOT_FOUND"), "{stderr}");
    let key = secret.trim().rsplit('#').next().and_then(|k| k.split('/').next()).expect("key");
    assert!(!stderr.contains(key), "capability key leaked into an error");
}

#[test]
fn exit_codes_and_json_errors() {
    let depot = DepotProcess::start("exits");
    assert_eq!(ibp(&["probe", "ibp://h:1/0#bad key/1/READ"]).status.code(), Some(3));
    assert_eq!(ibp(&["probe", "not-a-cap"]).status.code(), Some(3));
    let caps =
        ok(&ibp(&["--json", "allocate", &depot.addr, "--size", "1MiB", "--duration", "10m"]));
    let write =
        caps.split("\"write\":\"").nth(1).and_then(|s| s.split('"').next()).expect("write cap");
    let wrong_kind = ibp(&["truncate", write, "5"]);
    assert_eq!(wrong_kind.status.code(), Some(3));
    assert!(text(&wrong_kind.stderr).contains("needs a MANAGE capability"));
    assert_eq!(
        ibp(&["allocate", &depot.addr, "--size", "1GiB", "--duration", "1000d"]).status.code(),
        Some(4)
    );
    let refused = ibp(&["--json", "allocate", &depot.addr, "--size", "0", "--duration", "1h"]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(text(&refused.stdout).contains("\"ibp_code\":"), "{}", text(&refused.stdout));
    assert_eq!(ibp(&["--connect-timeout", "2s", "status", "127.0.0.1:1"]).status.code(), Some(5));
    assert_eq!(
        ibp(&["allocate", &depot.addr, "--size", "lots", "--duration", "1h"]).status.code(),
        Some(2)
    );
    assert_eq!(ibp(&["put", "/nonexistent/file", write]).status.code(), Some(9));
}
