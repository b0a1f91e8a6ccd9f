//! Criterion micro-benchmarks of the depot's hot pieces, and the store/load data path on
//! ibp-io next to the same path on glommio 0.9 (the baseline our io layer must beat by 1.2×).
//!
//! `cargo bench -p ibp-benches` builds and runs them; this crate is outside the workspace's
//! default members so criterion and glommio never slow the test build.
//!
//! # Layout
//! * `benches/codec.rs`: parse and encode of every command line, reply parsers, capability
//!   URLs, CRC32 per 64 KiB block.
//! * `benches/depot_structures.rs`: extent allocator, journal record encode and scan
//!   (replay), allocation table lookups.
//! * `benches/datapath.rs`: loopback TCP → O_DIRECT store and O_DIRECT → TCP load, on ibp-io
//!   and on glommio, same sizes, same file system.
//!
//! This library holds only what several benchmarks share.

/// One sample command line of each kind the depot parses, in the canonical ACCRE form (and
/// the v0 and LoCI forms where clients send them). Keys are well-formed dummies.
pub const COMMAND_LINES: &[(&str, &str)] = &[
    ("allocate", "1 1 1 2 1 900 65536 30\n"),
    ("allocate_v0", "0 1 2 1 900 65536 30\n"),
    ("allocate_chksum", "1 29 4 65536 1 2 1 900 65536 30\n"),
    ("store", "1 2 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 14391562478771907151 1048576 30\n"),
    ("write", "1 13 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 14391562478771907151 4096 1048576 30\n"),
    ("load", "1 8 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 14391562478771907151 0 1048576 30\n"),
    ("manage_probe", "1 9 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 3862277 40 3 0 0 0 30\n"),
    ("manage_decr", "1 9 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 3862277 42 1 30\n"),
    ("manage_chng", "1 9 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 3862277 43 3 1048576 3600 2 30\n"),
    ("status_inq", "1 4 1 1 ibp 30\n"),
    ("status_res", "1 4 3 30\n"),
    ("send", "1 5 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W ibp://127.0.0.1:6715/1#aG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/1/WRITE 3862277 0 1048576 30 30 30\n"),
    ("push", "1 20 1 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W ibp://127.0.0.1:6715/1#aG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/1/WRITE 3862277 0 -1 1048576 30 30 30\n"),
    ("vec_read", "1 35 1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 3862277 4 0 4096 8192 4096 16384 4096 65536 4096 30\n"),
];

/// Reply lines the client parses.
pub const CAPS_REPLY: &str = "1 ibp://127.0.0.1:6715/1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/READ ibp://127.0.0.1:6715/1#aG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/WRITE ibp://127.0.0.1:6715/1#bG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/MANAGE \n";
/// A PROBE reply.
pub const PROBE_REPLY: &str = "1 1 0 1048576 1048576 3599 2 1 \n";
