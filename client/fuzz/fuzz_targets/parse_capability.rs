//! Fuzz target: `ibp_client::proto::fuzz::parse_capability` (no panic; parse → encode → parse stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ibp_client::proto::fuzz::parse_capability(data);
});
