//! drill: game days. A drill declared in the topology (`drills:`) fails or
//! exercises one region of one workload through the same path a real
//! outage takes, within guardrails checked before and during the run, for
//! at most its maximum duration, and leaves a record ([`run`]) and a
//! self-contained HTML report ([`report`]).

pub mod isolation;
pub mod run;
