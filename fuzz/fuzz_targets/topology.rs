//! Any bytes fed to the topology loader: it must report problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_shared::topology::Topology;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Topology::parse(text, "fuzz.yaml");
    }
});
