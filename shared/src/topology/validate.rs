//! The rules a topology must follow beyond its types. Each rule is checked on
//! every element, so one run reports every problem.
//!
//! - Regions: ids are unique; exactly one region is `primary`.
//! - Ids: workload ids are unique; asset ids are unique across the whole file.
//! - Buckets: a bucket name is used once in the file, except that checkpoint
//!   locations may share a bucket when their prefixes do not overlap.
//!   Datasets likewise are used once.
//! - References: every region named in `endpoints` or `replicas` is declared;
//!   a replica is never in the primary's own region; active-active and
//!   active-passive workloads only target `standby` regions (a `pilot-light`
//!   region has nothing deployed).
//! - Targets: an explicit `rpo`/`rto` may only be tighter than the class
//!   default (the floor to beat).
//! - RTO by construction: a pilot-light workload deploys its model at
//!   failover, which takes minutes, so its RTO is at least
//!   [`PILOT_LIGHT_MIN_RTO`]; an active-passive workload must detect the
//!   outage, scale the standby up and move traffic, so its RTO is at least
//!   [`ACTIVE_PASSIVE_MIN_RTO`]; only active-active can promise RTO 0.
//! - RPO 0 asks for synchronous replication, which event-driven replication
//!   cannot give: it is accepted only for an active-active workload whose
//!   every data asset (bucket, dataset, checkpoints) is in every region the
//!   workload serves from, i.e. the application writes each region itself.
//! - Checkpoints: when the step duration is known, checkpoints must come at
//!   least once per RPO (`interval-steps` × `step-duration` ≤ RPO). When the
//!   checkpoint size is known too, a warning says when the period plus the
//!   copy to each region (at [`ASSUMED_FANOUT_BYTES_PER_SECOND`]) passes it.
//! - Serving: `accelerator-count` goes with `accelerator-type`; `mean-rps`
//!   is at most `peak-rps`; `scale-up-time` and `deploy-time` are longer
//!   than zero; a warning when `serving-replicas` × `replica-rps` is below
//!   `peak-rps`.
//! - Models: each has an endpoint in the primary; active-passive keeps at
//!   least one standby replica, pilot-light none, active-active serves every
//!   region at `serving-replicas` and needs two regions or more.
//! - Data residency: a workload's `allowed-regions` are declared regions
//!   and include the primary; every replica, endpoint and image mirror of
//!   the workload is in one of them.
//! - Golden requests: each sends at least one instance, expects one
//!   prediction per instance, and allows a finite tolerance of at least 0.
//!   `machine-type` has the shape of a Compute Engine machine type; a
//!   pilot-light model needs one, since its failover deploys it while the
//!   primary, the only place it was deployed, may be gone.
//! - Every workload protects something and has a region to fail over to;
//!   its hold-down and automatic-failback period are longer than zero.
//! - Drills: ids are unique; each names a declared workload and region. A
//!   `region-outage` fails a region that serves the workload (has an
//!   endpoint) while another still does, so it never fails the only serving
//!   region; `restore` and `replication-isolation` target a region other than
//!   the primary that holds the workload's replicas; `pilot-light-deploy`
//!   targets a pilot-light workload's standby endpoint region.
//!   `isolate-for` is given exactly for `replication-isolation`, and shorter
//!   than `max-duration`. `max-duration` is longer than zero, at most
//!   [`LONGEST_MAX_DURATION`], and fits in the `window`. Guardrail ratios
//!   are between 0 and 1.

use std::collections::{BTreeSet, HashMap};

use super::workload::WorkloadSpec;
use super::{
    ASSUMED_FANOUT_BYTES_PER_SECOND, BucketName, CheckpointLocation, Drill, DrillKind, Duration,
    Failback, GoldenRequest, LONGEST_MAX_DURATION, Model, ObjectPrefix, Pattern, RegionId,
    RegionRole, TopologyFile,
};

/// The shortest RTO a pilot-light workload can meet: a model deployment on
/// Vertex AI alone takes several minutes.
pub const PILOT_LIGHT_MIN_RTO: Duration = Duration::from_mins(15);

/// The shortest RTO an active-passive workload can meet: detection by Cloud
/// Monitoring, scaling the warm standby and moving traffic take a minute.
pub const ACTIVE_PASSIVE_MIN_RTO: Duration = Duration::from_mins(1);

/// A problem at a field path.
type Found = (String, String);

/// Where a bucket is used: a whole bucket (bucket asset) or a prefix in it.
struct BucketUse<'f> {
    name: &'f BucketName,
    prefix: Option<&'f ObjectPrefix>,
    path: String,
}

struct Checker<'f> {
    found: Vec<Found>,
    /// What is allowed but likely wrong (`lifeboat validate` prints it).
    warned: Vec<Found>,
    roles: HashMap<&'f RegionId, RegionRole>,
    /// Whether every region parsed: otherwise reference checks would only
    /// repeat the region's own problem.
    regions_complete: bool,
    primary: Option<&'f RegionId>,
    asset_ids: HashMap<&'f str, String>,
    /// The allowed regions of the workload being checked, if it has some.
    allowed: Option<BTreeSet<&'f RegionId>>,
    datasets: HashMap<&'f str, String>,
    buckets: Vec<BucketUse<'f>>,
}

/// What the rules found in a file: problems, which make it invalid, and
/// warnings, which do not; each a (field path, message) pair.
pub(super) struct Checked {
    pub problems: Vec<Found>,
    pub warnings: Vec<Found>,
}

/// Runs every rule on a parsed file.
pub(super) fn check(file: &TopologyFile) -> Checked {
    let mut checker = Checker {
        found: Vec::new(),
        warned: Vec::new(),
        roles: HashMap::new(),
        regions_complete: file.regions.iter().all(|r| r.get().is_some()),
        primary: None,
        asset_ids: HashMap::new(),
        allowed: None,
        datasets: HashMap::new(),
        buckets: Vec::new(),
    };
    checker.regions(file);
    let mut workload_ids: HashMap<&str, usize> = HashMap::new();
    for (i, workload) in file.workloads.iter().enumerate() {
        let Some(workload) = workload.get() else {
            continue;
        };
        let base = format!("workloads[{i}]");
        if let Some(first) = workload_ids.insert(workload.id.as_str(), i) {
            checker.report(
                format!("{base}.id"),
                format!(
                    "duplicate workload id `{}` (first used by workloads[{first}])",
                    workload.id
                ),
            );
            workload_ids.insert(workload.id.as_str(), first);
        }
        checker.workload(&base, workload);
    }
    checker.bucket_uses();
    let mut drill_ids: HashMap<&str, usize> = HashMap::new();
    for (i, drill) in file.drills.iter().enumerate() {
        let Some(drill) = drill.get() else {
            continue;
        };
        let base = format!("drills[{i}]");
        if let Some(first) = drill_ids.insert(drill.id.as_str(), i) {
            checker.report(
                format!("{base}.id"),
                format!(
                    "duplicate drill id `{}` (first used by drills[{first}])",
                    drill.id
                ),
            );
            drill_ids.insert(drill.id.as_str(), first);
        }
        let workload = file
            .workloads
            .iter()
            .filter_map(|w| w.get())
            .find(|w| w.id == drill.workload);
        checker.drill(&base, drill, workload);
    }
    Checked {
        problems: checker.found,
        warnings: checker.warned,
    }
}

impl<'f> Checker<'f> {
    fn report(&mut self, path: String, message: String) {
        self.found.push((path, message));
    }

    fn warn(&mut self, path: String, message: String) {
        self.warned.push((path, message));
    }

    fn regions(&mut self, file: &'f TopologyFile) {
        let mut first_primary: Option<(usize, &RegionId)> = None;
        let mut seen: HashMap<&RegionId, usize> = HashMap::new();
        for (i, region) in file.regions.iter().enumerate() {
            let Some(region) = region.get() else {
                continue;
            };
            if let Some(first) = seen.get(&region.id) {
                self.report(
                    format!("regions[{i}].id"),
                    format!(
                        "duplicate region `{}` (already regions[{first}])",
                        region.id
                    ),
                );
                continue;
            }
            seen.insert(&region.id, i);
            self.roles.insert(&region.id, region.role);
            if region.role == RegionRole::Primary {
                match first_primary {
                    Some((first, id)) => self.report(
                        format!("regions[{i}].role"),
                        format!(
                            "more than one primary region: `{}` and `{id}` (regions[{first}]); \
                             exactly one region is primary",
                            region.id
                        ),
                    ),
                    None => first_primary = Some((i, &region.id)),
                }
            }
        }
        self.primary = first_primary.map(|(_, id)| id);
        if self.primary.is_none() && self.regions_complete {
            self.report(
                "regions".into(),
                "no primary region: exactly one region needs `role: primary`".into(),
            );
        }
    }

    fn asset_id(&mut self, path: &str, id: &'f str) {
        if let Some(first) = self.asset_ids.get(id) {
            let message = format!("duplicate asset id `{id}` (first used at {first})");
            self.report(format!("{path}.id"), message);
        } else {
            self.asset_ids.insert(id, path.to_owned());
        }
    }

    /// Checks a region that an asset targets outside the primary.
    fn target(&mut self, path: String, region: &RegionId, pattern: Pattern) {
        if !self.regions_complete {
            return;
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(region)
        {
            let allowed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            self.report(
                path.clone(),
                format!(
                    "region {region} is outside the workload's allowed-regions ({})",
                    allowed.join(", ")
                ),
            );
        }
        match self.roles.get(region) {
            None => self.report(
                path,
                format!("unknown region `{region}` (not declared under `regions`)"),
            ),
            Some(RegionRole::Primary) => self.report(
                path,
                format!("replica in the primary's own region {region}"),
            ),
            Some(RegionRole::PilotLight) if pattern != Pattern::PilotLight => self.report(
                path,
                format!(
                    "region {region} is a pilot-light region with nothing deployed; \
                     an {} workload needs a standby region",
                    pattern.name()
                ),
            ),
            Some(_) => {}
        }
    }

    fn workload(&mut self, base: &str, w: &'f WorkloadSpec) {
        self.allowed_regions(base, w);
        self.targets(base, w);
        if w.hold_down.is_zero() {
            self.report(
                format!("{base}.hold-down"),
                "a hold-down of 0 lets traffic flap between regions; use e.g. 10m".into(),
            );
        }
        if let Failback::Automatic { stable_for } = w.failback
            && stable_for.is_zero()
        {
            self.report(
                format!("{base}.failback.automatic.stable-for"),
                "automatic failback needs the primary stable for longer than 0".into(),
            );
        }

        // Regions the workload is present in, beyond the primary.
        let mut elsewhere: BTreeSet<&RegionId> = BTreeSet::new();
        let assets = &w.assets;
        for (j, model) in assets.models.iter().enumerate() {
            let Some(model) = model.get() else { continue };
            let path = format!("{base}.assets.models[{j}]");
            self.asset_id(&path, model.id.as_str());
            if !crate::models::is_model_id(&model.model_id) {
                self.report(
                    format!("{path}.model-id"),
                    format!(
                        "{:?} is not a Vertex AI model id: either the digits Vertex AI \
                         generated at upload, or up to 63 of a-z, 0-9, _ and - starting \
                         with a letter",
                        model.model_id
                    ),
                );
            }
            if let Some(primary) = self.primary
                && self.regions_complete
                && !model.endpoints.contains_key(primary)
            {
                self.report(
                    format!("{path}.endpoints"),
                    format!("no endpoint in the primary region {primary}"),
                );
            }
            for region in model.endpoints.keys() {
                if Some(region) == self.primary {
                    continue;
                }
                elsewhere.insert(region);
                self.target(format!("{path}.endpoints.{region}"), region, w.pattern);
            }
            for (region, repository) in &model.image_mirrors {
                let at = format!("{path}.image-mirrors.{region}");
                self.target(at.clone(), region, w.pattern);
                if !is_repository(repository) {
                    self.report(
                        at,
                        format!(
                            "{repository:?} is not a registry repository: host/path in lowercase, \
                             without a tag or digest (us-east1-docker.pkg.dev/acme/serving)"
                        ),
                    );
                }
            }
            self.machine_type(&path, model, w.pattern);
            self.serving_usage(&path, model);
            let standby = (format!("{path}.standby-replicas"), model.standby_replicas);
            match w.pattern {
                Pattern::ActivePassive if standby.1 == 0 => self.report(
                    standby.0,
                    "a warm standby (active-passive) keeps the model deployed: \
                     standby-replicas must be at least 1"
                        .into(),
                ),
                Pattern::PilotLight if standby.1 > 0 => self.report(
                    standby.0,
                    "a pilot-light standby has nothing deployed: remove standby-replicas \
                     or use active-passive"
                        .into(),
                ),
                Pattern::ActiveActive if standby.1 > 0 => self.report(
                    standby.0,
                    "active-active regions all serve at serving-replicas: remove standby-replicas"
                        .into(),
                ),
                _ => {}
            }
            self.golden_requests(&path, &model.golden_requests);
            if w.pattern == Pattern::ActiveActive && model.endpoints.len() < 2 {
                self.report(
                    format!("{path}.endpoints"),
                    "active-active serves from every region: give endpoints in two regions or more"
                        .into(),
                );
            }
        }

        let rpo_zero = w.target_rpo().is_zero() && w.pattern == Pattern::ActiveActive;
        // (path of the replicas map, regions it covers) per data asset.
        let mut data_assets: Vec<(String, BTreeSet<&RegionId>)> = Vec::new();
        for (j, bucket) in assets.buckets.iter().enumerate() {
            let Some(bucket) = bucket.get() else { continue };
            let path = format!("{base}.assets.buckets[{j}]");
            self.asset_id(&path, bucket.id.as_str());
            self.buckets.push(BucketUse {
                name: &bucket.source,
                prefix: None,
                path: format!("{path}.source"),
            });
            for (region, name) in &bucket.replicas {
                let at = format!("{path}.replicas.{region}");
                self.target(at.clone(), region, w.pattern);
                self.buckets.push(BucketUse {
                    name,
                    prefix: None,
                    path: at,
                });
            }
            self.replicated(&path, bucket.replicas.is_empty());
            elsewhere.extend(bucket.replicas.keys());
            data_assets.push((format!("{path}.replicas"), bucket.replicas.keys().collect()));
        }
        for (j, dataset) in assets.datasets.iter().enumerate() {
            let Some(dataset) = dataset.get() else {
                continue;
            };
            let path = format!("{base}.assets.datasets[{j}]");
            self.asset_id(&path, dataset.id.as_str());
            self.dataset(format!("{path}.source"), dataset.source.as_str());
            for (region, name) in &dataset.replicas {
                let at = format!("{path}.replicas.{region}");
                self.target(at.clone(), region, w.pattern);
                self.dataset(at, name.as_str());
            }
            self.replicated(&path, dataset.replicas.is_empty());
            elsewhere.extend(dataset.replicas.keys());
            data_assets.push((
                format!("{path}.replicas"),
                dataset.replicas.keys().collect(),
            ));
        }
        for (j, location) in assets.checkpoints.iter().enumerate() {
            let Some(location) = location.get() else {
                continue;
            };
            let path = format!("{base}.assets.checkpoints[{j}]");
            self.asset_id(&path, location.id.as_str());
            self.buckets.push(BucketUse {
                name: &location.bucket,
                prefix: Some(&location.prefix),
                path: format!("{path}.bucket"),
            });
            for (region, name) in &location.replicas {
                let at = format!("{path}.replicas.{region}");
                self.target(at.clone(), region, w.pattern);
                self.buckets.push(BucketUse {
                    name,
                    prefix: Some(&location.prefix),
                    path: at,
                });
            }
            self.replicated(&path, location.replicas.is_empty());
            elsewhere.extend(location.replicas.keys());
            data_assets.push((
                format!("{path}.replicas"),
                location.replicas.keys().collect(),
            ));
            if let Some(period) = location.checkpoint_period()
                && period > w.target_rpo()
            {
                self.report(
                    format!("{path}.interval-steps"),
                    format!(
                        "a checkpoint every {} steps of {} is one every {period}, \
                         longer than the workload's RPO {}",
                        location.interval_steps,
                        location.step_duration.unwrap_or_default(),
                        w.target_rpo()
                    ),
                );
            } else {
                self.checkpoint_copy(&path, location, w.target_rpo());
            }
        }

        let asset_count = assets.models.len()
            + assets.buckets.len()
            + assets.datasets.len()
            + assets.checkpoints.len();
        if asset_count == 0 {
            self.report(
                format!("{base}.assets"),
                format!("workload `{}` protects no assets", w.id),
            );
        } else if elsewhere.is_empty() && self.regions_complete {
            self.report(
                format!("{base}.assets"),
                format!(
                    "workload `{}` has nothing outside the primary region: it cannot fail over",
                    w.id
                ),
            );
        }
        if rpo_zero {
            for (path, covered) in data_assets {
                let missing: Vec<String> = elsewhere
                    .iter()
                    .filter(|r| !covered.contains(*r))
                    .map(|r| r.to_string())
                    .collect();
                if !missing.is_empty() {
                    self.report(
                        path,
                        format!(
                            "rpo 0 needs this data in every region of the workload; missing {}",
                            missing.join(", ")
                        ),
                    );
                }
            }
        }
    }

    /// Checks `allowed-regions` and keeps it for the workload's other checks.
    fn drill(&mut self, base: &str, drill: &Drill, workload: Option<&WorkloadSpec>) {
        let kind = drill.kind.name();
        let target = &drill.target_region;
        if drill.max_duration.is_zero() || drill.max_duration > LONGEST_MAX_DURATION {
            self.report(
                format!("{base}.max-duration"),
                format!(
                    "a drill runs for longer than 0 and at most {LONGEST_MAX_DURATION}, so that \
                     no fault outlives it by long; got {}",
                    drill.max_duration
                ),
            );
        }
        if let Some(window) = drill.window {
            let open = window.length().num_seconds();
            if i64::try_from(drill.max_duration.as_secs()).is_ok_and(|secs| secs > open) {
                self.report(
                    format!("{base}.window"),
                    format!(
                        "open {} min a day, shorter than the drill's max-duration ({}): a run \
                         must fit in it",
                        open / 60,
                        drill.max_duration
                    ),
                );
            }
        }
        match (drill.kind, drill.isolate_for) {
            (DrillKind::ReplicationIsolation, None) => self.report(
                base.to_string(),
                "a replication-isolation drill needs `isolate-for`: how long replication is paused"
                    .into(),
            ),
            (DrillKind::ReplicationIsolation, Some(pause))
                if pause.is_zero() || pause >= drill.max_duration =>
            {
                self.report(
                    format!("{base}.isolate-for"),
                    format!(
                        "replication is paused for longer than 0 and less than the \
                         drill's max-duration ({}), to leave time to check it resumes",
                        drill.max_duration
                    ),
                );
            }
            (DrillKind::ReplicationIsolation, Some(_)) | (_, None) => {}
            (_, Some(_)) => self.report(
                format!("{base}.isolate-for"),
                format!("only a replication-isolation drill pauses replication, not {kind}"),
            ),
        }
        let ratios = [
            ("max-error-ratio", drill.guardrails.max_error_ratio),
            (
                "failed-prediction-budget",
                drill.guardrails.failed_prediction_budget,
            ),
        ];
        for (field, ratio) in ratios {
            if !(0.0..=1.0).contains(&ratio) {
                self.report(
                    format!("{base}.guardrails.{field}"),
                    format!("a ratio between 0 and 1, got {ratio}"),
                );
            }
        }
        if self.regions_complete && !self.roles.contains_key(target) {
            self.report(
                format!("{base}.target-region"),
                format!("unknown region `{target}` (not declared under `regions`)"),
            );
            return;
        }
        let Some(workload) = workload else {
            self.report(
                format!("{base}.workload"),
                format!("unknown workload `{}`", drill.workload),
            );
            return;
        };
        let serving: BTreeSet<&RegionId> = workload
            .assets
            .models
            .iter()
            .filter_map(|m| m.get())
            .flat_map(|m| m.endpoints.keys())
            .collect();
        let holds_replicas = workload_replica_regions(workload).contains(target);
        let primary = self.primary == Some(target);
        let problem = match drill.kind {
            DrillKind::RegionOutage if !serving.contains(target) => Some(format!(
                "{target} serves no model of workload {}: a region-outage drill fails a \
                 serving region",
                workload.id
            )),
            DrillKind::RegionOutage if serving.len() < 2 => Some(format!(
                "{target} is the only region serving workload {}: failing it would \
                 leave nothing to fail over to",
                workload.id
            )),
            DrillKind::Restore | DrillKind::ReplicationIsolation if primary || !holds_replicas => {
                Some(format!(
                    "a {kind} drill targets a region holding replicas of workload {}; \
                     {target} holds none",
                    workload.id
                ))
            }
            DrillKind::PilotLightDeploy if workload.pattern != Pattern::PilotLight => {
                Some(format!(
                    "workload {} is {}, not pilot-light: it keeps nothing to deploy at failover",
                    workload.id,
                    workload.pattern.name()
                ))
            }
            DrillKind::PilotLightDeploy if primary || !serving.contains(target) => Some(format!(
                "a pilot-light-deploy drill targets a standby endpoint region of workload {}; \
                 {target} is not one",
                workload.id
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            self.report(format!("{base}.target-region"), problem);
        }
    }

    fn allowed_regions(&mut self, base: &str, w: &'f WorkloadSpec) {
        self.allowed = None;
        let Some(listed) = &w.allowed_regions else {
            return;
        };
        let mut allowed = BTreeSet::new();
        for (k, region) in listed.iter().enumerate() {
            let path = format!("{base}.allowed-regions[{k}]");
            if !allowed.insert(region) {
                self.report(path, format!("region {region} is listed twice"));
            } else if self.regions_complete && !self.roles.contains_key(region) {
                self.report(
                    path,
                    format!("unknown region `{region}` (not declared under `regions`)"),
                );
            }
        }
        if let Some(primary) = self.primary
            && !allowed.contains(primary)
        {
            self.report(
                format!("{base}.allowed-regions"),
                format!(
                    "the primary region {primary} must be among the allowed regions: \
                     it serves the workload and holds its sources"
                ),
            );
        }
        self.allowed = Some(allowed);
    }

    /// Checks the explicit targets against the class floor and the pattern.
    fn targets(&mut self, base: &str, w: &WorkloadSpec) {
        let class = w.class;
        if let Some(rpo) = w.rpo
            && rpo > class.default_rpo()
        {
            self.report(
                format!("{base}.rpo"),
                format!(
                    "rpo {rpo} is looser than the {} floor of {}",
                    class.name(),
                    class.default_rpo()
                ),
            );
        }
        if let Some(rto) = w.rto
            && rto > class.default_rto()
        {
            self.report(
                format!("{base}.rto"),
                format!(
                    "rto {rto} is looser than the {} floor of {}",
                    class.name(),
                    class.default_rto()
                ),
            );
        }
        let rto = w.target_rto();
        let rto_path = format!("{base}.{}", if w.rto.is_some() { "rto" } else { "class" });
        match w.pattern {
            Pattern::PilotLight if rto < PILOT_LIGHT_MIN_RTO => self.report(
                rto_path,
                format!(
                    "rto {rto} is impossible for pilot-light, which deploys the model at failover \
                     (at least {PILOT_LIGHT_MIN_RTO}); use active-passive or active-active"
                ),
            ),
            Pattern::ActivePassive if rto < ACTIVE_PASSIVE_MIN_RTO => self.report(
                rto_path,
                format!(
                    "rto {rto} is impossible for active-passive, which must detect, scale up \
                     and move traffic (at least {ACTIVE_PASSIVE_MIN_RTO}); rto 0 needs active-active"
                ),
            ),
            _ => {}
        }
        if w.target_rpo().is_zero() && w.pattern != Pattern::ActiveActive {
            let path = format!("{base}.{}", if w.rpo.is_some() { "rpo" } else { "class" });
            self.report(
                path,
                format!(
                    "rpo 0 needs synchronous replication, which event-driven replication cannot \
                     give: use active-active with the data in every region (this is {})",
                    w.pattern.name()
                ),
            );
        }
    }

    /// Each golden request of the model at `path` sends instances and
    /// expects one prediction for each.
    fn golden_requests(&mut self, path: &str, requests: &[GoldenRequest]) {
        for (k, request) in requests.iter().enumerate() {
            let at = format!("{path}.golden-requests[{k}]");
            let (instances, predictions) = (request.instances.len(), request.predictions.len());
            if instances == 0 {
                self.report(
                    format!("{at}.instances"),
                    "no instances: a golden request sends at least one".into(),
                );
            } else if predictions != instances {
                self.report(
                    format!("{at}.predictions"),
                    format!(
                        "{predictions} predictions for {instances} instances: \
                         give the expected prediction of each instance, in order"
                    ),
                );
            }
            if !request.tolerance.is_usable() {
                self.report(
                    format!("{at}.tolerance"),
                    format!(
                        "tolerance {} is not a finite number of at least 0 \
                         (the absolute difference allowed, e.g. 0.001)",
                        request.tolerance
                    ),
                );
            }
        }
    }

    /// Checks a model's machine type: its shape, and its presence where
    /// failover has to deploy the model.
    fn machine_type(&mut self, path: &str, model: &Model, pattern: Pattern) {
        let at = format!("{path}.machine-type");
        match &model.machine_type {
            Some(machine_type) if !is_machine_type(machine_type) => self.report(
                at,
                format!(
                    "{machine_type:?} is not a machine type: series-kind-size in lowercase, \
                     as Vertex AI names them (n1-standard-4, g2-standard-8, a2-highgpu-1g)"
                ),
            ),
            None if pattern == Pattern::PilotLight => self.report(
                at,
                "a pilot-light model needs `machine-type`: failover deploys it in the standby \
                 while the primary, the only region it is deployed in, may be gone, so the \
                 machine type cannot be read from there (e.g. machine-type: n1-standard-4)"
                    .into(),
            ),
            _ => {}
        }
    }

    /// Checks what a model says of its accelerators, traffic and timings.
    fn serving_usage(&mut self, path: &str, model: &Model) {
        match (&model.accelerator_type, model.accelerator_count) {
            (Some(accelerator), _) if !is_accelerator(accelerator) => self.report(
                format!("{path}.accelerator-type"),
                format!(
                    "{accelerator:?} is not an accelerator type: lowercase words joined by \
                     `-`, as Vertex AI names them (nvidia-tesla-t4, nvidia-l4)"
                ),
            ),
            (None, Some(_)) => self.report(
                format!("{path}.accelerator-count"),
                "accelerator-count without accelerator-type: say which accelerator".into(),
            ),
            _ => {}
        }
        if let (Some(mean), Some(peak)) = (model.mean_rps, model.peak_rps)
            && mean > peak.get()
        {
            self.report(
                format!("{path}.mean-rps"),
                format!("mean-rps {mean} is above peak-rps {peak}: the mean cannot pass the peak"),
            );
        }
        for (field, time) in [
            ("scale-up-time", model.scale_up_time),
            ("deploy-time", model.deploy_time),
        ] {
            if time.is_some_and(Duration::is_zero) {
                self.report(
                    format!("{path}.{field}"),
                    format!("{field} is zero: no deployment on Vertex AI is instant"),
                );
            }
        }
        if let (Some(peak), Some(per_replica)) = (model.peak_rps, model.replica_rps) {
            let carried = u64::from(model.serving_replicas.get()) * u64::from(per_replica.get());
            if carried < u64::from(peak.get()) {
                self.warn(
                    format!("{path}.serving-replicas"),
                    format!(
                        "{} replicas of {per_replica} predictions per second carry {carried}, \
                         less than peak-rps {peak}",
                        model.serving_replicas
                    ),
                );
            }
        }
    }

    /// Warns when the copy of a checkpoint to its regions, added to the
    /// checkpoint period, would pass the RPO (judged at the assumed fan-out
    /// throughput: `lifeboat plan` uses the measured one).
    fn checkpoint_copy(&mut self, path: &str, location: &CheckpointLocation, rpo: Duration) {
        let throughput = ASSUMED_FANOUT_BYTES_PER_SECOND;
        let (Some(copy), Some(loss)) = (
            location.copy_time(throughput),
            location.worst_loss(throughput),
        ) else {
            return;
        };
        if loss <= rpo.get() {
            return;
        }
        let largest = location.largest_interval_steps(rpo, copy);
        let gpu_hours = location
            .gpu_hours_in(Duration::from_secs(loss.as_secs()))
            .map(|hours| format!(" ({hours:.1} GPU-hours)"))
            .unwrap_or_default();
        let advice = match largest {
            Some(0) | None => "no interval keeps it: the copy alone takes longer".to_string(),
            Some(steps) => format!("interval-steps {steps} or fewer keeps it"),
        };
        self.warn(
            format!("{path}.interval-steps"),
            format!(
                "a {} checkpoint takes about {} to reach each region at the assumed {} MiB/s, \
                 so an outage can lose {} of training{gpu_hours}, beyond the RPO {rpo}: \
                 {advice} (`lifeboat plan` uses the measured fan-out)",
                location.checkpoint_size.unwrap_or_default(),
                Duration::from_secs(copy.as_secs()),
                throughput >> 20,
                Duration::from_secs(loss.as_secs()),
            ),
        );
    }

    fn replicated(&mut self, path: &str, no_replicas: bool) {
        if no_replicas {
            self.report(
                format!("{path}.replicas"),
                "no replica region: this asset is not protected".into(),
            );
        }
    }

    fn dataset(&mut self, path: String, name: &'f str) {
        if let Some(first) = self.datasets.get(name) {
            let message = format!("dataset `{name}` is already used at {first}");
            self.report(path, message);
        } else {
            self.datasets.insert(name, path);
        }
    }

    /// A bucket belongs to one asset, except checkpoint locations with
    /// prefixes that do not overlap.
    fn bucket_uses(&mut self) {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut found = Vec::new();
        for (i, usage) in self.buckets.iter().enumerate() {
            let earlier = by_name.entry(usage.name.as_str()).or_default();
            let clash = earlier.iter().map(|&e| &self.buckets[e]).find(|e| {
                match (e.prefix, usage.prefix) {
                    (Some(a), Some(b)) => a.overlaps(b),
                    _ => true,
                }
            });
            if let Some(clash) = clash {
                let message = if clash.prefix.is_some() && usage.prefix.is_some() {
                    format!(
                        "checkpoint prefix in bucket `{}` overlaps the one at {}",
                        usage.name, clash.path
                    )
                } else {
                    format!(
                        "duplicate bucket `{}` (already used at {})",
                        usage.name, clash.path
                    )
                };
                found.push((usage.path.clone(), message));
            }
            earlier.push(i);
        }
        self.found.extend(found);
    }
}

/// Whether `accelerator` has the shape of a Vertex AI accelerator type in
/// lower case: words of lowercase letters and digits joined by `-`.
fn is_accelerator(accelerator: &str) -> bool {
    !accelerator.is_empty()
        && accelerator.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Whether `machine_type` has the shape of a Compute Engine machine type as
/// Vertex AI takes them: a series (a letter, then letters and digits with
/// at least one digit: `n1`, `a2`, `ct5lp`), a kind (letters: `standard`,
/// `highmem`, `highgpu`) and a size (digits, then optionally letters: `4`,
/// `1g`, `8t`), joined by hyphens.
fn is_machine_type(machine_type: &str) -> bool {
    let [series, kind, size] = machine_type.split('-').collect::<Vec<_>>()[..] else {
        return false;
    };
    let lower = |c: char| c.is_ascii_lowercase();
    let series_ok = series.starts_with(lower)
        && series.chars().all(|c| lower(c) || c.is_ascii_digit())
        && series.contains(|c: char| c.is_ascii_digit());
    let kind_ok = !kind.is_empty() && kind.chars().all(lower);
    let digits = size.trim_end_matches(lower);
    let size_ok = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    series_ok && kind_ok && size_ok
}

/// Whether `repository` names a registry repository: a host, then one or
/// more path components, lowercase, with no tag or digest.
fn is_repository(repository: &str) -> bool {
    let Some((host, path)) = repository.split_once('/') else {
        return false;
    };
    let component = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    };
    !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ".-:".contains(ch))
        && path.split('/').all(component)
}

/// Every region holding a replica of one of `workload`'s data assets
/// (buckets, datasets, checkpoints).
fn workload_replica_regions(workload: &WorkloadSpec) -> BTreeSet<&RegionId> {
    let assets = &workload.assets;
    let buckets = assets
        .buckets
        .iter()
        .filter_map(|b| b.get())
        .flat_map(|b| b.replicas.keys());
    let datasets = assets
        .datasets
        .iter()
        .filter_map(|d| d.get())
        .flat_map(|d| d.replicas.keys());
    let checkpoints = assets
        .checkpoints
        .iter()
        .filter_map(|c| c.get())
        .flat_map(|c| c.replicas.keys());
    buckets.chain(datasets).chain(checkpoints).collect()
}
