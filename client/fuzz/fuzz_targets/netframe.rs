//! Fuzz target: `ibp_client::proto::fuzz::netframe` (§10 frame decoder: no panic; any chunking
//! gives the same answer; wire accounting exact; completed streams re-encode to their input).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ibp_client::proto::fuzz::netframe(data);
});
