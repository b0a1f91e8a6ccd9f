//! `ibp-depot`: serve IBP allocations from this machine's disks and memory.
//!
//! `ibp-depot --data DIR` is a working depot on 127.0.0.1:6714 with no config file; see the
//! README for the config file and every flag.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ibp_depot::config::{Config, Overrides};

/// An IBP (Internet Backplane Protocol) depot: time-limited byte-array allocations served
/// over the IBP wire protocol, one shard per core, io_uring and O_DIRECT underneath.
#[derive(Parser, Debug)]
#[command(name = "ibp-depot", version)]
struct Args {
    /// Directory for the first disk resource (created if missing).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address and base port to listen on; port 0 picks a free one. Shard i also listens on
    /// base + 1 + i. Default 127.0.0.1:6714.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Shards (one pinned thread each); default: all cores. Keep it fixed across restarts.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// TOML configuration file (see README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let flags = Overrides { data: args.data, listen: args.listen, cores: args.cores };
    let cfg = match Config::load(args.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ibp-depot: {e}");
            return ExitCode::from(2);
        }
    };
    match ibp_depot::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ibp-depot: {e}");
            ExitCode::FAILURE
        }
    }
}
