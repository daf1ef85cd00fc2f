//! The reconcile's bulk path: scenarios for any [`BulkCopier`], with a
//! threshold of [`THRESHOLD`] objects so a handful of objects cross it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lifeboat_shared::storage::PutOptions;
use lifeboat_shared::transfer::BulkCopier;

use super::Fixture;
use crate::reconcile::{RegionReport, reconcile_all};
use crate::{BulkPath, DataSync};

/// The bulk threshold of these scenarios.
pub const THRESHOLD: u64 = 5;
/// How many objects the scenarios write, all unreplicated.
pub const OBJECTS: u64 = 12;

/// `fixture`'s context copying in bulk with `engine` from [`THRESHOLD`] on.
pub fn with_engine(fixture: &Fixture, engine: Arc<dyn BulkCopier>) -> DataSync {
    DataSync {
        bulk: Some(BulkPath::new(engine).with_threshold(THRESHOLD)),
        ..fixture.sync.clone()
    }
}

/// Writes [`OBJECTS`] objects in the source of `mirrored` with no event,
/// and returns the source write time of the oldest of those the walk hands
/// over (all but the first `THRESHOLD - 1` in name order).
pub async fn drift(fixture: &Fixture) -> DateTime<Utc> {
    let mirrored = fixture.asset("mirrored");
    let mut handed = Vec::new();
    for index in 0..OBJECTS {
        let name = format!("bulk/{index:02} ✓");
        let meta = fixture
            .write(&mirrored, &name, name.as_bytes(), PutOptions::default())
            .await;
        if index >= THRESHOLD - 1 {
            handed.push(meta.updated);
        }
    }
    handed.into_iter().min().expect("objects handed over")
}

/// Runs a reconcile of `sync`, returning the reports by `asset/region` and
/// every report `progress` saw.
pub async fn reconcile_seen(
    sync: &DataSync,
) -> (BTreeMap<String, RegionReport>, Vec<RegionReport>) {
    let seen: Mutex<Vec<RegionReport>> = Mutex::new(Vec::new());
    let progress = |report: &RegionReport| seen.lock().expect("lock").push(report.clone());
    let reports = reconcile_all(sync, 4, &progress)
        .await
        .unwrap_or_else(|error| panic!("reconcile: {error}"));
    let reports = reports
        .into_iter()
        .map(|report| (format!("{}/{}", report.asset, report.region), report))
        .collect();
    (reports, seen.into_inner().expect("lock"))
}

/// A drift that reaches the threshold: the objects found before it are
/// repaired one by one, the rest are copied by the engine after the walk;
/// its counters show in the progress and the report; every object ends
/// replicated; a drift below the threshold never calls the engine.
pub async fn a_drift_past_the_threshold_is_copied_in_bulk(
    fixture: &Fixture,
    engine: Arc<dyn BulkCopier>,
) {
    let sync = with_engine(fixture, engine);
    let mirrored = fixture.asset("mirrored");
    drift(fixture).await;
    let small = fixture.asset("kept");
    fixture
        .write(&small, "bulk/small", b"one object", PutOptions::default())
        .await;
    let (reports, seen) = reconcile_seen(&sync).await;
    let handed = OBJECTS - (THRESHOLD - 1);
    for region in mirrored.replicas.keys() {
        let report = &reports[&format!("mirrored/{region}")];
        let bulk = report
            .bulk
            .as_ref()
            .unwrap_or_else(|| panic!("{region}: no bulk copy: {report:#?}"));
        assert_eq!(
            (report.copied_missing, bulk.handed_over, report.failed),
            (THRESHOLD - 1, handed, 0),
            "{region}: {report:#?}"
        );
        assert_eq!(report.drift(), OBJECTS, "{region}");
        assert!(bulk.error.is_none(), "{region}: {bulk:?}");
        assert_eq!(
            (
                bulk.counters.objects_found,
                bulk.counters.objects_copied,
                bulk.counters.objects_skipped
            ),
            (OBJECTS, handed, THRESHOLD - 1),
            "{region}: the engine copies what the repairs had not: {bulk:?}"
        );
        assert_eq!(report.oldest_unreplicated, None, "{region}");
        assert!(
            seen.iter()
                .any(|progress| progress.region == region.as_str()
                    && progress
                        .bulk
                        .as_ref()
                        .is_some_and(|b| b.counters.objects_found > 0)),
            "{region}: the engine's counters show in the progress"
        );
    }
    for index in 0..OBJECTS {
        let name = format!("bulk/{index:02} ✓");
        fixture
            .assert_replicated(&mirrored, &name, name.as_bytes())
            .await;
    }
    let kept = &reports["kept/us-east1"];
    assert!(kept.bulk.is_none(), "below the threshold: {kept:#?}");
    assert_eq!(kept.copied_missing, 1);
}
