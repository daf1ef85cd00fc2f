//! [`MetricSink`] in the state store, for the local cloud (and any
//! deployment told to keep metrics there): one document per series, holding
//! its newest point, replaced by compare-and-set so a point never goes
//! backwards.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::{GaugePoint, MetricSink, MetricsError};
use crate::state::{StateError, StateStore, update};

/// The collection the series live in.
pub const COLLECTION: &str = "metrics";

/// How many times a write re-reads a series after losing a race.
const WRITE_ATTEMPTS: usize = 5;

/// How far back [`MetricSink::latest`] looks, as Cloud Monitoring's does.
const LATEST_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Characters escaped in a series' document id: `/` (a path separator in
/// Firestore) and `%` (the escape itself).
const ID_ESCAPES: &AsciiSet = &CONTROLS.add(b'/').add(b'%');

/// Gauges kept in a [`StateStore`].
#[derive(Clone, Debug)]
pub struct StateMetrics {
    store: Arc<dyn StateStore>,
    collection: String,
}

impl StateMetrics {
    /// Keeps metrics in `store`'s [`COLLECTION`].
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self::in_collection(store, COLLECTION)
    }

    /// Keeps metrics in `collection` of `store` (tests use their own).
    pub fn in_collection(store: Arc<dyn StateStore>, collection: impl Into<String>) -> Self {
        Self {
            store,
            collection: collection.into(),
        }
    }

    fn backend(&self, series: &str, error: StateError) -> MetricsError {
        MetricsError::Backend {
            context: format!("metric {series} in the state store"),
            detail: error.to_string(),
        }
    }

    async fn write_one(&self, point: &GaugePoint) -> Result<(), MetricsError> {
        let series = point.series();
        let id = utf8_percent_encode(&series, ID_ESCAPES).to_string();
        let newer = |stored: Option<GaugePoint>| match stored {
            Some(newest) if newest.at >= point.at => Err(Refusal::Metric(MetricsError::Rejected {
                series: series.clone(),
                detail: format!(
                    "a point at {} is not newer than the series' newest, at {}",
                    point.at, newest.at
                ),
            })),
            _ => Ok(point.clone()),
        };
        match update(
            self.store.as_ref(),
            &self.collection,
            &id,
            WRITE_ATTEMPTS,
            newer,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(Refusal::Metric(error)) => Err(error),
            Err(Refusal::State(error)) => Err(self.backend(&series, error)),
        }
    }
}

/// Why a series was not updated: the point itself, or the state store.
enum Refusal {
    Metric(MetricsError),
    State(StateError),
}

impl From<StateError> for Refusal {
    fn from(error: StateError) -> Self {
        Refusal::State(error)
    }
}

#[async_trait]
impl MetricSink for StateMetrics {
    async fn write(&self, points: &[GaugePoint]) -> Result<(), MetricsError> {
        for point in points {
            point.validate()?;
        }
        for point in points {
            self.write_one(point).await?;
        }
        Ok(())
    }

    async fn latest(&self, metric: &str) -> Result<Vec<GaugePoint>, MetricsError> {
        let since = Utc::now() - LATEST_WINDOW;
        let documents = self
            .store
            .list(&self.collection)
            .await
            .map_err(|error| self.backend(metric, error))?;
        let mut points: Vec<GaugePoint> = documents
            .into_iter()
            .filter_map(|document| serde_json::from_value::<GaugePoint>(document.value).ok())
            .filter(|point| point.metric == metric && point.at >= since)
            .collect();
        points.sort_by_key(GaugePoint::series);
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::local::LocalStateStore;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("store");
        let metrics = StateMetrics::new(Arc::new(store));
        super::super::conformance::run_all(&metrics, "conformance").await;
    }
}
