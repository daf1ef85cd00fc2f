//! Test support shared by the cross-crate tests: where the emulators listen.
//!
//! `scripts/test.sh` starts every emulator and exports the variables below.
//! A test never skips silently when one is missing: it fails and says what to
//! start.

pub mod fake_gcs;

/// The project id every emulator is started with.
pub const PROJECT: &str = "lifeboat-test";

/// The `host:port` (or URL) of an emulator, read from `var`; panics with a
/// message naming the variable and the script that sets it.
pub fn emulator_host(var: &str) -> String {
    match std::env::var(var) {
        Ok(host) if !host.is_empty() => host,
        _ => panic!(
            "{var} is not set: this test needs its Google Cloud emulator. \
             Run the tests with scripts/test.sh, which installs and starts every emulator."
        ),
    }
}

/// A name no other test uses, for buckets, collections and topics on a shared
/// emulator: `prefix` followed by a random suffix, lowercase, 3-63 characters.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &suffix[..12])
}
