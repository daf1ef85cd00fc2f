//! The records one service writes to the state store and others read: the
//! contracts between Lifeboat's services, each with its collection, its
//! document ids, its size bound and the helpers that write and read it, so
//! the writer and every reader (the failover decision, drills, `lifeboat
//! status`, the console) hold one definition.
//!
//! - [`parity`]: model version parity per model and region (written by
//!   model-copy).

pub mod parity;
