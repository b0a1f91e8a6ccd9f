//! Depot configuration: a TOML file, command-line flags over it, and defaults that make
//! `ibp-depot --data DIR` a working depot with no file at all.
//!
//! Design: the file is parsed into `FileConfig` (every field optional, units as strings), then
//! resolved into `Config`, where every value is concrete and checked. Errors name the field.
//! The README documents every key; keep the two in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checksum::{DEFAULT_CHECKSUM_BLOCK_BYTES, MAX_CHECKSUM_BLOCK_BYTES};
use crate::extent::BLOCK_BYTES;
use ibp_client::units::{parse_duration, parse_size as parse_size_typed};

/// Config sizes, with the unit parser every tool shares (`ibp_client::units`).
fn parse_size(s: &str) -> Result<u64, String> {
    parse_size_typed(s).map_err(|e| e.to_string())
}

/// Config durations: positive seconds (no "infinite" here: every lease has a maximum).
fn parse_duration_s(s: &str) -> Result<u64, String> {
    match parse_duration(s).map_err(|e| e.to_string())? {
        d if d > 0 => Ok(d as u64),
        _ => Err(format!("{s:?}: a duration here must be positive")),
    }
}

/// Default IBP port (IBP_DATA_PORT).
pub const DEFAULT_PORT: u16 = 6714;
/// Default disk capacity when none is configured: this much, or half the free space if less.
pub const DEFAULT_DISK_CAPACITY_BYTES: u64 = 8 << 30;
/// Default longest lease: 30 days.
pub const DEFAULT_MAX_DURATION_S: u64 = 30 * 86_400;
/// ACCRE closes connections idle this long.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;
/// Connections one core serves at once; more get `-66 <secs>` and are closed.
pub const DEFAULT_MAX_CONNECTIONS_PER_CORE: usize = 512;
/// Data buffer size: a multiple of the checksum block.
pub const DEFAULT_BUFFER_BYTES: u64 = 256 * 1024;
/// Buffers per core.
pub const DEFAULT_BUFFERS_PER_CORE: usize = 64;
/// Preallocated size of each of a shard's two journal files; compacted at three quarters full.
pub const DEFAULT_JOURNAL_BYTES: u64 = 64 << 20;

/// Where a resource keeps its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// A directory: one preallocated O_DIRECT file per shard.
    Disk(PathBuf),
    /// A block device used whole (O_DIRECT): shard i owns the i-th slice of it.
    Device(PathBuf),
    /// Anonymous memory: staging at memory speed; lost on restart.
    Ram,
}

impl ResourceKind {
    /// Whether allocations on it survive a restart (disk and device; not RAM).
    pub fn is_persistent(&self) -> bool {
        !matches!(self, ResourceKind::Ram)
    }
}

/// Size of a block device in bytes.
pub fn device_bytes(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(path)?.seek(SeekFrom::End(0))
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// One resource (an IBP RID), resolved.
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub rid: String,
    pub kind: ResourceKind,
    pub capacity_bytes: u64,
    pub max_duration_s: u64,
    /// Largest single allocation; `None` means a whole shard's region.
    pub max_alloc_bytes: Option<u64>,
    pub admission_factor: f64,
    pub checksum_block_bytes: u64,
}

/// The whole depot, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Host written into capabilities (defaults to the listen address).
    pub public_host: Option<String>,
    pub cores: usize,
    /// Where journals and the depot secret live.
    pub meta_dir: PathBuf,
    /// ST_INQ password; `None` accepts any (clients send `ibp`), and disables ST_CHANGE.
    pub status_password: Option<String>,
    pub idle_timeout_s: u64,
    pub max_connections_per_core: usize,
    pub buffer_bytes: u64,
    pub buffers_per_core: usize,
    /// Preallocated size of each of a shard's two journal files (used in turn).
    pub journal_bytes: u64,
    pub resources: Vec<ResourceConfig>,
}

/// The TOML file as written (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub depot: DepotSection,
    #[serde(default)]
    pub resource: Vec<ResourceSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepotSection {
    pub listen: Option<String>,
    pub public_host: Option<String>,
    pub cores: Option<usize>,
    pub meta_dir: Option<PathBuf>,
    pub status_password: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections_per_core: Option<usize>,
    pub buffer_size: Option<String>,
    pub buffers_per_core: Option<usize>,
    pub journal_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    pub rid: Option<String>,
    /// `disk` (default) or `ram`.
    pub kind: Option<String>,
    pub path: Option<PathBuf>,
    pub capacity: Option<String>,
    pub max_duration: Option<String>,
    pub max_alloc: Option<String>,
    pub admission_factor: Option<f64>,
    pub checksum_block: Option<String>,
}

/// Flags given on the command line; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub cores: Option<usize>,
}

impl Config {
    /// Reads `file` (if any), applies the flags, fills defaults and checks everything.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, String> {
        let parsed = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read config {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Config::resolve(parsed, flags)
    }

    pub fn resolve(mut f: FileConfig, flags: &Overrides) -> Result<Config, String> {
        if let Some(dir) = &flags.data {
            if let Some(first_disk) =
                f.resource.iter_mut().find(|r| r.kind.as_deref().unwrap_or("disk") == "disk")
            {
                first_disk.path = Some(dir.clone());
            } else {
                f.resource
                    .insert(0, ResourceSection { path: Some(dir.clone()), ..Default::default() });
            }
        }
        if f.resource.is_empty() {
            return Err(
                "no resource configured: give --data DIR or a [[resource]] in --config".into()
            );
        }
        let listen_text = flags
            .listen
            .clone()
            .or(f.depot.listen.clone())
            .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
        let listen: SocketAddr =
            listen_text.parse().map_err(|e| format!("listen address {listen_text:?}: {e}"))?;
        let cores = match flags.cores.or(f.depot.cores) {
            Some(0) | None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            Some(n) => n,
        };
        if cores > 256 {
            return Err(format!("cores = {cores}: at most 256 shards"));
        }
        let mut resources = Vec::new();
        for (i, r) in f.resource.iter().enumerate() {
            resources.push(resolve_resource(i, r, cores)?);
        }
        let mut rids: Vec<&str> = resources.iter().map(|r| r.rid.as_str()).collect();
        rids.sort_unstable();
        if rids.windows(2).any(|w| w[0] == w[1]) {
            return Err("two resources share one rid".into());
        }
        let meta_dir = match &f.depot.meta_dir {
            Some(d) => d.clone(),
            None => resources
                .iter()
                .find_map(|r| match &r.kind {
                    ResourceKind::Disk(p) => Some(p.clone()),
                    ResourceKind::Device(_) | ResourceKind::Ram => None,
                })
                .ok_or("a depot without a directory resource needs [depot] meta_dir for its secret and journals")?,
        };
        let buffer_bytes =
            opt_size(&f.depot.buffer_size, "depot.buffer_size")?.unwrap_or(DEFAULT_BUFFER_BYTES);
        let max_cb = resources.iter().map(|r| r.checksum_block_bytes).max().unwrap_or(BLOCK_BYTES);
        if buffer_bytes % max_cb != 0 || buffer_bytes == 0 {
            return Err(format!(
                "depot.buffer_size = {buffer_bytes} must be a multiple of every checksum_block ({max_cb})"
            ));
        }
        Ok(Config {
            listen,
            public_host: f.depot.public_host.clone(),
            cores,
            meta_dir,
            status_password: f.depot.status_password.clone(),
            idle_timeout_s: match &f.depot.idle_timeout {
                Some(s) => parse_duration_s(s).map_err(|e| format!("depot.idle_timeout: {e}"))?,
                None => DEFAULT_IDLE_TIMEOUT_S,
            },
            max_connections_per_core: f
                .depot
                .max_connections_per_core
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CORE),
            buffer_bytes,
            buffers_per_core: f.depot.buffers_per_core.unwrap_or(DEFAULT_BUFFERS_PER_CORE).max(4),
            journal_bytes: opt_size(&f.depot.journal_size, "depot.journal_size")?
                .unwrap_or(DEFAULT_JOURNAL_BYTES)
                .max(1 << 20),
            resources,
        })
    }

    /// Capacity of shard `shard`'s region of resource `r` (4 KiB aligned; the last shard does
    /// not get the remainder, so every shard's region has the same size and offset rule).
    pub fn region_bytes(&self, r: usize) -> u64 {
        let per = self.resources[r].capacity_bytes / self.cores as u64;
        per / BLOCK_BYTES * BLOCK_BYTES
    }
}

fn opt_size(v: &Option<String>, field: &str) -> Result<Option<u64>, String> {
    v.as_deref().map(parse_size).transpose().map_err(|e| format!("{field}: {e}"))
}

fn resolve_resource(i: usize, r: &ResourceSection, cores: usize) -> Result<ResourceConfig, String> {
    let field = |name: &str| format!("resource[{i}].{name}");
    let path = || {
        r.path.clone().ok_or_else(|| format!("{} is required for a disk resource", field("path")))
    };
    let kind = match r.kind.as_deref().unwrap_or("disk") {
        "disk" | "device" => {
            let p = path()?;
            if is_block_device(&p) {
                ResourceKind::Device(p)
            } else if r.kind.as_deref() == Some("device") {
                return Err(format!("{} = {}: not a block device", field("path"), p.display()));
            } else {
                ResourceKind::Disk(p)
            }
        }
        "ram" => ResourceKind::Ram,
        other => {
            return Err(format!(
                "{} = {other:?}: use \"disk\", \"device\" or \"ram\"",
                field("kind")
            ))
        }
    };
    let capacity_bytes = match opt_size(&r.capacity, &field("capacity"))? {
        Some(c) => c,
        None => match &kind {
            ResourceKind::Disk(p) => {
                // The directory may not exist yet (it is created at start-up): ask its nearest
                // existing ancestor, which is on the same filesystem.
                let existing = p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
                let free = ibp_io::probe::free_space(existing).map_err(|e| {
                    format!("{}: cannot read free space of {}: {e}", field("path"), p.display())
                })?;
                DEFAULT_DISK_CAPACITY_BYTES.min(free / 2)
            }
            ResourceKind::Device(p) => device_bytes(p).map_err(|e| {
                format!("{}: cannot size device {}: {e}", field("path"), p.display())
            })?,
            ResourceKind::Ram => {
                return Err(format!("{} is required for a RAM resource", field("capacity")))
            }
        },
    };
    if let ResourceKind::Device(p) = &kind {
        let have = device_bytes(p).map_err(|e| format!("{}: {e}", field("path")))?;
        if capacity_bytes > have {
            return Err(format!(
                "{} = {capacity_bytes} is larger than device {} ({have} bytes)",
                field("capacity"),
                p.display()
            ));
        }
    }
    if capacity_bytes / (cores as u64) < BLOCK_BYTES {
        return Err(format!(
            "{} = {capacity_bytes} is too small for {cores} shards",
            field("capacity")
        ));
    }
    let checksum_block_bytes = opt_size(&r.checksum_block, &field("checksum_block"))?
        .unwrap_or(DEFAULT_CHECKSUM_BLOCK_BYTES);
    if checksum_block_bytes % BLOCK_BYTES != 0
        || checksum_block_bytes == 0
        || checksum_block_bytes > MAX_CHECKSUM_BLOCK_BYTES
    {
        return Err(format!(
            "{} = {checksum_block_bytes}: a multiple of 4096 up to {MAX_CHECKSUM_BLOCK_BYTES}",
            field("checksum_block")
        ));
    }
    let admission_factor = r.admission_factor.unwrap_or(1.0);
    if !(admission_factor.is_finite() && admission_factor > 0.0) {
        return Err(format!("{} must be a positive number", field("admission_factor")));
    }
    let max_duration_s = match &r.max_duration {
        Some(s) => parse_duration_s(s).map_err(|e| format!("{}: {e}", field("max_duration")))?,
        None => DEFAULT_MAX_DURATION_S,
    };
    if max_duration_s == 0 || max_duration_s > i64::MAX as u64 / 4 {
        return Err(format!("{} out of range", field("max_duration")));
    }
    Ok(ResourceConfig {
        rid: r.rid.clone().unwrap_or_else(|| (i + 1).to_string()),
        kind,
        capacity_bytes,
        max_duration_s,
        max_alloc_bytes: opt_size(&r.max_alloc, &field("max_alloc"))?,
        admission_factor,
        checksum_block_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_flag_alone_is_enough() {
        let flags = Overrides { data: Some("/var/tmp".into()), ..Default::default() };
        let c = Config::resolve(FileConfig::default(), &flags).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:6714".parse().expect("addr"));
        assert_eq!(c.resources.len(), 1);
        assert_eq!(c.resources[0].rid, "1");
        assert!(c.resources[0].capacity_bytes > 0);
        assert_eq!(c.meta_dir, PathBuf::from("/var/tmp"));
    }

    #[test]
    fn file_with_two_resources_and_flags_over_it() {
        let text = r#"
            [depot]
            listen = "127.0.0.1:7000"
            status_password = "s3cret"
            [[resource]]
            rid = "disk1"
            path = "/var/tmp/x"
            capacity = "1GiB"
            max_duration = "2h"
            [[resource]]
            rid = "mem"
            kind = "ram"
            capacity = "256MiB"
        "#;
        let f: FileConfig = toml::from_str(text).expect("parses");
        let flags =
            Overrides { listen: Some("127.0.0.1:0".into()), cores: Some(2), ..Default::default() };
        let c = Config::resolve(f, &flags).expect("valid");
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.cores, 2);
        assert_eq!(c.resources[0].max_duration_s, 7200);
        assert_eq!(c.resources[1].kind, ResourceKind::Ram);
        assert_eq!(c.region_bytes(0), 512 << 20);
        assert_eq!(c.status_password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn errors_name_the_field() {
        let f: FileConfig =
            toml::from_str("[[resource]]\nkind = \"ram\"\ncapacity = \"12 furlongs\"")
                .expect("toml");
        let e = Config::resolve(f, &Overrides::default()).expect_err("bad unit");
        assert!(e.contains("resource[0].capacity"), "{e}");
        assert!(toml::from_str::<FileConfig>("[depot]\nlisten_typo = 1").is_err());
        let e = Config::resolve(FileConfig::default(), &Overrides::default()).expect_err("nothing");
        assert!(e.contains("--data"), "{e}");
    }
}
