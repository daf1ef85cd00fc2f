//! The plan (`lifeboat plan`): for each workload, what every DR pattern
//! costs a month from real prices, the RPO and RTO it can expect, which
//! pattern is the cheapest that meets the workload's targets, the largest
//! checkpoint interval that keeps the RPO, and whether each standby could
//! take the primary's load in time.

pub mod prices;
pub mod quota;
