//! End-to-end runs of every `ibp-bench` subcommand, briefly (tiny sizes, ~1 s phases),
//! against a depot it spawns on 127.0.0.1: each must exit 0 and report sane, non-zero
//! figures as valid JSON. Benchmarks are not tests (TESTING.md): no throughput is asserted,
//! only that the figures exist and are positive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A scratch directory under /var/tmp (ext4: real O_DIRECT), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(format!("/var/tmp/ibp-tune-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The depot binary `--spawn` starts: next to ibp-bench, built on demand if missing.
fn ensure_depot() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_ibp-bench"));
    let depot = bench.with_file_name("ibp-depot");
    if !depot.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "ibp-depot", "--bin", "ibp-depot"])
            .status()
            .expect("run cargo build for ibp-depot");
        assert!(status.success(), "building ibp-depot failed");
    }
    depot
}

fn bench(args: &[&str]) -> Output {
    let depot = ensure_depot();
    Command::new(env!("CARGO_BIN_EXE_ibp-bench"))
        .args(args)
        .env("IBP_DEPOT_BIN", depot)
        .output()
        .expect("run ibp-bench")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ibp-bench failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is valid JSON")
}

fn figure<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["figures"]
        .as_array()
        .expect("figures array")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {report}"))
}

fn positive(f: &Value, field: &str) -> f64 {
    let v = f[field].as_f64().unwrap_or_else(|| panic!("{field} missing in {f}"));
    assert!(v > 0.0 && v.is_finite(), "{field} = {v} in {f}");
    v
}

#[test]
fn doctor_passes_on_ext4_and_fails_where_no_depot_can_run() {
    let dir = Scratch::new("doctor");
    let out = bench(&["doctor", "--dir", dir.path().to_str().expect("utf-8"), "--json"]);
    let checks = json_of(&out);
    let checks = checks.as_array().expect("array of checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["io_uring", "memlock", "O_DIRECT", "free space", "cores"]);
    assert!(checks.iter().all(|c| c["verdict"] != "fail"), "{checks:?}");

    // /proc takes no files at all: O_DIRECT cannot be probed, so a depot cannot run there.
    let out = bench(&["doctor", "--dir", "/proc"]);
    assert!(!out.status.success(), "doctor should fail on /proc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("fix:"), "{text}");
}

#[test]
fn baseline_reports_tcp_and_odirect_figures() {
    let dir = Scratch::new("baseline");
    let d = dir.path().to_str().expect("utf-8");
    let args = ["baseline", "--dir", d, "--size", "8MiB", "--block", "256KiB", "--qd", "8"];
    let report =
        json_of(&bench(&[&args[..], &["--streams", "2", "--duration-s", "1", "--json"]].concat()));
    assert_eq!(report["command"], "baseline");
    positive(figure(&report, "tcp loopback"), "mb_per_s");
    for name in ["odirect write", "odirect read"] {
        let f = figure(&report, name);
        positive(f, "mb_per_s");
        positive(f, "p99_us");
    }
    positive(figure(&report, "odirect 4KiB randread"), "ops_per_s");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert!(leftovers.is_empty(), "baseline file not removed");
}

#[test]
fn run_against_a_spawned_depot_with_baseline_json_and_csv() {
    let dir = Scratch::new("run");
    let d = dir.path().to_str().expect("utf-8");
    let csv = dir.path().join("results.csv");
    let report = json_of(&bench(&[
        "run",
        "--spawn",
        d,
        "--baseline",
        d,
        "--size",
        "8MiB",
        "--block",
        "256KiB",
        "--streams",
        "2",
        "--duration-s",
        "1",
        "--small",
        "4KiB",
        "--json",
        "--csv",
        csv.to_str().expect("utf-8"),
    ]));
    for name in [
        "allocate (hard)",
        "remove (decr)",
        "allocate+remove pairs",
        "write rand 4KiB",
        "load rand 4KiB",
    ] {
        let f = figure(&report, name);
        positive(f, "ops_per_s");
        positive(f, "p50_us");
        assert!(f["p999_us"].as_f64() >= f["p50_us"].as_f64(), "{f}");
    }
    for name in ["store seq", "load seq", "write rand 1MiB", "load rand 1MiB"] {
        positive(figure(&report, name), "mb_per_s");
    }
    // Disk RID: store and load are held to the same-run O_DIRECT limits.
    assert_eq!(figure(&report, "store seq")["limit"], "odirect write");
    positive(figure(&report, "store seq"), "ratio");
    positive(figure(&report, "load seq"), "ratio");
    let rows = std::fs::read_to_string(&csv).expect("csv written");
    let lines: Vec<&str> = rows.lines().collect();
    assert!(lines[0].starts_with("date,host_hash,cores,kernel,"), "{}", lines[0]);
    assert_eq!(lines.len(), 1 + report["figures"].as_array().map_or(0, Vec::len));
    // The spawned depot's directory is gone (stopped and cleaned up).
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("ibp-bench-"))
        .collect();
    assert!(left.is_empty(), "spawned depot directory left behind");
}

#[test]
fn run_on_a_ram_resource_compares_with_loopback_tcp_and_prints_a_table() {
    let dir = Scratch::new("ram");
    let d = dir.path().to_str().expect("utf-8");
    let out = bench(&[
        "run",
        "--spawn",
        d,
        "--ram",
        "64MiB",
        "--rid",
        "2",
        "--baseline",
        d,
        "--size",
        "4MiB",
        "--block",
        "256KiB",
        "--duration-s",
        "1",
        "--small",
        "4KiB",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("figure") && text.contains("p99 µs"), "{text}");
    let store = text.lines().find(|l| l.starts_with("store seq")).expect("store line");
    assert!(store.contains("% of tcp loopback"), "{store}");
}

/// The small-I/O setting: a spawned depot with 4 KiB checksum blocks and a soft data
/// allocation runs every phase and says the allocation was soft.
#[test]
fn run_with_small_checksum_blocks_and_a_soft_allocation() {
    let dir = Scratch::new("soft");
    let d = dir.path().to_str().expect("utf-8");
    let out = bench(&[
        "run",
        "--spawn",
        d,
        "--checksum-block",
        "4KiB",
        "--soft",
        "--size",
        "2MiB",
        "--block",
        "256KiB",
        "--duration-s",
        "1",
        "--small",
        "4KiB",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    let notes = report["notes"].to_string();
    assert!(notes.contains("soft"), "{notes}");
    for name in ["store seq", "load seq", "write rand 4KiB", "load rand 4KiB"] {
        assert!(positive(figure(&report, name), "ops_per_s") > 0.0, "{name}");
    }
}

/// `--allocs`: the transfer striped over two allocations lands on both shards of a 2-core
/// depot, and every bulk figure says how many allocations it used.
#[test]
fn run_striped_over_allocations_spreads_them_over_the_shards() {
    let dir = Scratch::new("stripes");
    let d = dir.path().to_str().expect("utf-8");
    let common = ["run", "--spawn", d, "--cores", "2", "--ram", "64MiB", "--rid", "2"];
    let shape = ["--size", "8MiB", "--block", "256KiB", "--duration-s", "1", "--small", "4KiB"];
    let out =
        bench(&[&common[..], &shape[..], &["--streams", "4", "--allocs", "2", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    let notes = report["notes"].to_string();
    assert!(notes.contains("striped over 2 allocations of 4MiB, on 2 distinct"), "{notes}");
    for name in ["store seq", "load seq", "write rand 4KiB", "load rand 4KiB"] {
        let f = figure(&report, name);
        assert_eq!(f["allocs"], 2, "{f}");
        positive(f, "ops_per_s");
    }
    assert_eq!(figure(&report, "allocate (hard)")["allocs"], 0);

    // More stripes than streams, or a CSV file with other columns, fail before anything runs.
    let out = bench(&[&common[..], &shape[..], &["--streams", "2", "--allocs", "3"]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allocs must be 1..=--streams"));
    let old = dir.path().join("old.csv");
    std::fs::write(&old, "date,host_hash,cores,kernel,command,figure,streams\n").expect("write");
    let out = bench(&[&common[..], &shape[..], &["--csv", old.to_str().expect("utf-8")]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("append to a new file"));
}

#[test]
fn sweep_runs_its_grid_within_budget_and_recommends_a_setting() {
    let dir = Scratch::new("sweep");
    let d = dir.path().to_str().expect("utf-8");
    let started = std::time::Instant::now();
    let report = json_of(&bench(&[
        "sweep",
        "--spawn",
        d,
        "--size",
        "4MiB",
        "--streams-list",
        "1,2",
        "--block-list",
        "256KiB",
        "--qd-list",
        "1,2",
        "--budget-s",
        "4",
        "--json",
    ]));
    let figures = report["figures"].as_array().expect("figures");
    assert_eq!(figures.len(), 8, "4 cells × store and load");
    for f in figures {
        positive(f, "mb_per_s");
    }
    let notes = report["notes"].as_array().expect("notes");
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("best: --streams"))));
    assert!(started.elapsed().as_secs() < 30, "sweep overran its budget");
}
