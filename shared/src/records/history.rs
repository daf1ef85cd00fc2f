//! The recent past a record keeps for the console's charts: routing tables
//! keep the weights they replaced, checkpoint and data RPO records the
//! points where their exposure changed. Each record keeps at most
//! [`MAX_POINTS`] points of the last [`WINDOW`], inside its own document,
//! so that the chart costs no extra write on the recovery path and the
//! record stays within its size bound.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How far back a record's history reaches.
pub const WINDOW: TimeDelta = TimeDelta::hours(24);

/// The most points one record's history holds (the oldest go first).
pub const MAX_POINTS: usize = 512;

/// The RPO exposure of one asset in one region at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposurePoint {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The asset (checkpoint location, bucket or dataset).
    pub asset: String,
    /// The region of the copy.
    pub region: String,
    /// The exposure, in seconds.
    pub seconds: i64,
    /// The workload's RPO target, in seconds.
    pub target_seconds: u64,
}

/// Drops from `points` (oldest first) those older than [`WINDOW`] before
/// `now`, then the oldest beyond [`MAX_POINTS`].
pub fn trim<P>(points: &mut Vec<P>, now: DateTime<Utc>, at: impl Fn(&P) -> DateTime<Utc>) {
    let since = now - WINDOW;
    points.retain(|point| at(point) >= since);
    let excess = points.len().saturating_sub(MAX_POINTS);
    points.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_the_last_day_and_at_most_the_newest_points() {
        let now = Utc::now();
        let mut points: Vec<DateTime<Utc>> = (0..30)
            .map(|hours| now - TimeDelta::hours(29 - hours))
            .collect();
        trim(&mut points, now, |at| *at);
        assert_eq!(points.len(), 25, "{points:?}");
        assert_eq!(points[0], now - WINDOW);

        let mut points: Vec<DateTime<Utc>> = (0..MAX_POINTS + 10)
            .map(|n| now - TimeDelta::seconds(i64::try_from(MAX_POINTS + 10 - n).expect("small")))
            .collect();
        let newest = points[points.len() - 1];
        let oldest_kept = points[10];
        trim(&mut points, now, |at| *at);
        assert_eq!(points.len(), MAX_POINTS);
        assert_eq!((points[0], points[MAX_POINTS - 1]), (oldest_kept, newest));
    }
}
