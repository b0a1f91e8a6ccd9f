//! Capability keys are secrets: after a transcript workload under `RUST_LOG=debug` (success
//! and error paths, malformed lines that carry keys, a restart), no key issued may appear in
//! the depot's log, in its status replies, or in its journals and secret file.
//!
//! A key is searched for by every 12-character window of its text and every 12-byte window of
//! its decoded bytes, so a truncated or re-encoded key counts as leaked too. Windows that cover
//! only the key's 4-character format/shard prefix are skipped: that prefix is shared by every
//! key of a shard and is not secret.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ibp_tests::*;

/// Window length searched for.
const WINDOW: usize = 12;
/// Leading key characters that are a format byte and a shard number, not secret.
const KEY_PREFIX_CHARS: usize = 4;

#[test]
fn no_key_in_logs_status_or_journals() {
    let mut depot = Depot::start(DepotOpts { rust_log: "debug".into(), ..Default::default() });
    let mut issued: Vec<Caps> = Vec::new();
    let mut status_text = String::new();
    workload(&depot, &mut issued, &mut status_text, 0);
    depot.restart();
    workload(&depot, &mut issued, &mut status_text, 1);
    // Keys issued before the restart, used after it.
    for caps in issued.iter().take(4) {
        let mut raw = Raw::connect(depot.addr());
        let _ = try_probe(&mut raw, &caps.read);
        let _ = try_load(&mut raw, &caps.read, 0, 1);
    }
    depot.stop();

    let keys: Vec<&str> = issued.iter().flat_map(|c| c.keys()).collect();
    let needles = windows_of(&keys);
    let log = depot.stderr_log();
    let log_lines = log.lines().count();
    assert!(log_lines >= 4, "the depot logged only {log_lines} lines under RUST_LOG=debug");
    assert!(log.contains("DEBUG"), "no DEBUG line: RUST_LOG=debug did not reach the depot");

    let mut leaks = Vec::new();
    leaks.extend(scan("stderr log", log.as_bytes(), &needles, &keys));
    leaks.extend(scan("status replies", status_text.as_bytes(), &needles, &keys));
    let mut scanned_files = 0;
    for entry in std::fs::read_dir(depot.data_dir()).expect("data dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Data files hold client bytes (none of them keys) and are large; skip them.
        if name.ends_with(".data") {
            continue;
        }
        scanned_files += 1;
        leaks.extend(scan_file(&path, &needles, &keys));
    }
    println!(
        "secrets: {} keys issued, {} log lines ({} bytes), {} status bytes, {scanned_files} meta files scanned, {} leaks",
        keys.len(),
        log_lines,
        log.len(),
        status_text.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "keys found:\n{}", leaks.join("\n"));
    assert!(keys.len() >= 60, "the workload issued only {} keys", keys.len());
}

/// A transcript workload that touches every command and most error paths with real keys.
fn workload(d: &Depot, issued: &mut Vec<Caps>, status_text: &mut String, round: u64) {
    let conn = || Raw::connect(d.addr());
    let mut raw = conn();
    for i in 0..12u64 {
        let hard = i % 2 == 0;
        let line = if i % 3 == 0 {
            format!("0 1 {} 1 600 4096 30", if hard { 2 } else { 1 })
        } else {
            format!("1 1 1 {} 1 600 4096 30", if hard { 2 } else { 1 })
        };
        let caps = try_allocate_line(&mut raw, &line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        let data = pattern(round * 100 + i, 1000 + i as usize * 10);
        if i % 2 == 0 {
            store(&mut raw, &caps.write, &data);
        } else {
            assert_eq!(
                try_store_pipelined(&mut raw, &caps.write, &data).ok(),
                Some(data.len() as u64)
            );
        }
        write(&mut raw, &caps.write, 10, b"overwrite");
        let _ = load(&mut raw, &caps.read, 0, 100);
        for cap in [&caps.read, &caps.write, &caps.manage] {
            probe(&mut raw, cap);
        }
        assert_eq!(manage_status(&mut raw, &caps.manage, "41 1"), 1);
        assert_eq!(manage_status(&mut raw, &caps.manage, "42 1"), 1);
        assert_eq!(manage_status(&mut raw, &caps.manage, "43 3 8192 900 2"), 1);
        issued.push(caps);
    }
    let a = issued[issued.len() - 1].clone();
    let b = issued[issued.len() - 2].clone();
    // Error paths that carry a key.
    let errors = [
        format!("1 8 {} 0 99999 30", a.read.wire()),
        format!("1 8 {} 0 10 30", a.write.wire()),
        format!("1 2 {} 10 30", a.read.wire()),
        format!("1 9 {} 41 1 30", a.read.wire()),
        format!("1 9 {} 43 3 1 -1 -1 30", a.manage.wire()),
        format!("1 8 {}", a.read.wire()),
        format!("1 8 {} x y z", a.read.wire()),
        format!("1 2 {} 999999 30", a.write.wire()),
        format!("1 13 {} 9000 10 30", a.write.wire()),
        format!("1 9 {} 99 30", a.manage.wire()),
        format!("1 77 {} 30", a.manage.wire()),
        format!("1 8 {}/junk {} 0 1 30", a.read.key, a.read.typekey),
        format!("1 8 1#{}XYZ 0 0 1 30", a.read.key),
        format!("1 8 2#{} 0 0 1 30", a.read.key),
    ];
    for line in &errors {
        let mut raw = conn();
        let reply = raw.cmd(line);
        assert!(status_of(&reply) < 0, "{line:?} succeeded: {reply:?}");
    }
    // Delete one and use it again.
    let mut raw = conn();
    assert_eq!(manage_status(&mut raw, &b.manage, "42 1"), 1);
    let mut raw = conn();
    assert!(try_probe(&mut raw, &b.manage).is_err(), "deleted allocation still probes");
    let mut raw = conn();
    assert!(try_load(&mut raw, &b.read, 0, 1).is_err(), "deleted allocation still loads");
    // Status replies, which must not carry keys either.
    let mut raw = conn();
    let head = raw.cmd("1 4 1 1 ibp 30");
    let n: usize = tokens(&head).get(1).and_then(|t| t.parse().ok()).expect("ST_INQ length");
    status_text.push_str(&String::from_utf8_lossy(&raw.read_exact(n)));
    status_text.push_str(&raw.cmd("0 4 1 ibp 30"));
    status_text.push_str(&raw.cmd("1 4 3 30"));
    assert_eq!(tokens(&raw.cmd("1 4 5 30")), ["1"]);
    for _ in 0..1000 {
        let l = raw.line();
        if l.trim() == "END" {
            break;
        }
        status_text.push_str(&l);
        status_text.push('\n');
    }
}

/// Every secret window of every key: text windows and decoded-byte windows, mapped to the key.
fn windows_of(keys: &[&str]) -> HashMap<Vec<u8>, usize> {
    let mut out = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let text = key.as_bytes();
        if text.len() >= KEY_PREFIX_CHARS + WINDOW {
            for w in text[KEY_PREFIX_CHARS..].windows(WINDOW) {
                out.insert(w.to_vec(), i);
            }
        } else {
            out.insert(text.to_vec(), i);
        }
        if let Ok(raw) = URL_SAFE_NO_PAD.decode(text) {
            // The first 3 bytes are the format byte and the shard.
            if raw.len() >= 3 + WINDOW {
                for w in raw[3..].windows(WINDOW) {
                    out.insert(w.to_vec(), i);
                }
            }
        }
    }
    out
}

/// Finds any window in `hay`, skipping all-zero 4 KiB pages (journals are preallocated).
fn scan(what: &str, hay: &[u8], needles: &HashMap<Vec<u8>, usize>, keys: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let page = 4096;
    let mut start = 0;
    while start < hay.len() && found.len() < 10 {
        let end = (start + page).min(hay.len());
        if hay[start..end].iter().any(|&b| b != 0) {
            let scan_end = (end + WINDOW - 1).min(hay.len());
            for pos in start..scan_end.saturating_sub(WINDOW - 1) {
                if let Some(&k) = needles.get(&hay[pos..pos + WINDOW]) {
                    let ctx_end = (pos + 60).min(hay.len());
                    found.push(format!(
                        "{what} @{pos}: part of key {} ({:?}...)",
                        keys[k],
                        String::from_utf8_lossy(&hay[pos..ctx_end])
                    ));
                    break;
                }
            }
        }
        start = end;
    }
    found
}

fn scan_file(path: &Path, needles: &HashMap<Vec<u8>, usize>, keys: &[&str]) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    scan(&path.display().to_string(), &bytes, needles, keys)
}

/// The scanner itself: a key cut short, or only its decoded bytes, is still found; the shared
/// prefix alone is not.
#[test]
fn scanner_finds_partial_and_decoded_keys() {
    let key = "AQAAoTzzIQX6BbgSiIIUYqfl1R5Pn9dHjliL";
    let needles = windows_of(&[key]);
    let log = format!("debug: looked up key {} and failed", &key[6..22]);
    assert_eq!(scan("log", log.as_bytes(), &needles, &[key]).len(), 1, "a 16-char piece");
    let raw = URL_SAFE_NO_PAD.decode(key).expect("base64");
    let mut journal = vec![0u8; 10_000];
    journal[5000..5000 + 20].copy_from_slice(&raw[5..25]);
    assert_eq!(scan("journal", &journal, &needles, &[key]).len(), 1, "decoded bytes");
    assert!(scan("log", b"shard AQAAxxxxxxxxxxxxxxxx", &needles, &[key]).is_empty(), "prefix only");
}
