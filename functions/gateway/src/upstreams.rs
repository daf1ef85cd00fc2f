//! Where each region serves each protected model: the URL a prediction is
//! forwarded to. On Google Cloud, a Vertex AI endpoint's `:predict` method in
//! its region ([`Upstreams::vertex`]); in tests and the local cloud, any URL.

use std::collections::BTreeMap;

use lifeboat_shared::topology::Topology;

/// The predict URL of every (workload, model) in every region that serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstreams {
    urls: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl Upstreams {
    /// No upstream yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the predict URL of `model` of `workload` in `region`.
    pub fn insert(&mut self, workload: &str, model: &str, region: &str, url: impl Into<String>) {
        self.urls
            .entry((workload.to_string(), model.to_string()))
            .or_default()
            .insert(region.to_string(), url.into());
    }

    /// The Vertex AI endpoints the topology names, per region:
    /// `https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/endpoints/{id}:predict`.
    pub fn vertex(topology: &Topology) -> Self {
        let project = topology.project().as_str();
        let mut upstreams = Self::new();
        for workload in topology.workloads() {
            for model in &workload.assets.models {
                for (region, endpoint) in &model.endpoints {
                    let url = format!(
                        "https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/endpoints/{endpoint}:predict"
                    );
                    upstreams.insert(
                        workload.id.as_str(),
                        model.id.as_str(),
                        region.as_str(),
                        url,
                    );
                }
            }
        }
        upstreams
    }

    /// The predict URL per region of `model` of `workload`, if the gateway
    /// serves it.
    pub fn regions(&self, workload: &str, model: &str) -> Option<&BTreeMap<String, String>> {
        self.urls.get(&(workload.to_string(), model.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_production_example_names_a_vertex_endpoint_per_region() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/production-three-region.yaml");
        let topology = Topology::load(&file).expect("example");
        let upstreams = Upstreams::vertex(&topology);
        let regions = upstreams
            .regions("recommendations", "recsys-ranker")
            .expect("the ranker is served");
        assert_eq!(
            regions["us-east1"],
            "https://us-east1-aiplatform.googleapis.com/v1/projects/acme-ml-prod/locations/us-east1/endpoints/8812345002:predict"
        );
        assert_eq!(regions.len(), 3);
        assert!(upstreams.regions("recommendations", "nope").is_none());
    }
}
