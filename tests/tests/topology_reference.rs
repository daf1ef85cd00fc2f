//! `docs/topology.md` against the parser: for every kind of object in a
//! topology file, the fields its table lists are exactly the fields the
//! parser accepts there. The parser says which those are when it meets an
//! unknown one ("unknown field `zz-unknown`, expected one of …"), so each
//! object gets one unknown field in turn.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lifeboat_shared::topology::Topology;

/// A topology holding every kind of object once. `#X:NAME` marks where an
/// unknown field goes to ask the parser about the object `NAME`.
const TEMPLATE: &str = r#"
project: acme-ml-prod
#X:topology
regions:
  - id: us-central1
    role: primary
    #X:region
  - id: us-east1
    role: standby
workloads:
  - id: recommendations
    class: online-inference
    pattern: active-passive
    #X:workload
    failback:
      automatic:
        stable-for: 30m
        #X:failback-automatic
    assets:
      #X:assets
      models:
        - id: ranker
          model-id: "4512398712"
          serving-replicas: 1
          standby-replicas: 1
          machine-type: n1-standard-4
          endpoints:
            us-central1: "11"
            us-east1: "12"
          #X:model
          golden-requests:
            - instances: [[1.0]]
              predictions: [1.0]
              #X:golden-request
      buckets:
        - id: features
          source: acme-features-usc1
          replicas:
            us-east1: acme-features-use1
          #X:bucket
      datasets:
        - id: events
          source: events
          replicas:
            us-east1: events_use1
          #X:dataset
      checkpoints:
        - id: ranker-ckpt
          bucket: acme-ckpt-usc1
          marker: orbax
          replicas:
            us-east1: acme-ckpt-use1
          interval-steps: 100
          keep-newest: 2
          #X:checkpoint
drills:
  - id: weekly-outage
    kind: region-outage
    workload: recommendations
    target-region: us-central1
    schedule: "0 10 * * 1"
    #X:drill
    guardrails:
      max-error-ratio: 0.05
      #X:guardrails
"#;

/// The fields the parser accepts in the object marked `name`.
fn accepted(name: &str) -> BTreeSet<String> {
    let marker = format!("#X:{name}");
    assert!(TEMPLATE.contains(&marker), "no {marker} in the template");
    let text = TEMPLATE.replace(&marker, "zz-unknown: 1");
    let problems = match Topology::parse(&text, "reference.yaml") {
        Ok(_) => panic!("{name}: an unknown field was accepted"),
        Err(problems) => problems.to_string(),
    };
    let line = problems
        .lines()
        .find(|line| line.contains("unknown field `zz-unknown`"))
        .unwrap_or_else(|| panic!("{name}: no unknown-field problem in:\n{problems}"));
    let expected = line
        .split_once("expected")
        .unwrap_or_else(|| panic!("{name}: {line}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The fields each `<!-- fields: NAME -->` table of the reference lists.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/topology.md");
    let page = std::fs::read_to_string(&path).expect("docs/topology.md");
    page.split("<!-- fields: ")
        .skip(1)
        .map(|section| {
            let (name, rest) = section.split_once(" -->").expect("a closed marker");
            let fields = rest
                .lines()
                .skip_while(|line| !line.starts_with('|'))
                .take_while(|line| line.starts_with('|'))
                .filter_map(|row| row.strip_prefix("| `"))
                .filter_map(|row| row.split_once('`').map(|(field, _)| field.to_string()))
                .collect();
            (name.to_string(), fields)
        })
        .collect()
}

#[test]
fn the_reference_lists_exactly_the_fields_the_parser_accepts() {
    let documented = documented();
    let objects: BTreeSet<&str> = TEMPLATE
        .lines()
        .filter_map(|line| line.trim().strip_prefix("#X:"))
        .collect();
    assert_eq!(
        documented
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        objects,
        "every kind of object has a table, and no table is about something else"
    );
    for name in objects {
        assert_eq!(
            documented[name],
            accepted(name),
            "docs/topology.md, the table of {name} (left) against the parser (right)"
        );
    }
}

#[test]
fn the_template_without_unknown_fields_is_a_valid_topology() {
    Topology::parse(TEMPLATE, "reference.yaml").unwrap_or_else(|problems| panic!("{problems}"));
}
