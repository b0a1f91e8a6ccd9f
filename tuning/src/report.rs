//! Output: a human table by default, JSON with `--json`, and `--csv FILE` appending one row
//! per figure with a description of the machine so results from many hosts can be pooled.
//!
//! The machine is described without identifying it: the hostname is hashed (FNV-1a, stable
//! across builds, unlike std's `DefaultHasher`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::figure::Figure;
use crate::units::format_size;

/// The CSV columns, in order; `allocs` is 0 for the machine's own limits.
const CSV_HEADER: &str = "date,host_hash,cores,kernel,command,figure,streams,block_bytes,qd,ops,bytes,elapsed_s,mb_per_s,ops_per_s,p50_us,p99_us,p999_us,limit,ratio,allocs";

/// Where a result was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    /// FNV-1a of the hostname, hex.
    pub host_hash: String,
    /// UTC date and time of the run, ISO 8601.
    pub date: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
        let host = read("/proc/sys/kernel/hostname").unwrap_or_default();
        Machine {
            cores: ibp_io::cores::available_cores(),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "unknown".into()),
            host_hash: format!("{:016x}", fnv1a(host.as_bytes())),
            date: utc_now(),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// `YYYY-MM-DDTHH:MM:SSZ` from the system clock (civil-from-days, H. Hinnant).
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The subcommand (`baseline`, `run`, `sweep`).
    pub command: String,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    /// Remarks a reader needs (a phase skipped, a depot refusal, the recommended setting).
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(command: &str) -> Report {
        Report {
            command: command.to_owned(),
            machine: Machine::describe(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Prints the table or JSON to stdout and appends CSV rows when asked.
    pub fn emit(&self, json: bool, csv: Option<&Path>) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, self).map_err(io::Error::other)?;
            writeln!(out)?;
        } else {
            self.write_table(&mut out)?;
        }
        if let Some(path) = csv {
            self.append_csv(path)?;
        }
        Ok(())
    }

    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let m = &self.machine;
        writeln!(
            out,
            "ibp-bench {} — {} cores, Linux {}, {}",
            self.command, m.cores, m.kernel, m.date
        )?;
        writeln!(
            out,
            "{:<28} {:>3} {:>6} {:>7} {:>3} {:>10} {:>11} {:>10} {:>10} {:>10}  vs limit",
            "figure", "N", "allocs", "block", "qd", "MB/s", "ops/s", "p50 µs", "p99 µs", "p999 µs",
        )?;
        for f in &self.figures {
            let opt = |v: Option<f64>, prec: usize| {
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"))
            };
            let ratio = match (&f.ratio, &f.limit) {
                (Some(r), Some(l)) => format!("{:.0} % of {l}", r * 100.0),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:<28} {:>3} {:>6} {:>7} {:>3} {:>10} {:>11} {:>10} {:>10} {:>10}  {}",
                f.name,
                f.setting.streams,
                if f.setting.allocs == 0 { "-".to_owned() } else { f.setting.allocs.to_string() },
                format_size(f.setting.block_bytes),
                f.setting.qd,
                opt(f.mb_per_s, 1),
                opt(f.ops_per_s, 0),
                opt(f.p50_us, 1),
                opt(f.p99_us, 1),
                opt(f.p999_us, 1),
                ratio
            )?;
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        Ok(())
    }

    fn append_csv(&self, path: &Path) -> io::Result<()> {
        // Checked again here (dispatch checked before the run): the file may have appeared
        // or changed during a long run.
        check_csv(path)?;
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        if fresh {
            writeln!(file, "{CSV_HEADER}")?;
        }
        let m = &self.machine;
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        for f in &self.figures {
            writeln!(
                file,
                "{},{},{},{},{},{},{},{},{},{},{},{:.6},{},{},{},{},{},{},{},{}",
                m.date,
                m.host_hash,
                m.cores,
                csv_field(&m.kernel),
                self.command,
                csv_field(&f.name),
                f.setting.streams,
                f.setting.block_bytes,
                f.setting.qd,
                f.ops,
                f.bytes,
                f.elapsed_s,
                opt(f.mb_per_s),
                opt(f.ops_per_s),
                opt(f.p50_us),
                opt(f.p99_us),
                opt(f.p999_us),
                csv_field(f.limit.as_deref().unwrap_or("")),
                opt(f.ratio),
                f.setting.allocs,
            )?;
        }
        Ok(())
    }
}

/// Fails when `path` exists with a header other than this version's, whose rows the new ones
/// would not line up with (older versions had fewer columns). A missing or empty file is fine.
pub fn check_csv(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    // An empty file (made with `touch`) gets the header on the first append.
    if first.is_empty() || first.trim_end() == CSV_HEADER {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "--csv {}: its columns differ from this version's ({CSV_HEADER}); append to a new file",
        path.display()
    )))
}

/// Quotes a CSV field when it holds a comma or quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_iso_and_hash_is_stable() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.ends_with('Z') && d.as_bytes()[10] == b'T');
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn check_csv_takes_missing_empty_and_current_files_and_refuses_other_columns() {
        let dir = std::env::temp_dir().join(format!("ibp-bench-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("r.csv");
        let _ = std::fs::remove_file(&path);
        assert!(check_csv(&path).is_ok(), "missing file");
        std::fs::write(&path, "").expect("write");
        assert!(check_csv(&path).is_ok(), "empty file");
        std::fs::write(&path, format!("{CSV_HEADER}\n1,2\n")).expect("write");
        assert!(check_csv(&path).is_ok(), "current header");
        std::fs::write(&path, "date,host_hash,cores\n").expect("write");
        let e = check_csv(&path).expect_err("older header");
        assert!(e.to_string().contains("columns differ"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
