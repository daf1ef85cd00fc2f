//! The Monitoring dashboard (`infra/dashboard.json`, deployed by
//! `infra/dashboard.tf`): it is the JSON Cloud Monitoring takes once
//! Terraform's `templatefile` has filled it, the template's variables are
//! exactly those the Terraform passes, and every metric it charts is one a
//! Lifeboat service writes or one Google Cloud writes for the resources
//! Lifeboat runs on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hcl::{Body, Expression};
use lifeboat_shared::metrics::{
    CHECKPOINT_REPLICATION_LAG, DATA_RPO_EXPOSURE, DRILL_RTO, FAILOVER_RECOVERY_TIME,
    METRIC_PREFIX, MODEL_PARITY, ROUTING_WEIGHT,
};

fn infra(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra")
        .join(file)
}

/// The `${name}` placeholders of a template.
fn placeholders(template: &str) -> BTreeSet<String> {
    template
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

/// The variables `infra/dashboard.tf` passes to `templatefile`.
fn passed_variables() -> BTreeSet<String> {
    let text = std::fs::read_to_string(infra("dashboard.tf")).expect("infra/dashboard.tf");
    let body: Body = hcl::parse(&text).expect("dashboard.tf parses");
    let dashboard = body
        .blocks()
        .find(|b| b.identifier() == "resource" && b.labels().len() == 2)
        .expect("the dashboard resource");
    let json = dashboard
        .body()
        .attributes()
        .find(|a| a.key() == "dashboard_json")
        .expect("dashboard_json");
    let Expression::FuncCall(call) = json.expr() else {
        panic!(
            "dashboard_json is not a templatefile call: {:?}",
            json.expr()
        );
    };
    assert_eq!(call.name.to_string(), "templatefile");
    let Some(Expression::Object(variables)) = call.args.get(1) else {
        panic!("templatefile has no variables object");
    };
    variables.keys().map(|key| key.to_string()).collect()
}

/// Every `metric.type="..."` in `value`'s filters.
fn metric_types(value: &serde_json::Value, found: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if key == "filter"
                    && let Some(filter) = inner.as_str()
                {
                    let start = filter.find("metric.type=\"").expect("a metric type") + 13;
                    let end = filter[start..].find('"').expect("closing quote") + start;
                    found.insert(filter[start..end].to_string());
                }
                metric_types(inner, found);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| metric_types(i, found)),
        _ => {}
    }
}

#[test]
fn the_dashboard_charts_metrics_that_exist_from_the_variables_terraform_passes() {
    let template = std::fs::read_to_string(infra("dashboard.json")).expect("infra/dashboard.json");
    assert_eq!(placeholders(&template), passed_variables());
    let filled = template
        .replace("${checkpoint_rpo_seconds}", "300")
        .replace("${gateway_service}", "gateway")
        .replace(
            "${alert_policies}",
            r#"["projects/p/alertPolicies/1", "projects/p/alertPolicies/2"]"#,
        );
    let dashboard: serde_json::Value =
        serde_json::from_str(&filled).unwrap_or_else(|e| panic!("infra/dashboard.json: {e}"));
    let tiles = dashboard["mosaicLayout"]["tiles"]
        .as_array()
        .expect("tiles");
    for tile in tiles {
        let right = tile["xPos"].as_u64().unwrap_or(0) + tile["width"].as_u64().expect("width");
        assert!(right <= 48, "a tile passes the 48 columns: {tile}");
    }
    let mut found = BTreeSet::new();
    metric_types(&dashboard, &mut found);
    // Every metric a Lifeboat service writes.
    let ours: BTreeSet<String> = [
        CHECKPOINT_REPLICATION_LAG,
        DATA_RPO_EXPOSURE,
        MODEL_PARITY,
        ROUTING_WEIGHT,
        FAILOVER_RECOVERY_TIME,
        DRILL_RTO,
    ]
    .into_iter()
    .map(|metric| format!("{METRIC_PREFIX}{metric}"))
    .collect();
    // Google's own: the uptime checks and alert policies of
    // infra/failover.tf, Cloud Run's for the gateway, Vertex AI's for the
    // endpoints.
    let google: BTreeSet<&str> = [
        "monitoring.googleapis.com/uptime_check/check_passed",
        "run.googleapis.com/request_count",
        "run.googleapis.com/request_latencies",
        "aiplatform.googleapis.com/prediction/online/error_count",
        "aiplatform.googleapis.com/prediction/online/prediction_latencies",
    ]
    .into();
    for metric in &found {
        if metric.starts_with(METRIC_PREFIX) {
            assert!(
                ours.contains(metric),
                "{metric}: a Lifeboat metric no service writes"
            );
        } else {
            assert!(google.contains(metric.as_str()), "unknown metric {metric}");
        }
    }
    for metric in &ours {
        assert!(found.contains(metric), "{metric} is not charted");
    }
    let failover = std::fs::read_to_string(infra("failover.tf")).expect("failover.tf");
    for metric in [
        "monitoring.googleapis.com/uptime_check/check_passed",
        "aiplatform.googleapis.com/prediction/online/error_count",
    ] {
        assert!(
            failover.contains(metric),
            "{metric} is what the alert policies read"
        );
    }
}
