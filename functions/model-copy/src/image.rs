//! Where a model version's serving image lives, whether a region can
//! still pull it when the primary region is down, and where it goes when
//! mirrored into a standby region's repository. An Artifact Registry
//! repository in one region (`us-central1-docker.pkg.dev/...`) is lost with
//! that region; multi-regional ones (`us-docker.pkg.dev`, `gcr.io` and its
//! `us.`/`eu.`/`asia.` hosts) and registries outside Google Cloud are not
//! judged here.

use lifeboat_shared::topology::RegionId;

/// The suffix of Artifact Registry's Docker hosts.
const ARTIFACT_REGISTRY_SUFFIX: &str = "-docker.pkg.dev";

/// Artifact Registry's multi-regional locations.
const MULTI_REGIONS: [&str; 3] = ["us", "europe", "asia"];

/// Why `region` could not pull `image_uri` during an outage of `primary`,
/// if it could not.
pub fn outage_problem(image_uri: &str, primary: &RegionId, region: &RegionId) -> Option<String> {
    let host = image_uri.split('/').next()?;
    let location = host.strip_suffix(ARTIFACT_REGISTRY_SUFFIX)?;
    if MULTI_REGIONS.contains(&location) || location != primary.as_str() {
        return None;
    }
    Some(format!(
        "serving image {image_uri} is only in {primary}'s Artifact Registry: \
         {region} cannot pull it while {primary} is down (replicate the repository \
         to {region} or use a multi-regional one)"
    ))
}

/// Where `image_uri` goes when mirrored into `repository`: its name and
/// tag (or digest) under the repository
/// (`us-central1-docker.pkg.dev/acme/serving/ranker:7` into
/// `us-east1-docker.pkg.dev/acme/serving` gives
/// `us-east1-docker.pkg.dev/acme/serving/ranker:7`).
pub fn mirror_target(image_uri: &str, repository: &str) -> String {
    let name = image_uri.rsplit('/').next().unwrap_or(image_uri);
    format!("{}/{name}", repository.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionId {
        RegionId::new(name).expect("region")
    }

    #[test]
    fn only_an_image_in_the_primary_region_alone_is_a_problem() {
        let (primary, standby) = (region("us-central1"), region("us-east1"));
        let problem = outage_problem(
            "us-central1-docker.pkg.dev/acme/serving/ranker:7",
            &primary,
            &standby,
        );
        assert!(
            problem.is_some_and(|p| p.contains("us-east1 cannot pull it")),
            "a repository in the primary region only"
        );
        for fine in [
            "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-3:latest",
            "europe-docker.pkg.dev/acme/serving/ranker:7",
            "us-east1-docker.pkg.dev/acme/serving/ranker:7",
            "gcr.io/acme/ranker:7",
            "docker.io/library/python:3.12",
            "ranker:7",
            "",
        ] {
            assert_eq!(outage_problem(fine, &primary, &standby), None, "{fine}");
        }
    }

    #[test]
    fn a_mirrored_image_keeps_its_name_and_tag_or_digest() {
        assert_eq!(
            mirror_target(
                "us-central1-docker.pkg.dev/acme/serving/ranker:7",
                "us-east1-docker.pkg.dev/acme/serving/"
            ),
            "us-east1-docker.pkg.dev/acme/serving/ranker:7"
        );
        assert_eq!(
            mirror_target("127.0.0.1:5000/a/ranker@sha256:ab", "127.0.0.1:5001/b"),
            "127.0.0.1:5001/b/ranker@sha256:ab"
        );
    }
}
