//! Which workload and region a Cloud Monitoring incident is about: the
//! policy's user labels when Lifeboat's Terraform wrote them
//! (`lifeboat-workload`, `lifeboat-region`), else the monitored resource (a
//! Vertex AI endpoint's `location` and `endpoint_id`, matched against the
//! topology's endpoints).

use lifeboat_shared::events::Incident;
use lifeboat_shared::topology::Topology;

/// The policy user label naming the workload.
pub const WORKLOAD_LABEL: &str = "lifeboat-workload";

/// The policy user label naming the region.
pub const REGION_LABEL: &str = "lifeboat-region";

/// The workload and region an incident is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The workload's id.
    pub workload: String,
    /// The region.
    pub region: String,
}

/// Why an incident maps to no workload of the topology.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unmapped {
    /// The labels name a workload or region the topology does not have.
    #[error("incident {incident}: {what} is not in the topology")]
    Unknown {
        /// The incident id.
        incident: String,
        /// What was named.
        what: String,
    },
    /// Neither labels nor resource say which workload it is about.
    #[error(
        "incident {incident}: no {WORKLOAD_LABEL}/{REGION_LABEL} policy labels and no Vertex AI endpoint of the topology among its resource labels"
    )]
    Unattributed {
        /// The incident id.
        incident: String,
    },
}

/// Maps `incident` to the workload and region it is about.
pub fn target(topology: &Topology, incident: &Incident) -> Result<Target, Unmapped> {
    let labels = &incident.policy_user_labels;
    if let (Some(workload), Some(region)) = (labels.get(WORKLOAD_LABEL), labels.get(REGION_LABEL)) {
        let unknown = |what: String| Unmapped::Unknown {
            incident: incident.incident_id.clone(),
            what,
        };
        let found = topology
            .workload(workload)
            .ok_or_else(|| unknown(format!("workload {workload}")))?;
        if topology.region(region).is_none() {
            return Err(unknown(format!("region {region}")));
        }
        return Ok(Target {
            workload: found.id.to_string(),
            region: region.clone(),
        });
    }
    let resource = &incident.resource_labels;
    if let (Some(location), Some(endpoint)) =
        (resource.get("location"), resource.get("endpoint_id"))
    {
        for workload in topology.workloads() {
            for model in &workload.assets.models {
                let serves = model
                    .endpoints
                    .iter()
                    .any(|(region, id)| region.as_str() == location && id == endpoint);
                if serves {
                    return Ok(Target {
                        workload: workload.id.to_string(),
                        region: location.clone(),
                    });
                }
            }
        }
    }
    Err(Unmapped::Unattributed {
        incident: incident.incident_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::events::{InboundEvent, parse};

    fn topology() -> Topology {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/production-three-region.yaml");
        Topology::load(&file).expect("example")
    }

    /// The webhook fixture's incident.
    fn incident() -> Incident {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/events/monitoring_incident_webhook.json");
        let body = std::fs::read(file).expect("fixture");
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("header"));
        match parse(&headers, &body).expect("the fixture parses") {
            InboundEvent::Incident { incident, .. } => *incident,
            other => panic!("not an incident: {other:?}"),
        }
    }

    #[test]
    fn policy_labels_name_the_workload_and_region() {
        let mut incident = incident();
        incident
            .policy_user_labels
            .insert(WORKLOAD_LABEL.into(), "recommendations".into());
        incident
            .policy_user_labels
            .insert(REGION_LABEL.into(), "us-east1".into());
        assert_eq!(
            target(&topology(), &incident),
            Ok(Target {
                workload: "recommendations".into(),
                region: "us-east1".into()
            })
        );
    }

    #[test]
    fn labels_naming_what_the_topology_lacks_are_refused_by_name() {
        // The fixture's labels name workload fraud-scorer.
        let refused = target(&topology(), &incident());
        assert!(
            matches!(&refused, Err(Unmapped::Unknown { what, .. }) if what == "workload fraud-scorer"),
            "{refused:?}"
        );
    }

    #[test]
    fn without_labels_the_vertex_endpoint_is_matched() {
        let mut incident = incident();
        incident.policy_user_labels.clear();
        incident
            .resource_labels
            .insert("endpoint_id".into(), "8812345003".into());
        incident
            .resource_labels
            .insert("location".into(), "europe-west1".into());
        assert_eq!(
            target(&topology(), &incident),
            Ok(Target {
                workload: "recommendations".into(),
                region: "europe-west1".into()
            })
        );
        incident
            .resource_labels
            .insert("endpoint_id".into(), "999".into());
        assert!(matches!(
            target(&topology(), &incident),
            Err(Unmapped::Unattributed { .. })
        ));
    }
}
