//! The command tree. Sizes take units (`4GiB`, `64k`), durations too (`2h`, `1d`, `inf`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ibp_client::proto::netframe::MAX_NET_BLOCK_BYTES;
use ibp_client::proto::request::{ChksumSpec, ChksumType};

/// Checksum block when `--chksum` names none: 64 KiB, ACCRE's usual block.
pub const DEFAULT_CHKSUM_BLOCK_BYTES: u64 = 64 * 1024;

/// Command-line client for IBP depots.
#[derive(Debug, Parser)]
#[command(name = "ibp", version, about, long_about = None)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Longest the depot may stay silent mid-operation (e.g. 30s).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration_arg)]
    pub timeout: i64,
    /// Limit on connecting to a depot (e.g. 10s).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration_arg)]
    pub connect_timeout: i64,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Allocate storage on a depot; prints the read, write and manage capabilities.
    Allocate(AllocateArgs),
    /// Upload a file into an allocation (parallel WRITE at an offset).
    Put(PutArgs),
    /// Download from an allocation into a file, or to stdout with `-`.
    Get(GetArgs),
    /// Show an allocation's size, limit, lease and reference counts.
    Probe {
        /// Capability (any kind on this depot; ACCRE needs MANAGE), or @FILE holding it.
        cap: String,
    },
    /// Change an allocation's maximum size, lease or reliability.
    Change(ChangeArgs),
    /// Set an allocation's maximum size (and size, if larger).
    Truncate {
        /// MANAGE capability, or @FILE.
        cap: String,
        /// New maximum size (e.g. 1GiB).
        #[arg(value_parser = parse_size_arg)]
        size: u64,
    },
    /// Increment a reference count (read by default).
    Incr(RefArgs),
    /// Decrement a reference count (read by default).
    Decr(RefArgs),
    /// Remove an allocation (decrement its read count, as LStore does).
    Rm {
        /// MANAGE capability, or @FILE.
        cap: String,
    },
    /// Show a depot's resources, capacity and version.
    Status(StatusArgs),
    /// Copy depot to depot (SEND, or parallel PUSHes): the data never passes through here.
    Copy(CopyArgs),
    /// Copy one source to several targets, depot to depot (fan-out or chain).
    Mcopy(McopyArgs),
    /// Aliases: a window onto an allocation with capabilities of its own.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// New capabilities for an allocation; the old ones stop working (prints the new ones).
    Rename {
        /// MANAGE capability, or @FILE.
        cap: String,
        /// Write the new capabilities to PREFIX.read/.write/.manage (mode 0600).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Carve a new allocation out of an allocation's unused space (prints its capabilities).
    Split(SplitArgs),
    /// Give a split allocation's space back to the allocation it was split from.
    Merge {
        /// MANAGE capability of the master, or @FILE.
        master: String,
        /// MANAGE capability of the child (read count 1, write count 0), or @FILE.
        child: String,
    },
    /// The disk digests of an allocation made with `allocate --chksum`.
    #[command(subcommand)]
    Chksum(ChksumCommand),
}

/// `ibp alias …`.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Make an alias of [OFFSET, OFFSET+LENGTH) (default: the whole allocation, appends
    /// included); prints its capabilities.
    Create {
        /// MANAGE capability of the allocation, or @FILE.
        cap: String,
        /// Window start (offsets stay the allocation's).
        #[arg(long, default_value = "0", value_parser = parse_size_arg)]
        offset: u64,
        /// Window length (0 with offset 0: the whole allocation).
        #[arg(long, default_value = "0", value_parser = parse_size_arg)]
        length: u64,
        /// Lease (0: the allocation's).
        #[arg(long, default_value = "0", value_parser = parse_duration_arg)]
        duration: i64,
        /// Write the capabilities to PREFIX.read/.write/.manage (mode 0600).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Show an alias's window, lease and reference counts.
    Probe {
        /// The alias's MANAGE capability, or @FILE.
        cap: String,
    },
    /// Move or resize an alias's window and set its lease.
    Change {
        /// The alias's MANAGE capability, or @FILE.
        cap: String,
        /// MANAGE capability of the allocation it is an alias of, or @FILE.
        #[arg(long)]
        master: String,
        /// New window start.
        #[arg(long, value_parser = parse_size_arg)]
        offset: u64,
        /// New window length.
        #[arg(long, value_parser = parse_size_arg)]
        length: u64,
        /// New lease from now (0: the allocation's).
        #[arg(long, default_value = "0", value_parser = parse_duration_arg)]
        duration: i64,
    },
    /// Increment an alias's reference count (read by default).
    Incr(AliasRefArgs),
    /// Decrement an alias's reference count; at read count 0 the alias is gone.
    Decr(AliasRefArgs),
}

/// `ibp alias incr|decr`.
#[derive(Debug, Args)]
pub struct AliasRefArgs {
    /// The alias's MANAGE capability, or @FILE.
    pub cap: String,
    /// MANAGE capability of the allocation it is an alias of, or @FILE.
    #[arg(long)]
    pub master: String,
    /// The write count instead of the read count.
    #[arg(long)]
    pub write: bool,
}

/// `ibp split`.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// MANAGE capability of the allocation to split, or @FILE.
    pub cap: String,
    /// Size of the new allocation (taken from the master's maximum size).
    #[arg(long, value_parser = parse_size_arg)]
    pub size: u64,
    /// Its lease.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: i64,
    /// Volatile storage the depot may revoke.
    #[arg(long, conflicts_with = "hard")]
    pub soft: bool,
    /// Stable storage (the default).
    #[arg(long)]
    pub hard: bool,
    /// Keep disk digests for it: md5|sha1|sha256|sha512[:BLOCK] (SPLIT_ALLOCATE_CHKSUM).
    #[arg(long, value_parser = parse_chksum_arg)]
    pub chksum: Option<ChksumSpec>,
    /// Write the capabilities to PREFIX.read/.write/.manage (mode 0600).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// `ibp chksum …`.
#[derive(Debug, Subcommand)]
pub enum ChksumCommand {
    /// Print the digest type, block size and the digest of every block (GET_CHKSUM).
    Get {
        /// MANAGE capability, or @FILE.
        cap: String,
        /// Only the type, block size and block count.
        #[arg(long)]
        info_only: bool,
    },
    /// Have the depot re-read the data and count blocks whose digest no longer matches
    /// (VALIDATE_CHKSUM); exits 8 when there are any, unless --correct.
    Validate {
        /// MANAGE capability, or @FILE.
        cap: String,
        /// Also rewrite the digests of the blocks that differ.
        #[arg(long)]
        correct: bool,
    },
}

/// `ibp copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source READ capability, or @FILE.
    pub src: String,
    /// Target WRITE capability, or @FILE; the bytes are appended to it.
    pub dst: String,
    /// Offset in the source.
    #[arg(long, default_value = "0", value_parser = parse_size_arg)]
    pub offset: u64,
    /// Bytes to copy (default: to the end of the source, found by probing its read cap).
    #[arg(long, value_parser = parse_size_arg)]
    pub length: Option<u64>,
    /// Parallel PUSHes of consecutive ranges (the target's size is probed through its
    /// write cap, which our depots accept); 1 = one SEND.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
}

/// How `ibp mcopy` moves the bytes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StrategyArg {
    /// The source reads each byte once and sends it to every target at the same time.
    Fanout,
    /// Source → target 1 → target 2 → …, each hop forwarding while it stores.
    Chain,
}

/// `ibp mcopy`.
#[derive(Debug, Args)]
pub struct McopyArgs {
    /// Source READ capability, or @FILE.
    pub src: String,
    /// Target WRITE capabilities (or @FILE each); the bytes are appended to each.
    #[arg(long = "to", required = true, num_args = 1..)]
    pub to: Vec<String>,
    /// Fan-out or chain.
    #[arg(long, value_enum, default_value = "fanout")]
    pub strategy: StrategyArg,
    /// Parallel streams per target (fan-out only).
    #[arg(long, default_value_t = 1)]
    pub streams: u32,
    /// Offset in the source.
    #[arg(long, default_value = "0", value_parser = parse_size_arg)]
    pub offset: u64,
    /// Bytes to copy (default: to the end of the source, found by probing its read cap).
    #[arg(long, value_parser = parse_size_arg)]
    pub length: Option<u64>,
}

/// `ibp allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// Depot address, HOST[:PORT] (port 6714 by default).
    pub depot: String,
    /// Size (e.g. 4GiB).
    #[arg(long, value_parser = parse_size_arg)]
    pub size: u64,
    /// Lease (e.g. 2h, 1d; `inf` = the depot's maximum).
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: i64,
    /// Volatile storage the depot may revoke.
    #[arg(long, conflicts_with = "hard")]
    pub soft: bool,
    /// Stable storage (the default).
    #[arg(long)]
    pub hard: bool,
    /// Resource id (default: any).
    #[arg(long)]
    pub rid: Option<String>,
    /// Keep a disk digest of every block: md5|sha1|sha256|sha512[:BLOCK] (ALLOCATE_CHKSUM;
    /// BLOCK defaults to 64KiB).
    #[arg(long, value_parser = parse_chksum_arg)]
    pub chksum: Option<ChksumSpec>,
    /// Write the capabilities to files PREFIX.read, PREFIX.write, PREFIX.manage (mode 0600)
    /// instead of printing them.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// Transfer tuning shared by put and get.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Parallel streams (connections) [default: 4; 1 with --chksum].
    #[arg(long)]
    pub streams: Option<usize>,
    /// Bytes per request (e.g. 4MiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size_arg)]
    pub chunk: u64,
    /// Requests in flight per stream.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Reconnects per stream before giving up.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Read the data back and compare CRC32 per 64 KiB block.
    #[arg(long)]
    pub verify: bool,
    /// Send the data with a network digest after every block, checked by the receiver:
    /// md5|sha1|sha256|sha512[:BLOCK] (one stream; STORE/WRITE/LOAD_CHKSUM).
    #[arg(long, value_parser = parse_chksum_arg, conflicts_with = "verify")]
    pub chksum: Option<ChksumSpec>,
}

/// `ibp put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// File to upload.
    pub file: PathBuf,
    /// WRITE capability, or @FILE.
    pub cap: String,
    /// Offset in the allocation.
    #[arg(long, default_value = "0", value_parser = parse_size_arg)]
    pub offset: u64,
    /// READ capability (or @FILE) for --verify.
    #[arg(long)]
    pub read_cap: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `ibp get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// READ capability, or @FILE.
    pub cap: String,
    /// Destination file, or `-` for stdout.
    pub file: String,
    /// Offset in the allocation.
    #[arg(long, default_value = "0", value_parser = parse_size_arg)]
    pub offset: u64,
    /// Bytes to read (default: to the end, found by probing).
    #[arg(long, value_parser = parse_size_arg)]
    pub length: Option<u64>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `ibp change`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// MANAGE capability, or @FILE.
    pub cap: String,
    /// New maximum size (default: unchanged).
    #[arg(long, value_parser = parse_size_arg)]
    pub size: Option<u64>,
    /// New lease from now (default: unchanged).
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<i64>,
    /// Make it volatile.
    #[arg(long, conflicts_with = "hard")]
    pub soft: bool,
    /// Make it stable.
    #[arg(long)]
    pub hard: bool,
}

/// `ibp incr` / `ibp decr`.
#[derive(Debug, Args)]
pub struct RefArgs {
    /// MANAGE capability, or @FILE.
    pub cap: String,
    /// The write count instead of the read count.
    #[arg(long)]
    pub write: bool,
}

/// `ibp status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Depot address, HOST[:PORT].
    pub depot: String,
    /// Only this resource.
    #[arg(long)]
    pub rid: Option<String>,
    /// Status password (default `ibp`; or set IBP_STATUS_PASSWORD).
    #[arg(long, env = "IBP_STATUS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    ibp_client::units::parse_size(text).map_err(|e| e.to_string())
}

fn parse_duration_arg(text: &str) -> Result<i64, String> {
    ibp_client::units::parse_duration(text).map_err(|e| e.to_string())
}

/// `md5|sha1|sha256|sha512[:BLOCK]`, BLOCK a size (default 64 KiB), 1 byte to 2 GiB.
pub fn parse_chksum_arg(text: &str) -> Result<ChksumSpec, String> {
    let (name, block) = match text.split_once(':') {
        Some((name, block)) => {
            (name, ibp_client::units::parse_size(block).map_err(|e| e.to_string())?)
        }
        None => (text, DEFAULT_CHKSUM_BLOCK_BYTES),
    };
    let cstype = match name.to_ascii_lowercase().as_str() {
        "md5" => ChksumType::Md5,
        "sha1" => ChksumType::Sha1,
        "sha256" => ChksumType::Sha256,
        "sha512" => ChksumType::Sha512,
        _ => return Err(format!("unknown digest {name:?}: use md5, sha1, sha256 or sha512")),
    };
    if block == 0 || block > MAX_NET_BLOCK_BYTES {
        return Err(format!("checksum block must be 1 byte to 2GiB, not {block}"));
    }
    // Bounded by MAX_NET_BLOCK_BYTES (2^31) just above.
    Ok(ChksumSpec { cstype: cstype.code(), blocksize: block as i64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chksum_argument_forms() {
        let ok = |t: &str| parse_chksum_arg(t).map(|s| (s.cstype, s.blocksize));
        assert_eq!(ok("md5"), Ok((4, 65536)));
        assert_eq!(ok("SHA256:4KiB"), Ok((1, 4096)));
        assert_eq!(ok("sha1:1000"), Ok((3, 1000)));
        assert_eq!(ok("sha512:2GiB"), Ok((2, 1 << 31)));
        for bad in ["crc32", "md5:0", "md5:3GiB", "sha1:x", ""] {
            assert!(parse_chksum_arg(bad).is_err(), "{bad:?}");
        }
    }
}
