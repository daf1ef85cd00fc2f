//! Whether a copied version's artifacts can be read in its region while the
//! primary is down. Vertex AI serves a version by loading the files under
//! its `artifactUri`, when it is deployed and whenever a replica starts (a
//! failover scales the standby up), and the caller of `models:copy` is
//! responsible for those files staying reachable. So the copy's artifacts
//! must be in a bucket that does not live in the primary region alone, and
//! must be there.

use lifeboat_shared::storage::{ObjectStore, StorageError};
use lifeboat_shared::topology::RegionId;

/// Why `region` could not load the artifacts at `artifact_uri` while
/// `primary` is down, if it could not. A version without artifacts (a
/// custom container holding its model) has nothing to check.
pub async fn outage_problem(
    storage: &dyn ObjectStore,
    artifact_uri: &str,
    primary: &RegionId,
    region: &RegionId,
) -> Option<String> {
    if artifact_uri.is_empty() {
        return None;
    }
    let Some((bucket, prefix)) = artifact_uri
        .strip_prefix("gs://")
        .map(|path| path.split_once('/').unwrap_or((path, "")))
    else {
        return Some(format!(
            "artifacts at {artifact_uri:?} are not in Cloud Storage (gs://BUCKET/PATH)"
        ));
    };
    match storage.bucket_location(bucket).await {
        Ok(Some(location)) if location.eq_ignore_ascii_case(primary.as_str()) => {
            return Some(format!(
                "artifacts at {artifact_uri} are in bucket {bucket}, located in {primary} only: \
                 {region} cannot load them while {primary} is down (keep them in a \
                 multi-region bucket, or in one replicated to {region})"
            ));
        }
        Ok(_) => {}
        Err(StorageError::BucketNotFound { .. }) => {
            return Some(format!(
                "artifacts at {artifact_uri}: bucket {bucket} does not exist"
            ));
        }
        Err(error) => {
            return Some(format!(
                "artifacts at {artifact_uri} could not be checked: {error}"
            ));
        }
    }
    match storage.list(bucket, prefix, None).await {
        Ok(page) if page.objects.is_empty() => Some(format!("no artifacts under {artifact_uri}")),
        Ok(_) => None,
        Err(error) => Some(format!(
            "artifacts at {artifact_uri} could not be listed: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::storage::local::LocalStore;
    use lifeboat_shared::storage::{ObjectRef, PutOptions, bytes_stream};

    use super::*;

    fn region(name: &str) -> RegionId {
        RegionId::new(name).expect("region")
    }

    #[tokio::test]
    async fn artifacts_must_be_there_and_outside_the_primary_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = LocalStore::open(dir.path()).await.expect("store");
        let (primary, standby) = (region("us-central1"), region("us-east1"));
        storage
            .create_bucket("models-us", "US")
            .await
            .expect("bucket");
        storage
            .create_bucket("models-usc1", "us-central1")
            .await
            .expect("bucket");
        for bucket in ["models-us", "models-usc1"] {
            storage
                .put(
                    &ObjectRef::new(bucket, "ranker/v7/model.pkl"),
                    bytes_stream(&b"weights"[..]),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
        let check = |uri: &'static str| {
            let (storage, primary, standby) = (&storage, &primary, &standby);
            async move { outage_problem(storage, uri, primary, standby).await }
        };
        assert_eq!(check("gs://models-us/ranker/v7/").await, None);
        assert_eq!(check("").await, None, "no artifacts, nothing to check");
        for (uri, says) in [
            ("gs://models-usc1/ranker/v7/", "located in us-central1 only"),
            ("gs://models-us/ranker/v8/", "no artifacts under"),
            ("gs://gone/ranker/v7/", "bucket gone does not exist"),
            ("s3://models/ranker/", "not in Cloud Storage"),
        ] {
            let problem = check(uri).await.unwrap_or_default();
            assert!(problem.contains(says), "{uri}: {problem}");
        }
    }
}
