//! model-copy's image mirror against two real registries on loopback (the
//! primary's and a standby's Artifact Registry): images and multi-platform
//! indexes arrive with their digest, a second copy moves nothing, a missing
//! image is a clear error, and a registry killed mid-copy leaves nothing
//! that a retry does not complete.

use std::time::Duration;

use lifeboat_model_copy::mirror::{ImageMirror, MirrorError};
use lifeboat_shared::gcp::Credentials;
use lifeboat_tests::registry::Registry;
use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;

fn mirror(registries: &[&Registry]) -> ImageMirror {
    ImageMirror::new(
        registries.iter().map(|r| r.host.clone()).collect(),
        Credentials::Anonymous,
    )
}

#[tokio::test]
async fn an_image_is_mirrored_with_its_digest_and_a_second_copy_moves_nothing() {
    let (primary, standby) = (Registry::start(), Registry::start());
    let digest = primary
        .push_image("acme/serving/ranker:7", 1, &[3 << 20, 1024])
        .await;
    let (source, target) = (
        primary.image("acme/serving/ranker:7"),
        standby.image("acme/serving-use1/ranker:7"),
    );
    let mirror = mirror(&[&primary, &standby]);
    assert!(!mirror.is_pullable(&target).await.expect("asked"));

    let mirrored = mirror.copy(&source, &target).await.expect("mirrored");
    assert_eq!(
        mirrored.digest, digest,
        "the manifest is copied byte for byte"
    );
    assert_eq!(mirrored.blobs_copied, 3, "config and two layers");
    assert!(mirrored.bytes_copied > 3 << 20);
    assert!(mirror.is_pullable(&target).await.expect("asked"));
    assert!(
        standby.pull_layers("acme/serving-use1/ranker:7").await
            == primary.pull_layers("acme/serving/ranker:7").await,
        "the standby pulls the same layers"
    );

    let again = mirror.copy(&source, &target).await.expect("mirrored again");
    assert_eq!((again.blobs_copied, again.digest), (0, digest));

    // A new tag sharing a layer copies only what the target lacks.
    primary
        .push_image("acme/serving/ranker:8", 1, &[3 << 20, 2048])
        .await;
    let mirrored = mirror
        .copy(
            &primary.image("acme/serving/ranker:8"),
            &standby.image("acme/serving-use1/ranker:8"),
        )
        .await
        .expect("mirrored");
    assert_eq!(
        (mirrored.blobs_copied, mirrored.bytes_copied),
        (1, 2048),
        "only the new layer moves: the 3 MiB layer and the config are shared"
    );
}

#[tokio::test]
async fn a_multi_platform_index_is_mirrored_with_every_platform() {
    let (primary, standby) = (Registry::start(), Registry::start());
    let client = primary.client();
    let mut digests = Vec::new();
    let mut entries = Vec::new();
    for (seed, architecture) in [(10, "amd64"), (20, "arm64")] {
        let path = format!("acme/serving/ranker:{architecture}");
        let digest = primary.push_image(&path, seed, &[4096]).await;
        let (raw, _) = client
            .pull_manifest_raw(
                &primary.image(&path).parse().expect("reference"),
                &RegistryAuth::Anonymous,
                &[OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .expect("manifest");
        entries.push(serde_json::json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": raw.len(),
            "platform": {"architecture": architecture, "os": "linux"},
        }));
        digests.push(digest);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    });
    let source = primary.image("acme/serving/ranker:7");
    client
        .push_manifest_raw(
            &source.parse().expect("reference"),
            serde_json::to_vec(&index).expect("JSON"),
            OCI_IMAGE_INDEX_MEDIA_TYPE.parse().expect("header value"),
        )
        .await
        .expect("index pushed");

    let mirrored = mirror(&[&primary, &standby])
        .copy(&source, &standby.image("acme/serving-use1/ranker:7"))
        .await
        .expect("mirrored");
    assert_eq!(
        mirrored.blobs_copied, 4,
        "a config and a layer per platform"
    );
    for digest in digests {
        assert_eq!(
            standby
                .digest(&format!("acme/serving-use1/ranker@{digest}"))
                .await
                .as_ref(),
            Some(&digest),
            "every platform's manifest is in the standby"
        );
    }
}

#[tokio::test]
async fn a_missing_image_or_a_bad_reference_is_a_clear_error() {
    let (primary, standby) = (Registry::start(), Registry::start());
    let mirror = mirror(&[&primary, &standby]);
    let source = primary.image("acme/serving/ranker:404");
    let target = standby.image("acme/serving-use1/ranker:404");
    let missing = mirror.copy(&source, &target).await;
    assert!(
        matches!(&missing, Err(MirrorError::Registry { reference, .. }) if *reference == source),
        "{missing:?}"
    );
    let bad = mirror.copy("Not A Reference", &target).await;
    assert!(
        matches!(&bad, Err(MirrorError::Reference { reference, .. }) if reference == "Not A Reference"),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_registry_killed_mid_copy_is_completed_by_a_retry() {
    let (primary, mut standby) = (Registry::start(), Registry::start());
    let digest = primary
        .push_image("acme/serving/ranker:7", 3, &[24 << 20, 16 << 20])
        .await;
    let (source, target) = (
        primary.image("acme/serving/ranker:7"),
        standby.image("acme/serving-use1/ranker:7"),
    );
    let mirror = mirror(&[&primary, &standby]);

    // Kill the standby's registry as soon as an upload has begun in it.
    let uploads = standby
        .storage
        .join("docker/registry/v2/repositories/acme/serving-use1/ranker/_uploads");
    let copy = tokio::spawn({
        let mirror = mirror.clone();
        let (source, target) = (source.clone(), target.clone());
        async move { mirror.copy(&source, &target).await }
    });
    let started = std::time::Instant::now();
    while !uploads.exists() {
        if copy.is_finished() {
            panic!("the copy ended before an upload began: {:?}", copy.await);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no upload began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    standby.kill();
    let failed = copy.await.expect("the copy task ends");
    assert!(
        failed.is_err(),
        "a copy into a dead registry fails: {failed:?}"
    );

    standby.restart();
    assert!(
        !mirror.is_pullable(&target).await.expect("asked"),
        "no manifest was pushed before its blobs"
    );
    let mirrored = mirror
        .copy(&source, &target)
        .await
        .expect("the retry completes");
    assert_eq!(mirrored.digest, digest);
    let (pulled, pushed) = (
        standby.pull_layers("acme/serving-use1/ranker:7").await,
        primary.pull_layers("acme/serving/ranker:7").await,
    );
    assert!(
        pulled == pushed,
        "the standby's layers differ from the source's"
    );
}
