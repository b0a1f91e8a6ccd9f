//! `ibp`: every IBP client call as a subcommand, with human output by default, `--json` for
//! scripts, progress bars on long transfers, and exit codes that say what went wrong (see
//! `client/README.md`). Capabilities are secrets: they are printed only where the user asked
//! for them (`ibp allocate`), never in errors or logs; pass `@FILE` instead of a capability
//! to keep it out of the process list.
//!
//! # Layout
//! * `args`: the clap command tree;
//! * `commands`: one function per subcommand;
//! * `ext`: the subcommands for aliases, rename, split/merge, disk digests, and `--chksum`
//!   transfers;
//! * `output`: human/JSON printing, progress bars, exit codes.

#[path = "ibp/args.rs"]
mod args;
#[path = "ibp/commands.rs"]
mod commands;
#[path = "ibp/ext.rs"]
mod ext;
#[path = "ibp/output.rs"]
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::report_failure(&failure, json);
            ExitCode::from(failure.exit_code())
        }
    }
}
