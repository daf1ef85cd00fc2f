//! `lifeboat drill list | run ID | abort RUN | report RUN`: a person's view
//! of the drills of a running local cloud, through its drill service (the
//! same guardrails, records and reports as a Scheduler tick's run).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lifeboat_drill::RunRequest;
use lifeboat_shared::records::drill_run::{DrillOverview, DrillRun, RunState};
use lifeboat_shared::topology::Topology;

use crate::local_cloud::{AddressBook, DRILL_PATH, REPORTS_DIR};
use crate::progress;
use crate::status::drill_table;

/// How often a followed run is looked at.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// The drill service of the local cloud running on `data_dir`.
#[derive(Debug)]
pub struct DrillService {
    base: String,
    dir: PathBuf,
    client: reqwest::Client,
}

impl DrillService {
    /// The drill service of the local cloud of `topology` kept in
    /// `data_dir`, which must be running.
    pub fn local(topology: &Topology, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join(topology.project().as_str());
        let book = AddressBook::load(&dir)?;
        Ok(Self {
            base: format!("http://{}{DRILL_PATH}", book.functions),
            dir,
            client: reqwest::Client::new(),
        })
    }

    /// Sends `request` and reads the JSON answer; an answer that is not a
    /// success is an error saying what the service said.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        let response = request.send().await.with_context(|| {
            format!("the local cloud's drill service at {} does not answer (is `lifeboat local up` running?)", self.base)
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("reading the drill service's answer")?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if !status.is_success() {
            anyhow::bail!(
                "the drill service answered {status}: {}",
                body.as_str()
                    .map_or_else(|| body.to_string(), str::to_string)
            );
        }
        Ok((status, body))
    }

    /// Every declared drill with its last run and next due time.
    pub async fn drills(&self) -> anyhow::Result<Vec<DrillOverview>> {
        let (_, body) = self
            .call(self.client.get(format!("{}/drills", self.base)))
            .await?;
        serde_json::from_value(body).context("the drill service's list of drills")
    }

    /// Starts drill `id` now; the run as recorded (running, refused, or the
    /// one already started for this second).
    pub async fn start(&self, id: &str, ignore_window: bool) -> anyhow::Result<DrillRun> {
        let request = self
            .client
            .post(format!("{}/drills/{id}/run", self.base))
            .json(&RunRequest { ignore_window });
        let (_, body) = self.call(request).await?;
        let run = if body["duplicate"] == true {
            &body["run"]
        } else {
            &body
        };
        serde_json::from_value(run.clone()).context("the drill service's run record")
    }

    /// Run `id` as recorded now.
    pub async fn run(&self, id: &str) -> anyhow::Result<DrillRun> {
        let (_, body) = self
            .call(self.client.get(format!("{}/runs/{id}", self.base)))
            .await?;
        serde_json::from_value(body).context("the drill service's run record")
    }

    /// Asks run `id` to stop.
    pub async fn abort(&self, id: &str, reason: &str) -> anyhow::Result<DrillRun> {
        let request = self
            .client
            .post(format!("{}/runs/{id}/abort", self.base))
            .json(&serde_json::json!({ "reason": reason }));
        let (_, body) = self.call(request).await?;
        serde_json::from_value(body).context("the drill service's run record")
    }

    /// Follows run `id` until it ends, printing each new step as it comes
    /// (unless `quiet`); the run as it ended.
    pub async fn follow(&self, id: &str, quiet: bool) -> anyhow::Result<DrillRun> {
        let mut printed = BTreeSet::new();
        let spinner = progress::spinner(format!("drill {id}"));
        loop {
            let run = match self.run(id).await {
                Ok(run) => run,
                Err(error) => {
                    spinner.finish_and_clear();
                    return Err(error);
                }
            };
            if !quiet {
                for step in &run.steps {
                    if printed.insert((step.at, step.what.clone(), step.detail.clone())) {
                        spinner.suspend(|| {
                            println!(
                                "  {}  {:<22} {}",
                                step.at.format("%H:%M:%S%.3f"),
                                step.what,
                                step.detail
                            );
                        });
                    }
                }
            }
            if let Some(step) = run.steps.last() {
                spinner.set_message(format!("drill {id}: {}", step.what));
            }
            if run.state.is_finished() {
                spinner.finish_and_clear();
                return Ok(run);
            }
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
    }

    /// Where the report of run `id` is kept locally, written from the
    /// service's rendering when the file is missing.
    pub async fn report_file(&self, id: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(REPORTS_DIR).join(format!("{id}.html"));
        if !path.exists() {
            let response = self
                .client
                .get(format!("{}/runs/{id}/report", self.base))
                .send()
                .await
                .with_context(|| format!("the drill service at {} does not answer", self.base))?;
            let status = response.status();
            let html = response.text().await.context("reading the report")?;
            anyhow::ensure!(
                status.is_success(),
                "the drill service answered {status}: {html}"
            );
            std::fs::create_dir_all(self.dir.join(REPORTS_DIR))
                .and_then(|()| std::fs::write(&path, html))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(path)
    }
}

/// `lifeboat drill list`.
pub async fn list(service: &DrillService, json: bool) -> anyhow::Result<bool> {
    let drills = service.drills().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&drills)?);
    } else if drills.is_empty() {
        println!("no drills declared: add them under `drills:` in the topology (docs/drills.md)");
    } else {
        print!("{}", drill_table(&drills));
    }
    Ok(true)
}

/// `lifeboat drill run ID`: starts it, follows it to its end unless
/// `detach`, prints its targets and its report's path; whether it passed
/// (or, detached, started).
pub async fn run(
    service: &DrillService,
    id: &str,
    ignore_window: bool,
    detach: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let started = service.start(id, ignore_window).await?;
    if !json {
        println!("drill {id}: run {} ({:?})", started.id, started.state);
    }
    if detach && !started.state.is_finished() {
        if json {
            println!("{}", serde_json::to_string_pretty(&started)?);
        }
        return Ok(true);
    }
    let run = service.follow(&started.id, json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print!("{}", summary(&run));
        if run.report.is_some() {
            println!(
                "  report: {}",
                service.report_file(&run.id).await?.display()
            );
        }
    }
    Ok(run.state == RunState::Passed)
}

/// The end of a run as a person reads it: its verdict, why, and each
/// target with what was measured.
pub fn summary(run: &DrillRun) -> String {
    let mut text = format!("  {}: {}\n", run.id, run.state.verdict());
    for reason in &run.reasons {
        text.push_str(&format!("    because: {reason}\n"));
    }
    for check in &run.checks {
        text.push_str(&format!(
            "    {} {:<26} {} (target {})\n",
            if check.held { "✓" } else { "✗" },
            check.name,
            check.measured,
            check.target
        ));
    }
    text
}

/// `lifeboat drill abort RUN`.
pub async fn abort(service: &DrillService, id: &str, reason: &str) -> anyhow::Result<bool> {
    let run = service.abort(id, reason).await?;
    println!(
        "abort asked of run {}; it stops and cleans up at its next look",
        run.id
    );
    Ok(true)
}

/// `lifeboat drill report RUN [--open]`: prints the report's path, and
/// opens it in the browser when asked.
pub async fn report(service: &DrillService, id: &str, open: bool) -> anyhow::Result<bool> {
    let path = service.report_file(id).await?;
    println!("{}", path.display());
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        std::process::Command::new(opener)
            .arg(&path)
            .spawn()
            .with_context(|| format!("opening {} with {opener}", path.display()))?;
    }
    Ok(true)
}
