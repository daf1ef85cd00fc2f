//! Test support shared by the cross-crate tests: where the emulators listen.
