//! The `pilot-light-deploy` drill: the real pilot-light RTO. For each model
//! of the workload with an endpoint in the target region, the version a
//! failover would deploy there ([`version_to_deploy`], the newest copy or
//! the pinned version) is deployed at serving size on the machine type the
//! topology records, recorded in the run (and saved) before it is waited
//! for, then predictions are sent to that region until one is answered:
//! the model's golden requests through the gateway pinned to the region,
//! answered right, where the topology declares them. The time from the
//! deploy's start to that answer is the time to serve. Then exactly what
//! the run deployed is undeployed ([`undeploy`]), which a restarted service
//! also calls to finish the cleanup of a run it finds unfinished.
//!
//! A model already deployed on the endpoint before the drill (a warm
//! standby, or a deployment left by someone else) is left alone and not
//! measured.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_failover::execute::version_to_deploy;
use lifeboat_shared::golden::GoldenClient;
use lifeboat_shared::models::{
    Backoff, Completed, Deployment, EndpointRef, ModelError, ModelRegistry, OperationState, wait,
};
use lifeboat_shared::records::drill_run::{DrillRun, RunDeployment, TargetCheck, save_cleanup};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::{StateError, StateStore};
use lifeboat_shared::topology::{Drill, Model, Topology, Workload};

/// What a pilot-light deploy uses: the topology, the model registry, the
/// state store the run is saved in, and the gateway golden requests go
/// through.
#[derive(Clone, Debug)]
pub struct DeployContext {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Every region's models and endpoints.
    pub registry: Arc<dyn ModelRegistry>,
    /// Where the run record is saved before a deployment is waited for.
    pub state: Arc<dyn StateStore>,
    /// Sends golden requests through the gateway; without it, serving is
    /// judged by the endpoint alone.
    pub golden: Option<GoldenClient>,
    /// How deploy and undeploy operations are followed; its `initial` wait
    /// is also the pause between two predictions.
    pub backoff: Backoff,
}

/// Why a pilot-light deploy (or its cleanup) stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The abort signal fired; what the run deployed was undeployed.
    #[error("pilot-light drill {drill}: aborted; what it deployed is undeployed")]
    Aborted {
        /// The drill's id.
        drill: String,
    },
    /// The drill names a workload the topology does not have.
    #[error("pilot-light drill {drill}: workload {workload} is not in the topology")]
    UnknownWorkload {
        /// The drill's id.
        drill: String,
        /// The workload named.
        workload: String,
    },
    /// The registry failed while undeploying what the run deployed; the
    /// cleanup must be run again.
    #[error("run {run}: undeploying {deployment}: {source}")]
    Undeploy {
        /// The run's id.
        run: String,
        /// The deployment (model and endpoint).
        deployment: String,
        /// The registry's failure.
        #[source]
        source: ModelError,
    },
    /// The run record could not be saved.
    #[error("run {run}: saving what it deployed: {source}")]
    Record {
        /// The run's id.
        run: String,
        /// The state store's failure.
        #[source]
        source: StateError,
    },
}

/// Runs the `pilot-light-deploy` drill `drill`, records what it measured in
/// `run`, and undeploys what it deployed. A model that cannot be deployed
/// or does not serve in time is a finding and a failed check, not an
/// error. On `abort`, stops waiting, undeploys and answers
/// [`DeployError::Aborted`] (or the undeploy's failure).
pub async fn deploy(
    context: &DeployContext,
    drill: &Drill,
    run: &mut DrillRun,
    abort: &Shutdown,
) -> Result<(), DeployError> {
    let workload = context
        .topology
        .workload(drill.workload.as_str())
        .ok_or_else(|| DeployError::UnknownWorkload {
            drill: drill.id.to_string(),
            workload: drill.workload.to_string(),
        })?;
    let mut slowest: Option<f64> = None;
    let mut all_served = true;
    let mut measured_any = false;
    for model in &workload.assets.models {
        let Some(endpoint_id) = model.endpoints.get(&drill.target_region) else {
            continue;
        };
        let endpoint = EndpointRef::new(
            context.topology.project().as_str(),
            drill.target_region.clone(),
            endpoint_id.clone(),
        );
        let outcome = deploy_model(context, workload, model, &endpoint, run, abort).await;
        match outcome {
            Ok(Served::Measured(seconds)) => {
                measured_any = true;
                slowest = Some(slowest.map_or(seconds, |s: f64| s.max(seconds)));
            }
            Ok(Served::Skipped) => {}
            Ok(Served::Not) => {
                measured_any = true;
                all_served = false;
            }
            Err(Stop::Aborted) => {
                undeploy(context, run).await?;
                return Err(DeployError::Aborted {
                    drill: drill.id.to_string(),
                });
            }
            Err(Stop::Record(source)) => {
                // Nothing is waited for unless recorded: undeploy what is.
                undeploy(context, run).await?;
                return Err(DeployError::Record {
                    run: run.id.clone(),
                    source,
                });
            }
        }
    }
    if measured_any {
        run.measurements.time_to_serve_seconds = slowest.filter(|_| all_served);
        let rto = workload.target_rto();
        run.checks.push(TargetCheck {
            name: "time to serve".to_string(),
            target: format!("≤ {} s (RTO)", rto.as_secs()),
            measured: match run.measurements.time_to_serve_seconds {
                Some(seconds) => format!("{seconds:.1} s"),
                None => "did not serve".to_string(),
            },
            held: run
                .measurements
                .time_to_serve_seconds
                .is_some_and(|s| s <= rto.get().as_secs_f64()),
        });
    }
    undeploy(context, run).await
}

/// What became of one model.
enum Served {
    /// Deployed and answered after this many seconds.
    Measured(f64),
    /// Already deployed before the drill: left alone.
    Skipped,
    /// Could not be deployed or did not answer in time.
    Not,
}

/// Why one model's deployment stopped the drill.
enum Stop {
    Aborted,
    Record(StateError),
}

/// Deploys `model` on `endpoint`, waits until it answers, and records the
/// deploy and serve phases and a finding.
async fn deploy_model(
    context: &DeployContext,
    workload: &Workload,
    model: &Model,
    endpoint: &EndpointRef,
    run: &mut DrillRun,
    abort: &Shutdown,
) -> Result<Served, Stop> {
    let registry = context.registry.as_ref();
    let asset = model.id.as_str();
    let region = &endpoint.region;
    let prepared = async {
        let current = registry.endpoint(endpoint).await?;
        let (registered, wanted) =
            version_to_deploy(registry, &context.topology, model, region).await?;
        let before: Vec<String> = current
            .deployed
            .iter()
            .filter(|d| d.model_id == registered.model.model_id)
            .map(|d| d.id.clone())
            .collect();
        let version_id = registered
            .copy_of(&wanted)
            .or_else(|| registered.version(&wanted))
            .map(|v| v.version_id.clone())
            .ok_or_else(|| ModelError::NotFound {
                what: format!("{} version {wanted}", registered.model),
            })?;
        let machine_type = model.machine_type.clone().unwrap_or_default();
        let deployment = Deployment {
            model: registered.model,
            version_id,
            machine_type,
            replicas: model.serving_replicas.get(),
        };
        Ok::<_, ModelError>((deployment, wanted, before))
    };
    let (deployment, wanted, before) = match prepared.await {
        Ok(prepared) => prepared,
        Err(error) => {
            run.find(
                asset,
                false,
                format!("nothing deployed on {endpoint}: {error}"),
            );
            return Ok(Served::Not);
        }
    };
    if !before.is_empty() {
        run.find(
            asset,
            true,
            format!(
                "{endpoint} already serves {} ({}) from before the drill: left alone, time to \
                 serve not measured",
                deployment.model.model_id,
                before.join(", ")
            ),
        );
        return Ok(Served::Skipped);
    }
    let started = Utc::now();
    let operation = match registry.start_deploy(endpoint, &deployment).await {
        Ok(operation) => operation,
        Err(error) => {
            run.find(
                asset,
                false,
                format!("deploy on {endpoint} refused: {error}"),
            );
            return Ok(Served::Not);
        }
    };
    run.cleanup.deployments.push(RunDeployment {
        model: asset.to_string(),
        endpoint: endpoint.clone(),
        model_id: deployment.model.model_id.clone(),
        version_id: deployment.version_id.clone(),
        operation: operation.name.clone(),
        deployed_model_id: None,
        undeployed_at: None,
    });
    run.step(
        "deploy-started",
        format!(
            "{asset}: version {wanted} on {endpoint} ({})",
            operation.name
        ),
    );
    save_cleanup(context.state.as_ref(), run)
        .await
        .map_err(Stop::Record)?;
    let context_text = format!("deploy version {wanted} of {asset} on {endpoint}");
    let waited = tokio::select! {
        waited = wait(registry, operation, &context.backoff, &context_text) => waited,
        () = abort.triggered() => return Err(Stop::Aborted),
    };
    let deployed_id = match waited {
        Ok(Completed::Deployed { deployed_model_id }) => deployed_model_id,
        Ok(other) => {
            run.find(asset, false, format!("{context_text}: reported {other:?}"));
            return Ok(Served::Not);
        }
        Err(error) => {
            run.find(asset, false, format!("{context_text}: {error}"));
            return Ok(Served::Not);
        }
    };
    if let Some(recorded) = run.cleanup.deployments.last_mut() {
        recorded.deployed_model_id = Some(deployed_id.clone());
    }
    run.cleanup.deployed.get_or_insert(deployed_id.clone());
    save_cleanup(context.state.as_ref(), run)
        .await
        .map_err(Stop::Record)?;
    let deployed_at = Utc::now();
    run.phase("deploy", started, deployed_at);
    let answered = serves(context, workload, model, endpoint, &deployed_id, run, abort).await?;
    let now = Utc::now();
    run.phase("serve", deployed_at, now);
    let (ok, how) = match answered {
        Ok(how) => (true, how),
        Err(last) => (false, format!("did not serve before the deadline: {last}")),
    };
    let seconds = (now - started).as_seconds_f64();
    let detail = if ok {
        format!(
            "version {wanted} deployed on {endpoint} ({deployed_id}) in {:.1} s and {how} \
             {seconds:.1} s after the deploy started",
            (deployed_at - started).as_seconds_f64()
        )
    } else {
        format!("version {wanted} deployed on {endpoint} ({deployed_id}) but {how}")
    };
    run.find(asset, ok, detail);
    tracing::info!(model = asset, %endpoint, ok, seconds, "pilot-light deploy measured");
    Ok(if ok {
        Served::Measured(seconds)
    } else {
        Served::Not
    })
}

/// Sends predictions to the region until one is answered (right, where
/// golden requests are declared), the run's deadline passes or `abort`
/// fires; how it served, or the last failure.
async fn serves(
    context: &DeployContext,
    workload: &Workload,
    model: &Model,
    endpoint: &EndpointRef,
    deployed_id: &str,
    run: &DrillRun,
    abort: &Shutdown,
) -> Result<Result<String, String>, Stop> {
    let region = endpoint.region.as_str();
    let golden = context
        .golden
        .as_ref()
        .filter(|_| !model.golden_requests.is_empty());
    let pause = context.backoff.initial.max(Duration::from_millis(10));
    loop {
        let last = match golden {
            Some(client) => match client.check_model(workload, model, region).await {
                Ok(pass) => return Ok(Ok(format!("answered right: {pass}"))),
                Err(failure) => failure.to_string(),
            },
            None => match context.registry.endpoint(endpoint).await {
                Ok(current) if current.traffic.get(deployed_id).is_some_and(|s| *s > 0) => {
                    let why = if model.golden_requests.is_empty() {
                        "no golden requests are declared"
                    } else {
                        "no gateway is configured for golden requests"
                    };
                    return Ok(Ok(format!(
                        "took the endpoint's traffic ({why}, so correctness was not checked)"
                    )));
                }
                Ok(_) => format!("{deployed_id} takes no traffic on {endpoint}"),
                Err(error) => error.to_string(),
            },
        };
        if Utc::now() >= run.deadline {
            return Ok(Err(last));
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = abort.triggered() => return Err(Stop::Aborted),
        }
    }
}

/// Undeploys every deployment `run.cleanup` says this run started and has
/// not undeployed yet, and sets `run.cleanup.undeployed_at` once all are
/// gone. Idempotent; a deployment whose id the run never learnt (a crash
/// mid-deploy) is found by following its operation. Nothing else on the
/// endpoint is touched.
pub async fn undeploy(context: &DeployContext, run: &mut DrillRun) -> Result<(), DeployError> {
    let registry = context.registry.as_ref();
    for index in 0..run.cleanup.deployments.len() {
        let deployment = run.cleanup.deployments[index].clone();
        if deployment.undeployed_at.is_some() {
            continue;
        }
        let failed = |source| DeployError::Undeploy {
            run: run.id.clone(),
            deployment: format!("{} on {}", deployment.model, deployment.endpoint),
            source,
        };
        let deployed_id = match deployment.deployed_model_id.clone() {
            Some(id) => Some(id),
            None => deployed_by(context, &deployment).await.map_err(failed)?,
        };
        if let Some(id) = &deployed_id {
            let endpoint = registry
                .endpoint(&deployment.endpoint)
                .await
                .map_err(failed)?;
            if endpoint.deployed_model(id).is_some() {
                let what = format!("undeploy {id} from {}", deployment.endpoint);
                let operation = registry
                    .start_undeploy(&deployment.endpoint, id)
                    .await
                    .map_err(failed)?;
                wait(registry, operation, &context.backoff, &what)
                    .await
                    .map_err(failed)?;
            }
            run.step(
                "undeployed",
                format!("{}: {id} from {}", deployment.model, deployment.endpoint),
            );
        }
        let recorded = &mut run.cleanup.deployments[index];
        recorded.deployed_model_id = deployed_id;
        recorded.undeployed_at = Some(Utc::now());
        save_cleanup(context.state.as_ref(), run)
            .await
            .map_err(|source| DeployError::Record {
                run: run.id.clone(),
                source,
            })?;
    }
    if !run.cleanup.deployments.is_empty() && run.cleanup.undeployed_at.is_none() {
        run.cleanup.undeployed_at = Some(Utc::now());
        save_cleanup(context.state.as_ref(), run)
            .await
            .map_err(|source| DeployError::Record {
                run: run.id.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The deployed model id `deployment`'s operation produced, following the
/// operation to its end; `None` when it failed (nothing was deployed).
async fn deployed_by(
    context: &DeployContext,
    deployment: &RunDeployment,
) -> Result<Option<String>, ModelError> {
    let registry = context.registry.as_ref();
    let operation = registry.operation(&deployment.operation).await?;
    let context_text = format!(
        "deploy of {} on {} ({})",
        deployment.model, deployment.endpoint, deployment.operation
    );
    let finished = match operation.state {
        OperationState::Failed(_) => return Ok(None),
        _ => wait(registry, operation, &context.backoff, &context_text).await,
    };
    match finished {
        Ok(Completed::Deployed { deployed_model_id }) => Ok(Some(deployed_model_id)),
        Ok(other) => Err(ModelError::Rejected {
            context: context_text,
            message: format!("the operation reported {other:?}, not a deployment"),
        }),
        Err(ModelError::OperationFailed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
