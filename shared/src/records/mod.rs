//! The records one service writes to the state store and others read: the
//! contracts between Lifeboat's services, each with its collection, its
//! document ids, its size bound and the helpers that write and read it, so
//! the writer and every reader (the failover decision, drills, `lifeboat
//! status`, the console) hold one definition.
//!
//! - [`parity`]: model version parity per model and region (written by
//!   model-copy).
//! - [`checkpoint_rpo`]: the newest checkpoint complete per location and
//!   region, and the RPO exposure it implies (written by checkpoint-fanout).
//! - [`data_rpo`]: the oldest unreplicated change per bucket or dataset and
//!   region, and the RPO exposure it implies (written by data-sync).
//! - [`drill_run`]: every drill run, with what it measured, checked and
//!   changed, and each declared drill's last run (written by drill).
//! - [`incident`]: every step and the decision of each incident, failback
//!   and manual move (written by failover).
//! - [`history`]: the bounded recent past records keep for charts.

pub mod checkpoint_rpo;
pub mod data_rpo;
pub mod drill_run;
pub mod history;
pub mod incident;
pub mod parity;
