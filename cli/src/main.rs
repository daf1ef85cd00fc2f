//! The `lifeboat` command: validate a topology, run the local multi-region
//! cloud, write checkpoints into it, and report RPO per region.

mod demo;
mod drill;
mod local_cloud;
mod plan;
mod progress;
mod release;
mod status;
mod sync;
mod topology_file;
mod traffic;
mod validate;
mod write_checkpoint;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory as _, Parser, Subcommand};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::topology::Topology;
use topology_file::TopologyFile;

/// Multi-region disaster recovery for ML workloads on Google Cloud.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a topology file and prints every problem with file:line:column.
    Validate {
        /// The topology YAML file.
        file: PathBuf,
    },
    /// The local multi-region cloud.
    #[command(subcommand)]
    Local(LocalCommand),
    /// RPO exposure now against each workload's target: per checkpoint
    /// location and region (newest complete step, exposure in time and
    /// steps) and per bucket and dataset and region. Exits 1 when a region
    /// misses its target. With `--models`, per model and standby region:
    /// versions present, version deployed, time to arrive and parity;
    /// exits 1 when one is not in parity.
    Status {
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// Read Firestore of the topology's project ($FIRESTORE_EMULATOR_HOST
        /// if set) instead of the local cloud.
        #[arg(long)]
        firestore: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Report model version parity instead of RPO exposure.
        #[arg(long)]
        models: bool,
    },
    /// What each DR pattern (single region, pilot light, active-passive,
    /// active-active) costs every workload a month, line by line with the
    /// SKU and unit price of each; the RPO and RTO each can expect (modelled,
    /// or measured by the newest drill); the cheapest that meets the
    /// workload's targets; the largest checkpoint interval that keeps the
    /// RPO; and whether each standby could take the load in time. Exits 1
    /// when a figure or price is missing (the plan is incomplete).
    Plan {
        #[command(flatten)]
        topology: TopologyFile,
        /// A price file (from `--refresh-prices`); without it, the snapshot
        /// shipped with Lifeboat.
        #[arg(long, env = "LIFEBOAT_PRICES")]
        prices: Option<PathBuf>,
        /// Fetch the prices the plan needs from the Cloud Billing Catalog
        /// API first and write them to `--prices` (default
        /// lifeboat-prices.json); when the API cannot be reached, says so
        /// and plans with the snapshot.
        #[arg(long)]
        refresh_prices: bool,
        /// The local cloud's data directory (measurements are read there).
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// Read the measurements from Firestore of the topology's project
        /// ($FIRESTORE_EMULATOR_HOST if set) instead of the local cloud.
        #[arg(long)]
        firestore: bool,
        /// Read each standby region's Vertex AI serving quotas from the
        /// Cloud Quotas API and say whether they cover what the region
        /// would run after a failover (exit 1 when one does not).
        #[arg(long)]
        check_quotas: bool,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Bucket and dataset replication.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Moves a workload's traffic to a region, through the failover
    /// service's safety rules (a running local cloud's). Exits 1 unless
    /// traffic moved.
    Failover {
        /// The workload's id.
        workload: String,
        /// The region to move to.
        #[arg(long)]
        to: String,
        /// Move even if the region lacks the model version or is past its
        /// RPO, or within the hold-down (never to an unhealthy region).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
    },
    /// Game days: the drills declared in the topology, run by a running
    /// local cloud's drill service.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Returns a workload's traffic to the primary step by step (10, 50,
    /// 100 %), rolled back if the primary fails a step. Exits 1 unless all
    /// of it is back.
    Failback {
        /// The workload's id.
        workload: String,
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
    },
    /// Prints the completion script of `lifeboat` for SHELL, e.g.
    /// `lifeboat completions bash > ~/.local/share/bash-completion/completions/lifeboat`
    /// or `lifeboat completions zsh > ~/.zfunc/_lifeboat`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where the drill commands find the drill service.
#[derive(Debug, clap::Args)]
struct DrillAt {
    #[command(flatten)]
    topology: TopologyFile,
    /// The local cloud's data directory.
    #[arg(long, default_value = ".lifeboat")]
    data_dir: PathBuf,
    /// Print JSON instead of tables and progress.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Every declared drill: kind, workload, target, last run (when,
    /// result, RTO measured) and next due time; an overdue drill says so.
    List {
        #[command(flatten)]
        at: DrillAt,
    },
    /// Runs a drill now, through its guardrails, and follows it to its end:
    /// each step as it happens, then each target with what was measured,
    /// and the report's path. Exits 1 unless it passed.
    Run {
        /// The drill's id.
        id: String,
        /// Run even outside the drill's window (recorded as such).
        #[arg(long)]
        ignore_window: bool,
        /// Start it and return at once.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        at: DrillAt,
    },
    /// Stops a running drill: its fault is removed, its routing restored,
    /// and the record says why.
    Abort {
        /// The run's id.
        run: String,
        /// Why (recorded).
        #[arg(long, default_value = "asked by hand")]
        reason: String,
        #[command(flatten)]
        at: DrillAt,
    },
    /// Prints the path of a run's HTML report.
    Report {
        /// The run's id.
        run: String,
        /// Open it in the browser.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        at: DrillAt,
    },
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Compares every protected bucket with its replicas, repairs what
    /// differs and reports the drift (objects the events missed), then
    /// copies every table of every protected dataset whose source is newer
    /// than its last verified copy.
    Reconcile {
        #[command(flatten)]
        topology: TopologyFile,
        /// Reconcile the local cloud kept in this data directory instead of
        /// Google Cloud (or the emulators named by STORAGE_EMULATOR_HOST and
        /// FIRESTORE_EMULATOR_HOST).
        #[arg(long)]
        local: Option<PathBuf>,
        /// How many repairs run at once.
        #[arg(long, default_value_t = lifeboat_data_sync::reconcile::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// How many missing or different objects in one replica make the
        /// rest of them go to a bulk copy (Storage Transfer Service on
        /// Google Cloud, the store's own copy locally).
        #[arg(long, default_value_t = lifeboat_data_sync::DEFAULT_BULK_THRESHOLD)]
        bulk_threshold: u64,
    },
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Runs the whole recovery path on a fresh local cloud: a checkpoint
    /// fanned out, predictions through the gateway, the primary failed,
    /// detected, failed over, healed and failed back; prints the measured
    /// RTO with its parts, the failed requests and the RPO at failure.
    /// Exits 1 unless the workload's targets held. With no topology given
    /// or found, runs on the built-in production example (written into
    /// the data directory).
    Demo {
        #[command(flatten)]
        topology: TopologyFile,
        /// Where the demo's local cloud is kept (cleared first).
        #[arg(long, default_value = ".lifeboat-demo")]
        data_dir: PathBuf,
    },
    /// Starts every region of a topology in this process, until Ctrl-C.
    Up {
        #[command(flatten)]
        topology: TopologyFile,
        /// Where storage, state and events are kept (survives restarts).
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// The functions' port; regions take the next ones. 0: any free ports.
        #[arg(long, default_value_t = 8700)]
        port: u16,
    },
    /// Writes a checkpoint into the primary's local bucket like a training
    /// job: every shard, then the commit marker.
    WriteCheckpoint {
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// The checkpoint location's id (default: the first one).
        #[arg(long)]
        location: Option<String>,
        /// The training step.
        #[arg(long)]
        step: u64,
        /// How many shards.
        #[arg(long, default_value_t = 16)]
        shards: u32,
        /// The checkpoint's total size in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        size: u64,
    },
    /// Releases a new version of a protected model in the running local
    /// cloud's primary (uploaded, and served there unless the topology pins
    /// the version), then waits for model-copy to bring it to every standby
    /// region and prints parity and what each endpoint serves. Exits 1
    /// unless every standby region reached parity.
    ReleaseModel {
        /// The model: asset id, Vertex AI model id or display name.
        model: String,
        /// The version id to give it (default: the next one).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// How long to wait for every standby region, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Fails a region of the local cloud (running or not): its predictions
    /// and health checks stop answering, answer 503, or answer slowly, until
    /// `heal-region`.
    FailRegion {
        /// The region.
        region: String,
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
        /// How the region fails.
        #[arg(long, value_enum, default_value_t = local_cloud::faults::Fault::Stop)]
        mode: local_cloud::faults::Fault,
    },
    /// Heals a region failed by `fail-region`.
    HealRegion {
        /// The region.
        region: String,
        #[command(flatten)]
        topology: TopologyFile,
        /// The local cloud's data directory.
        #[arg(long, default_value = ".lifeboat")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("lifeboat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command; `Ok(false)` when it ran but its answer is no (exit 1).
fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Validate { file } => validate::run(&file),
        Command::Local(LocalCommand::Up {
            topology,
            data_dir,
            port,
        }) => local_up(&topology.path()?, &data_dir, port).map(|()| true),
        Command::Local(LocalCommand::WriteCheckpoint {
            topology,
            data_dir,
            location,
            step,
            shards,
            size,
        }) => {
            let shape = write_checkpoint::Shape { step, shards, size };
            with_topology(&topology.path()?, |topology| async move {
                write_checkpoint::run(&topology, &data_dir, location.as_deref(), shape)
                    .await
                    .map(|()| true)
            })
        }
        Command::Local(LocalCommand::ReleaseModel {
            model,
            version,
            topology,
            data_dir,
            timeout,
        }) => with_topology(&topology.path()?, |topology| async move {
            let timeout = std::time::Duration::from_secs(timeout);
            release::run(&topology, &data_dir, &model, version, timeout).await
        }),
        Command::Local(LocalCommand::Demo { topology, data_dir }) => {
            let topology = topology.path_or_example(&data_dir)?;
            with_topology(&topology, |topology| async move {
                demo::run(topology, &data_dir).await
            })
        }
        Command::Local(LocalCommand::FailRegion {
            region,
            topology,
            data_dir,
            mode,
        }) => set_fault(&topology.path()?, &data_dir, &region, Some(mode)),
        Command::Local(LocalCommand::HealRegion {
            region,
            topology,
            data_dir,
        }) => set_fault(&topology.path()?, &data_dir, &region, None),
        Command::Plan {
            topology,
            prices,
            refresh_prices,
            data_dir,
            firestore,
            check_quotas,
            json,
        } => with_topology(&topology.path()?, |topology| async move {
            let book = plan::price_book(&topology, prices.as_deref(), refresh_prices).await?;
            let source = if firestore {
                status::Source::Firestore
            } else {
                status::Source::Local(&data_dir)
            };
            plan::run(&topology, &book, source, check_quotas, json).await
        }),
        Command::Status {
            topology,
            data_dir,
            firestore,
            json,
            models,
        } => with_topology(&topology.path()?, |topology| async move {
            let source = if firestore {
                status::Source::Firestore
            } else {
                status::Source::Local(&data_dir)
            };
            let report = if models {
                status::Report::Models
            } else {
                status::Report::Rpo
            };
            status::run(&topology, source, report, json).await
        }),
        Command::Failover {
            workload,
            to,
            force,
            topology,
            data_dir,
        } => with_topology(&topology.path()?, |topology| async move {
            let by = std::env::var("USER").unwrap_or_else(|_| "an operator".to_string());
            let asked = lifeboat_failover::ManualMove { to, force, by };
            traffic::run(&topology, &data_dir, &workload, traffic::Ask::Move(&asked)).await
        }),
        Command::Failback {
            workload,
            topology,
            data_dir,
        } => with_topology(&topology.path()?, |topology| async move {
            traffic::run(&topology, &data_dir, &workload, traffic::Ask::Failback).await
        }),
        Command::Drill(command) => {
            let at = match &command {
                DrillCommand::List { at }
                | DrillCommand::Run { at, .. }
                | DrillCommand::Abort { at, .. }
                | DrillCommand::Report { at, .. } => at,
            };
            let (data_dir, json) = (at.data_dir.clone(), at.json);
            with_topology(&at.topology.path()?, |topology| async move {
                let service = drill::DrillService::local(&topology, &data_dir)?;
                match command {
                    DrillCommand::List { .. } => drill::list(&service, json).await,
                    DrillCommand::Run {
                        id,
                        ignore_window,
                        detach,
                        ..
                    } => drill::run(&service, &id, ignore_window, detach, json).await,
                    DrillCommand::Abort { run, reason, .. } => {
                        drill::abort(&service, &run, &reason).await
                    }
                    DrillCommand::Report { run, open, .. } => {
                        drill::report(&service, &run, open).await
                    }
                }
            })
        }
        Command::Sync(SyncCommand::Reconcile {
            topology,
            local,
            concurrency,
            bulk_threshold,
        }) => sync::reconcile(
            &topology.path()?,
            local.as_deref(),
            concurrency,
            bulk_threshold,
        ),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let name = command.get_name().to_string();
            clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
            Ok(true)
        }
    }
}

/// Loads the topology and runs `work` on a new async runtime.
fn with_topology<F, Fut>(file: &std::path::Path, work: F) -> anyhow::Result<bool>
where
    F: FnOnce(Topology) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let topology = Topology::load(file).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(work(topology))
}

/// `lifeboat local fail-region` (with a fault) and `heal-region` (without).
fn set_fault(
    topology_file: &std::path::Path,
    data_dir: &std::path::Path,
    region: &str,
    fault: Option<local_cloud::faults::Fault>,
) -> anyhow::Result<bool> {
    let topology =
        Topology::load(topology_file).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    if topology.region(region).is_none() {
        anyhow::bail!(
            "unknown region {region}: {} has {}",
            topology_file.display(),
            topology
                .regions()
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let data_dir = data_dir.join(topology.project().as_str());
    local_cloud::faults::set(&data_dir, region, fault)?;
    match fault {
        Some(fault) => {
            println!("{region} failed ({fault:?}); `lifeboat local heal-region {region}` heals it")
        }
        None => println!("{region} healed"),
    }
    Ok(true)
}

/// `lifeboat local up`: opens the local cloud, prints where each region
/// listens and serves until Ctrl-C or SIGTERM.
fn local_up(
    topology_file: &std::path::Path,
    data_dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init("lifeboat-local")?;
    let topology =
        Topology::load(topology_file).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let data_dir = data_dir.join(topology.project().as_str());
        let cloud = local_cloud::LocalCloud::open(topology, &data_dir).await?;
        let bound = cloud.bind(port).await?;
        let book = bound.address_book();
        println!(
            "lifeboat local cloud for {} ({}), data in {}",
            book.project,
            topology_file.display(),
            data_dir.display()
        );
        println!("  {:<16} http://{}/", "console", book.functions);
        println!("  {:<16} http://{}", "functions", book.functions);
        println!("  {:<16} {}", "gateway", book.gateway);
        for region in cloud.topology().regions() {
            if let Some(address) = book.regions.get(region.id.as_str()) {
                let buckets: Vec<String> = cloud
                    .topology()
                    .buckets()
                    .into_iter()
                    .filter(|(_, at)| **at == region.id)
                    .map(|(bucket, _)| bucket.to_string())
                    .collect();
                println!(
                    "  {:<16} http://{}  {}  buckets: {}",
                    region.id.as_str(),
                    address,
                    region.role,
                    buckets.join(", ")
                );
            }
        }
        println!("ready; Ctrl-C stops");
        bound.serve(Shutdown::on_signals()).await
    })
}
