//! The plan's standby quota check against the Cloud Quotas stand-in: each
//! need is answered enough, not enough (naming the region, the resource and
//! both numbers) or unknown with the reason, never silently enough.

use lifeboat_plan::quota::{
    QuotaFinding, QuotaNeed, QuotaOutcome, SERVICE, ServingQuotas, ServingResource,
};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_tests::quotas_standin::{PAGE_SIZE, QuotasStandIn};

const PROJECT: &str = "lifeboat-test";
const CPUS: &str = "CustomModelServingCPUsPerProjectPerRegion";
const CPUS_METRIC: &str = "aiplatform.googleapis.com/custom_model_serving_cpus";
const T4S: &str = "CustomModelServingT4GPUsPerProjectPerRegion";
const T4S_METRIC: &str = "aiplatform.googleapis.com/custom_model_serving_nvidia_t4_gpus";

fn cpus(region: &str, amount: u64) -> QuotaNeed {
    QuotaNeed {
        region: region.into(),
        resource: ServingResource::Vcpus {
            family: "n1".into(),
        },
        amount,
        why: "recsys-ranker".into(),
    }
}

fn gpus(region: &str, accelerator: &str, amount: u64) -> QuotaNeed {
    QuotaNeed {
        region: region.into(),
        resource: ServingResource::Accelerator {
            accelerator: accelerator.into(),
        },
        amount,
        why: "fraud-scorer".into(),
    }
}

async fn check(standin: &QuotasStandIn, needs: &[QuotaNeed]) -> Vec<QuotaFinding> {
    let quotas = ServingQuotas::new(&ApiEndpoint::emulator(&standin.host()))
        .await
        .expect("connect to the stand-in");
    let findings = quotas.check(PROJECT, needs).await;
    assert_eq!(findings.len(), needs.len(), "one finding per need");
    for (finding, need) in findings.iter().zip(needs) {
        assert_eq!(&finding.need, need, "findings in the needs' order");
    }
    findings
}

fn unknown_why(finding: &QuotaFinding) -> &str {
    match &finding.outcome {
        QuotaOutcome::Unknown { why } => why,
        other => panic!("expected unknown, got {other:?} for {finding}"),
    }
}

#[tokio::test]
async fn a_region_whose_quota_covers_the_need_has_enough() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, CPUS, CPUS_METRIC, Some("europe-west1"), 32);

    let findings = check(&standin, &[cpus("europe-west1", 24)]).await;

    assert_eq!(findings[0].outcome, QuotaOutcome::Enough { limit: 32 });
    assert_eq!(findings[0].quota.map(|q| q.quota_id), Some(CPUS));
    assert!(findings[0].is_enough());
}

#[tokio::test]
async fn a_region_whose_quota_is_below_the_need_is_named_with_both_numbers() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, CPUS, CPUS_METRIC, Some("europe-west1"), 16);

    let findings = check(&standin, &[cpus("europe-west1", 24)]).await;

    assert_eq!(findings[0].outcome, QuotaOutcome::NotEnough { limit: 16 });
    assert!(!findings[0].is_enough());
    assert_eq!(
        findings[0].to_string(),
        "europe-west1 needs 24 custom model serving CPUs (n1) for recsys-ranker; \
         the quota is 16: it could not scale during an outage"
    );
    let json = serde_json::to_value(&findings[0]).expect("serialize");
    assert_eq!(json["outcome"]["outcome"], "not_enough");
    assert_eq!(json["outcome"]["limit"], 16);
    assert_eq!(json["quota"]["quota_id"], CPUS);
    assert_eq!(json["need"]["resource"]["family"], "n1");
}

#[tokio::test]
async fn a_region_without_a_value_of_its_own_gets_the_default() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, T4S, T4S_METRIC, None, 8);
    standin.set_value(SERVICE, T4S, T4S_METRIC, Some("us-east1"), 2);

    let findings = check(
        &standin,
        &[
            gpus("europe-west1", "nvidia-tesla-t4", 6),
            gpus("us-east1", "nvidia-tesla-t4", 4),
        ],
    )
    .await;

    assert_eq!(findings[0].outcome, QuotaOutcome::Enough { limit: 8 });
    assert_eq!(
        findings[1].outcome,
        QuotaOutcome::NotEnough { limit: 2 },
        "a region's own value wins over the default"
    );
}

#[tokio::test]
async fn a_refused_listing_makes_every_need_unknown_naming_the_permission() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, CPUS, CPUS_METRIC, None, 1000);
    standin.refuse();

    let findings = check(
        &standin,
        &[
            cpus("europe-west1", 8),
            gpus("europe-west1", "nvidia-l4", 1),
        ],
    )
    .await;

    for finding in &findings {
        let why = unknown_why(finding);
        assert!(why.contains("PERMISSION_DENIED"), "{why}");
        assert!(why.contains("cloudquotas.quotas.get"), "{why}");
        assert!(why.contains(PROJECT), "{why}");
        assert!(!finding.is_enough());
    }
    assert!(findings[0].to_string().contains("the quota is unknown"));
}

#[tokio::test]
async fn an_unreachable_api_makes_every_need_unknown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let quotas = ServingQuotas::new(&ApiEndpoint::emulator(&format!("127.0.0.1:{port}")))
        .await
        .expect("building a client does not connect");

    let findings = quotas.check(PROJECT, &[cpus("europe-west1", 8)]).await;

    let why = unknown_why(&findings[0]);
    assert!(why.contains("could not be reached"), "{why}");
}

#[tokio::test]
async fn every_page_of_the_listing_is_read() {
    let standin = QuotasStandIn::start(PROJECT).await;
    for n in 0..2 * PAGE_SIZE + 1 {
        standin.set_value(
            SERVICE,
            &format!("OtherQuota{n}PerProjectPerRegion"),
            &format!("aiplatform.googleapis.com/other_{n}"),
            None,
            1,
        );
    }
    standin.set_value(SERVICE, T4S, T4S_METRIC, Some("europe-west1"), 4);

    let findings = check(&standin, &[gpus("europe-west1", "nvidia-tesla-t4", 4)]).await;

    assert_eq!(findings[0].outcome, QuotaOutcome::Enough { limit: 4 });
    assert_eq!(standin.list_calls(), 3, "six quota infos, two a page");
}

#[tokio::test]
async fn a_quota_the_project_does_not_list_is_unknown() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, CPUS, CPUS_METRIC, None, 64);
    // The same quota id under another service does not count.
    standin.set_value("compute.googleapis.com", T4S, T4S_METRIC, None, 64);

    let findings = check(&standin, &[gpus("europe-west1", "nvidia-tesla-t4", 1)]).await;

    let why = unknown_why(&findings[0]);
    assert!(why.contains(T4S) && why.contains("lists no quota"), "{why}");
}

#[tokio::test]
async fn an_accelerator_with_no_known_quota_is_unknown_not_unlimited() {
    let standin = QuotasStandIn::start(PROJECT).await;
    standin.set_value(SERVICE, CPUS, CPUS_METRIC, None, 64);

    let findings = check(&standin, &[gpus("europe-west1", "nvidia-tesla-k80", 2)]).await;

    assert_eq!(findings[0].quota, None);
    let why = unknown_why(&findings[0]);
    assert!(why.contains("nvidia-tesla-k80"), "{why}");
    assert_eq!(standin.list_calls(), 0, "nothing to look up");
}
