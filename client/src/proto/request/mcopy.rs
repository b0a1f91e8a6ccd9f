//! The LoCI MCOPY second line (PROTOCOL.md §12; LOCI `IBP_mcopy`):
//!
//! `0 6 +s KEY +t CAP… +k TYPEKEY +f OFFSET +z SIZE +i SYNC SYNC… TIMEOUT… +o OPT… +p PORT…
//! +n N +d SERVICE`
//!
//! with N entries in each per-target list. N comes near the end, so it is read and bounded
//! ([`MCOPY_MAX_TARGETS`]) and the token count checked (19 + 5N) before any list is built.

use super::encode::LineWriter;
use super::parse::{collect_tokens, parse_version, Fields};
use super::*;

/// The parsed second line of a LoCI MCOPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McopyLine {
    /// Wire version (LoCI sends 0).
    pub version: u8,
    /// Read key of the source.
    pub key: KeyRef,
    /// Target capabilities, 1..=[`MCOPY_MAX_TARGETS`].
    pub targets: Vec<Capability>,
    /// Source typekey (checked by LoCI).
    pub typekey: String,
    /// Source offset.
    pub offset: i64,
    /// Bytes to copy.
    pub size: i64,
    /// Source ServerSync.
    pub src_sync_s: i64,
    /// Per-target ServerSync.
    pub target_syncs_s: Vec<i64>,
    /// Per-target client timeouts.
    pub target_timeouts_s: Vec<i64>,
    /// Per-target data-mover options (DM_UNI, DM_BLAST…).
    pub options: Vec<i32>,
    /// Per-target data-mover ports.
    pub ports: Vec<i32>,
    /// Data-mover service (DM_MULTI, DM_SMULTI, DM_BLAST).
    pub service: i32,
}

fn bad(reason: &'static str) -> ParseError {
    ParseError::new(ErrorCode::BadFormat, reason)
}

fn marker(f: &mut Fields<'_, '_>, want: &'static [u8]) -> Result<(), ParseError> {
    if f.next()? == want {
        Ok(())
    } else {
        Err(bad("MCOPY marker missing or out of order"))
    }
}

/// Parses the MCOPY second line.
pub fn parse_mcopy_line(line: &[u8]) -> Result<McopyLine, ParseError> {
    let toks = collect_tokens(line)?;
    let version = parse_version(toks.first().copied())?;
    if toks.get(1).copied() != Some(b"6") {
        return Err(bad("MCOPY line does not start with the MCOPY command"));
    }
    let total = toks.len();
    if total < 24 || toks[total - 4] != b"+n" {
        return Err(bad("MCOPY line too short or +n missing"));
    }
    let n = Fields { toks: &toks, pos: total - 3 }.int("MCOPY count is not an integer")?;
    let n = match usize::try_from(n) {
        Ok(n) if (1..=MCOPY_MAX_TARGETS).contains(&n) => n,
        _ => return Err(ParseError::new(ErrorCode::InvalidParameter, "MCOPY count out of range")),
    };
    if total != 19 + 5 * n {
        return Err(bad("MCOPY token count does not match its target count"));
    }
    let mut f = Fields { toks: &toks, pos: 2 };
    marker(&mut f, b"+s")?;
    let key = f.key()?;
    marker(&mut f, b"+t")?;
    let targets = (0..n).map(|_| f.capability()).collect::<Result<Vec<_>, _>>()?;
    marker(&mut f, b"+k")?;
    let typekey = f.typekey()?;
    marker(&mut f, b"+f")?;
    let offset = f.int("offset is not an integer")?;
    marker(&mut f, b"+z")?;
    let size = f.int("size is not an integer")?;
    marker(&mut f, b"+i")?;
    let src_sync_s = f.timeout()?;
    let target_syncs_s = (0..n).map(|_| f.timeout()).collect::<Result<Vec<_>, _>>()?;
    let target_timeouts_s = (0..n).map(|_| f.timeout()).collect::<Result<Vec<_>, _>>()?;
    marker(&mut f, b"+o")?;
    let options = (0..n).map(|_| f.int32("option is not an integer")).collect::<Result<_, _>>()?;
    marker(&mut f, b"+p")?;
    let ports = (0..n).map(|_| f.int32("port is not an integer")).collect::<Result<_, _>>()?;
    marker(&mut f, b"+n")?;
    f.next()?;
    marker(&mut f, b"+d")?;
    let service = f.int32("service is not an integer")?;
    Ok(McopyLine {
        version,
        key,
        targets,
        typekey,
        offset,
        size,
        src_sync_s,
        target_syncs_s,
        target_timeouts_s,
        options,
        ports,
        service,
    })
}

impl McopyLine {
    /// Appends the line in LoCI's layout. All per-target lists must have `targets.len()`
    /// entries for it to parse back.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = LineWriter::new(out);
        w.int(self.version).int(cmd::MCOPY).str("+s").key(&self.key).str("+t");
        for cap in &self.targets {
            w.cap(cap);
        }
        w.str("+k").str(&self.typekey).str("+f").int(self.offset).str("+z").int(self.size);
        w.str("+i").int(self.src_sync_s);
        for t in self.target_syncs_s.iter().chain(&self.target_timeouts_s) {
            w.int(*t);
        }
        w.str("+o");
        for o in &self.options {
            w.int(*o);
        }
        w.str("+p");
        for p in &self.ports {
            w.int(*p);
        }
        let n = i64::try_from(self.targets.len()).unwrap_or(i64::MAX);
        w.str("+n").int(n).str("+d").int(self.service);
        w.end();
    }
}
