//! The local cloud: every region of a topology in one process, on this
//! machine. Storage, state and the event bus are the embedded backends of
//! `lifeboat_shared`, kept under one data directory so that everything
//! survives a restart; each region answers on its own loopback port, and the
//! functions' routers are served on one more. Each region serves the models
//! its endpoints hold in the local registry; the gateway routes predictions
//! between regions by the routing tables, and a prober opens and closes
//! incidents that the failover service acts on; it verifies a region with
//! the topology's golden requests through the same gateway. A model version
//! released in the primary (see [`releases`]) reaches the standbys through
//! model-copy.

mod address_book;
pub mod faults;
mod models;
mod prober;
mod region;
pub mod releases;
mod scheduler;
pub mod storage_events;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use lifeboat_checkpoint_fanout::{FanoutContext, FanoutOptions};
use lifeboat_console::ConsoleContext;
use lifeboat_data_sync::tables::split_dataset;
use lifeboat_data_sync::{BulkPath, DataSync};
use lifeboat_drill::report::ReportSink;
use lifeboat_drill::runner::LiveRuns;
use lifeboat_drill::{DrillContext, DrillOptions};
use lifeboat_failover::failback::FailbackOptions;
use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets};
use lifeboat_gateway::{Gateway, GatewayOptions, LOCAL_INSTANCE, Upstreams};
use lifeboat_model_copy::mirror::ImageMirror;
use lifeboat_model_copy::{CopyContext, CopyOptions};
use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
use lifeboat_shared::bus::{DRILL_EVENTS_TOPIC, EVENTS_TOPIC, EventBus, FAILOVER_REFUSED_TOPIC};
use lifeboat_shared::fault::FaultWatch;
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::golden::GoldenClient;
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::{Service, Shutdown, serve_router};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::ObjectStore;
use lifeboat_shared::storage::dark::DarkBuckets;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::topology::{RegionId, Topology};
use lifeboat_shared::transfer::local::StoreCopier;
use lifeboat_shared::warehouse::Warehouse;
use lifeboat_shared::warehouse::local::LocalWarehouse;
use tokio::net::TcpListener;

pub use address_book::AddressBook;

/// How long requests in flight may finish after Ctrl-C.
const GRACE_PERIOD: Duration = Duration::from_secs(8);

/// Where checkpoint-fanout's router is mounted on the functions listener.
pub const CHECKPOINT_FANOUT_PATH: &str = "/checkpoint-fanout";

/// How long each failback step runs in the local cloud (a minute on Google
/// Cloud): long enough for the prober to see the returning region, short
/// enough to watch.
const LOCAL_FAILBACK_STEP: Duration = Duration::from_secs(2);

/// Where data-sync's router is mounted on the functions listener.
pub const DATA_SYNC_PATH: &str = "/data-sync";

/// Where model-copy's router is mounted on the functions listener.
pub const MODEL_COPY_PATH: &str = "/model-copy";

/// Where failover's router is mounted on the functions listener (incidents
/// are POSTed there, as Monitoring's webhook channel does).
pub const FAILOVER_PATH: &str = "/failover";

/// Where the drill service's router is mounted on the functions listener
/// (`/drill/drills/{id}/run`, `/drill/runs/{run}`...).
pub const DRILL_PATH: &str = "/drill";

/// Where the gateway's router is mounted on the functions listener
/// (predictions are POSTed to `/gateway/predict/{workload}/{model}`).
pub const GATEWAY_PATH: &str = "/gateway";

/// Where drill reports are written, inside the data directory.
pub const REPORTS_DIR: &str = "reports";

/// How often the local cloud looks for drill runs a crash left unfinished.
const LOCAL_DRILL_RECOVERY: Duration = Duration::from_secs(5);

/// How long a local drill's lease lasts unless renewed (a minute on Google
/// Cloud): a drill killed mid-run is cleaned up within seconds of a
/// restart.
const LOCAL_DRILL_LEASE: Duration = Duration::from_secs(10);

/// How long the gateway waits for one region before trying the next:
/// shorter than a slow region's delay, so a slow region is retried
/// elsewhere.
const GATEWAY_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the regions' health endpoints read the drill faults: a fault
/// takes effect well within one probe interval.
const DRILL_FAULT_REFRESH: Duration = Duration::from_millis(250);

/// How long a function may take to answer a pushed event (Pub/Sub's
/// longest ack deadline): a large checkpoint's fan-out takes a while.
const ACK_DEADLINE: Duration = Duration::from_secs(600);

/// Delivery attempts before an event is dead-lettered.
const MAX_DELIVERY_ATTEMPTS: u32 = 20;

/// The embedded backends of every region of one topology.
#[derive(Debug, Clone)]
pub struct LocalCloud {
    topology: Arc<Topology>,
    data_dir: PathBuf,
    /// Every bucket, dark while its region is failed.
    storage: Arc<dyn ObjectStore>,
    state: Arc<LocalStateStore>,
    bus: Arc<LocalBus>,
    warehouse: Arc<LocalWarehouse>,
    /// Every region's models, dark while the region is failed.
    registry: Arc<LocalRegistry>,
}

impl LocalCloud {
    /// Opens (or creates) the local cloud of `topology` under `data_dir` and
    /// creates every bucket the topology names, in its region.
    pub async fn open(topology: Topology, data_dir: &Path) -> anyhow::Result<Self> {
        let storage = LocalStore::open(data_dir.join("storage"))
            .await
            .context("opening the local object store")?;
        let state = LocalStateStore::open(data_dir.join("state"))
            .await
            .context("opening the local state store")?;
        let bus_options = LocalBusOptions {
            ack_deadline: ACK_DEADLINE,
            ..LocalBusOptions::default()
        };
        let bus = LocalBus::open(data_dir.join("bus"), bus_options)
            .await
            .context("opening the local event bus")?;
        for topic in [EVENTS_TOPIC, FAILOVER_REFUSED_TOPIC, DRILL_EVENTS_TOPIC] {
            bus.create_topic(topic)
                .await
                .with_context(|| format!("creating topic {topic}"))?;
        }
        let warehouse = LocalWarehouse::open(data_dir.join("warehouse"))
            .await
            .context("opening the local warehouse")?;
        for (bucket, region) in topology.buckets() {
            storage
                .create_bucket(bucket.as_str(), region.as_str())
                .await
                .with_context(|| format!("creating bucket {bucket} in {region}"))?;
        }
        let project = topology.project().as_str();
        for workload in topology.workloads() {
            for asset in &workload.assets.datasets {
                let source = (&asset.source, topology.primary());
                for (dataset, region) in std::iter::once(source).chain(
                    asset
                        .replicas
                        .iter()
                        .map(|(region, dataset)| (dataset, region)),
                ) {
                    let (dataset_project, name) = split_dataset(dataset.as_str(), project);
                    warehouse
                        .create_dataset(dataset_project, name, region.as_str())
                        .await
                        .with_context(|| format!("creating dataset {dataset} in {region}"))?;
                }
            }
        }
        let state = Arc::new(state);
        let registry = LocalRegistry::new(state.clone());
        models::seed(&topology, &registry)
            .await
            .context("registering and deploying the topology's models")?;
        // From now on a failed region is dark as a whole: its front door
        // (see `region`), its registry and its buckets.
        let dark = faults::dark_regions(data_dir);
        let registry = Arc::new(registry.with_dark_regions(dark.clone()));
        let storage = DarkBuckets::new(Arc::new(storage), dark, &topology);
        Ok(Self {
            topology: Arc::new(topology),
            data_dir: data_dir.to_path_buf(),
            storage: Arc::new(storage),
            state,
            registry,
            bus: Arc::new(bus),
            warehouse: Arc::new(warehouse),
        })
    }

    /// The topology this cloud runs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Binds one listener per region and one for the functions, on
    /// consecutive ports from `base_port` (or ephemeral ports when it is 0),
    /// and records them in the data directory's address book.
    pub async fn bind(&self, base_port: u16) -> anyhow::Result<BoundCloud> {
        let next_port = |offset: u16| {
            if base_port == 0 {
                0
            } else {
                base_port.saturating_add(offset)
            }
        };
        let functions = bind(next_port(0)).await?;
        let mut regions = BTreeMap::new();
        for (offset, region) in (1u16..).zip(self.topology.regions()) {
            regions.insert(region.id.clone(), bind(next_port(offset)).await?);
        }
        let functions_address = functions.local_addr()?;
        let book = AddressBook {
            project: self.topology.project().to_string(),
            functions: functions_address,
            gateway: format!("http://{functions_address}{GATEWAY_PATH}"),
            regions: regions
                .iter()
                .map(|(id, listener)| Ok((id.to_string(), listener.local_addr()?)))
                .collect::<std::io::Result<_>>()?,
        };
        book.save(&self.data_dir)?;
        Ok(BoundCloud {
            cloud: self.clone(),
            functions,
            regions,
            book,
        })
    }
}

/// A local cloud whose listeners are bound, ready to serve.
#[derive(Debug)]
pub struct BoundCloud {
    cloud: LocalCloud,
    functions: TcpListener,
    regions: BTreeMap<RegionId, TcpListener>,
    book: AddressBook,
}

impl BoundCloud {
    /// Where everything listens.
    pub fn address_book(&self) -> &AddressBook {
        &self.book
    }

    /// Serves every region and the functions until `shutdown` fires, then
    /// lets requests in flight finish.
    pub async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut servers = tokio::task::JoinSet::new();
        let state = self.cloud.state.clone();
        let fanout = lifeboat_checkpoint_fanout::router(FanoutContext {
            topology: self.cloud.topology.clone(),
            storage: self.cloud.storage.clone(),
            state: self.cloud.state.clone(),
            metrics: Arc::new(StateMetrics::new(self.cloud.state.clone())),
            options: FanoutOptions::default(),
        });
        let fanout = self
            .mount(
                lifeboat_checkpoint_fanout::SERVICE_NAME,
                CHECKPOINT_FANOUT_PATH,
                fanout,
            )
            .await?;
        let data_sync = lifeboat_data_sync::router(DataSync {
            topology: self.cloud.topology.clone(),
            storage: self.cloud.storage.clone(),
            state: self.cloud.state.clone(),
            warehouse: self.cloud.warehouse.clone(),
            metrics: Arc::new(StateMetrics::new(self.cloud.state.clone())),
            bulk: Some(BulkPath::new(Arc::new(StoreCopier::new(
                self.cloud.storage.clone(),
            )))),
        });
        let data_sync = self
            .mount(lifeboat_data_sync::SERVICE, DATA_SYNC_PATH, data_sync)
            .await?;
        let model_copy = lifeboat_model_copy::router(CopyContext {
            topology: self.cloud.topology.clone(),
            registry: self.cloud.registry.clone(),
            state: self.cloud.state.clone(),
            storage: self.cloud.storage.clone(),
            mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
            options: CopyOptions::default(),
            metrics: Arc::new(StateMetrics::new(self.cloud.state.clone())),
        });
        let model_copy = self
            .mount(
                lifeboat_model_copy::SERVICE_NAME,
                MODEL_COPY_PATH,
                model_copy,
            )
            .await?;
        let releases = releases::router(releases::Releases {
            topology: self.cloud.topology.clone(),
            registry: self.cloud.registry.clone(),
            bus: self.cloud.bus.clone(),
        });
        let buckets = self
            .cloud
            .topology
            .buckets()
            .into_iter()
            .map(|(bucket, _)| bucket.to_string())
            .collect();
        let notifier = storage_events::StorageNotifier::new(
            self.cloud.storage.clone(),
            self.cloud.bus.clone(),
            self.cloud.state.clone(),
            buckets,
        );
        let notifications = tokio::spawn(notifier.run(shutdown.clone()));
        let reconciles = tokio::spawn(scheduler::run(
            scheduler::DATA_SYNC_RECONCILE_JOB,
            format!("http://{}{DATA_SYNC_PATH}", self.book.functions),
            scheduler::RECONCILE_INTERVAL,
            shutdown.clone(),
        ));
        let model_reconciles = tokio::spawn(scheduler::run(
            scheduler::MODEL_COPY_RECONCILE_JOB,
            format!("http://{}{MODEL_COPY_PATH}", self.book.functions),
            scheduler::RECONCILE_INTERVAL,
            shutdown.clone(),
        ));
        let drill_faults = FaultWatch::new();
        let drill_faults_refreshing = tokio::spawn(drill_faults.clone().keep_refreshed(
            self.cloud.state.clone(),
            DRILL_FAULT_REFRESH,
            shutdown.clone(),
        ));
        let mut probes = ProbeTargets::default();
        let mut upstreams = Upstreams::new();
        let mut checks = Vec::new();
        for workload in self.cloud.topology.workloads() {
            for (region, address) in &self.book.regions {
                let url = format!("http://{address}/healthz?workload={}", workload.id);
                probes.insert(workload.id.as_str(), region, url.clone());
                checks.push(prober::Check {
                    workload: workload.id.to_string(),
                    region: region.clone(),
                    url,
                });
                for model in &workload.assets.models {
                    upstreams.insert(
                        workload.id.as_str(),
                        model.id.as_str(),
                        region,
                        format!("http://{address}/predict/{}/{}", workload.id, model.id),
                    );
                }
            }
        }
        let implied = self
            .cloud
            .topology
            .workloads()
            .iter()
            .filter_map(|workload| {
                let weights = routing::implied_weights(&self.cloud.topology, workload);
                RoutingTable::new(
                    workload.id.as_str(),
                    weights,
                    "implied by the topology (no table written yet)",
                )
                .ok()
            });
        let gateway = Gateway::new(
            upstreams,
            self.cloud.state.clone(),
            Credentials::Anonymous,
            GatewayOptions {
                attempt_timeout: GATEWAY_ATTEMPT_TIMEOUT,
                instance: LOCAL_INSTANCE.to_string(),
                region: None,
                ..GatewayOptions::from_env().map_err(anyhow::Error::msg)?
            },
        )
        .with_tables(implied);
        let refreshing = tokio::spawn(gateway.clone().keep_refreshed(shutdown.clone()));
        let gateway = Service::new(
            lifeboat_gateway::SERVICE_NAME,
            lifeboat_gateway::router(gateway),
        )
        .with_body_limit(lifeboat_gateway::PREDICTION_BODY_LIMIT)
        .into_router();
        let probing = tokio::spawn(prober::run(
            self.cloud.topology.project().to_string(),
            checks,
            format!("http://{}{FAILOVER_PATH}", self.book.functions),
            shutdown.clone(),
        ));
        let failover_context = FailoverContext {
            topology: self.cloud.topology.clone(),
            state: self.cloud.state.clone(),
            registry: self.cloud.registry.clone(),
            bus: self.cloud.bus.clone(),
            probes,
            prober: Prober::default(),
            golden: Some(GoldenClient::new(&self.book.gateway)?),
            options: FailoverOptions {
                failback: FailbackOptions {
                    step_wait: LOCAL_FAILBACK_STEP,
                    ..FailbackOptions::default()
                },
                ..FailoverOptions::default()
            },
            metrics: Arc::new(StateMetrics::new(self.cloud.state.clone())),
        };
        let drill_context = DrillContext {
            failover: failover_context.clone(),
            storage: self.cloud.storage.clone(),
            warehouse: self.cloud.warehouse.clone(),
            gateway_url: self.book.gateway.clone(),
            reports: ReportSink::Directory(self.cloud.data_dir.join(REPORTS_DIR)),
            options: DrillOptions {
                recovery_interval: LOCAL_DRILL_RECOVERY,
                lease_ttl: LOCAL_DRILL_LEASE,
                ..DrillOptions::default()
            },
            live: LiveRuns::default(),
        };
        let drill_recovery = tokio::spawn(lifeboat_drill::runner::keep_recovering(
            drill_context.clone(),
            shutdown.clone(),
        ));
        let drills = tokio::spawn(scheduler::run_drills(
            self.cloud.topology.drills().to_vec(),
            format!("http://{}{DRILL_PATH}", self.book.functions),
            shutdown.clone(),
        ));
        let drill = Service::new(
            lifeboat_drill::SERVICE_NAME,
            lifeboat_drill::router(drill_context),
        )
        .with_request_timeout(ACK_DEADLINE)
        .into_router();
        let failover = lifeboat_failover::router(failover_context);
        let failover = Service::new(lifeboat_failover::SERVICE_NAME, failover)
            .with_request_timeout(ACK_DEADLINE)
            .into_router();
        let functions = Service::new(
            "local-functions",
            Router::new()
                .nest(CHECKPOINT_FANOUT_PATH, fanout)
                .nest(DATA_SYNC_PATH, data_sync)
                .nest(MODEL_COPY_PATH, model_copy)
                .nest(FAILOVER_PATH, failover)
                .nest(DRILL_PATH, drill)
                .nest(GATEWAY_PATH, gateway)
                .merge(releases)
                .merge(lifeboat_console::router(ConsoleContext {
                    topology: self.cloud.topology.clone(),
                    state: self.cloud.state.clone(),
                })),
        )
        .with_state_readiness(state)
        .into_router();
        servers.spawn(serve_router(
            functions,
            self.functions,
            shutdown.clone(),
            GRACE_PERIOD,
        ));
        let backends = region::Backends {
            topology: self.cloud.topology.clone(),
            storage: self.cloud.storage.clone(),
            registry: self.cloud.registry.clone(),
            data_dir: self.cloud.data_dir.clone(),
            drill_faults,
        };
        for (id, listener) in self.regions {
            let region = self
                .cloud
                .topology
                .region(id.as_str())
                .cloned()
                .with_context(|| format!("region {id} vanished from the topology"))?;
            let router = region::router(region, &backends);
            servers.spawn(serve_router(
                router,
                listener,
                shutdown.clone(),
                GRACE_PERIOD,
            ));
        }
        let mut outcome = Ok(());
        while let Some(result) = servers.join_next().await {
            if let Err(error) = result
                .context("a local cloud server panicked")
                .and_then(|served| served.context("a local cloud server failed"))
            {
                outcome = Err(error);
            }
        }
        for (task, name) in [
            (notifications, "storage notifier"),
            (reconciles, "data-sync's scheduler"),
            (model_reconciles, "model-copy's scheduler"),
            (refreshing, "gateway's routing refresh"),
            (drill_faults_refreshing, "regions' drill fault refresh"),
            (probing, "prober"),
            (drill_recovery, "drill recovery"),
            (drills, "drill scheduler"),
        ] {
            if let Err(error) = task.await {
                tracing::warn!(%error, "the {name} ended abnormally");
            }
        }
        // Undelivered events stay in the bus's store and are pushed again
        // after a restart.
        self.cloud.bus.shutdown().await;
        outcome
    }
}

impl BoundCloud {
    /// Wraps function `name`'s router as a service and subscribes it, at
    /// `path` of the functions listener, to the events topic with a push
    /// subscription, as Eventarc would.
    async fn mount(&self, name: &str, path: &str, router: Router) -> anyhow::Result<Router> {
        self.cloud
            .bus
            .subscribe_push(
                EVENTS_TOPIC,
                name,
                &format!("http://{}{path}", self.book.functions),
                MAX_DELIVERY_ATTEMPTS,
            )
            .await
            .with_context(|| format!("subscribing {name} to storage events"))?;
        Ok(Service::new(name, router)
            .with_request_timeout(ACK_DEADLINE)
            .into_router())
    }
}

async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address} (is another local cloud running? try --port)"))
}
