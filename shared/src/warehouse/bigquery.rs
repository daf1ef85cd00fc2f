//! BigQuery through its REST API (v2), over reqwest, reached through an
//! [`ApiEndpoint`] (production or bqemulator). Copies are copy jobs
//! (`jobs.insert` with `configuration.copy`, `WRITE_TRUNCATE`) polled until
//! they are done; every poll names the job's location, without which
//! BigQuery does not find a job in a single region.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{Column, TableMeta, TableRef, Warehouse, WarehouseError};
use crate::gcp::{ApiEndpoint, deadline};

/// How often a running job is polled.
const JOB_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a copy job may run before the copy counts as failed (transient).
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long, in milliseconds, `jobs.query` waits for the query before
/// answering that it is still running (then polled): well within the call's
/// own deadline.
const QUERY_WAIT_MS: u64 = 10_000;

/// BigQuery (or bqemulator) as a [`Warehouse`].
#[derive(Clone, Debug)]
pub struct BigQueryWarehouse {
    endpoint: ApiEndpoint,
    client: reqwest::Client,
    /// The project jobs run in (and are billed to).
    job_project: String,
    /// The deadline of each call.
    call_timeout: Duration,
}

impl BigQueryWarehouse {
    /// A warehouse reaching BigQuery at `endpoint`, running its jobs in
    /// `job_project`. The HTTP client is built once and shared by clones.
    pub fn new(endpoint: ApiEndpoint, job_project: impl Into<String>) -> Self {
        Self {
            endpoint,
            client: deadline::http_client(deadline::STALL_TIMEOUT),
            job_project: job_project.into(),
            call_timeout: deadline::CALL_TIMEOUT,
        }
    }

    /// The same warehouse giving each call `timeout` to answer (default
    /// [`deadline::CALL_TIMEOUT`]); past it the call fails as a transient
    /// [`WarehouseError::Backend`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn url(&self, project: &str, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}{path}",
            self.endpoint.base_url,
            encode(project)
        )
    }

    fn table_url(&self, table: &TableRef, suffix: &str) -> String {
        self.url(
            &table.project,
            &format!(
                "/datasets/{}/tables/{}{suffix}",
                encode(&table.dataset),
                encode(&table.table)
            ),
        )
    }

    /// Where the job that `answer` (the insert's or a poll's) is about
    /// runs: its `jobReference.location`, else the location of `dataset`,
    /// whose tables the job reads (BigQuery runs a job where its data is).
    /// Every poll needs it: BigQuery finds a job outside the US and EU
    /// multi-regions only with its location (a job in `europe-west1`
    /// polled without it is "not found").
    async fn job_location(
        &self,
        context: &str,
        answer: &serde_json::Value,
        (project, dataset): (&str, &str),
    ) -> Result<Option<String>, WarehouseError> {
        if let Some(location) = answer["jobReference"]["location"].as_str() {
            return Ok(Some(location.to_string()));
        }
        let request = self
            .client
            .get(self.url(project, &format!("/datasets/{}", encode(dataset))));
        let found = self
            .call(context, &format!("dataset {project}.{dataset}"), request)
            .await?;
        Ok(found["location"].as_str().map(str::to_string))
    }

    /// The GET that polls job `job_id` in `location`: `jobs.get` when
    /// `collection` is `jobs`, `jobs.getQueryResults` when it is `queries`.
    fn job_poll(&self, collection: &str, job_id: &str, location: Option<&str>) -> RequestBuilder {
        let poll = self.client.get(self.url(
            &self.job_project,
            &format!("/{collection}/{}", encode(job_id)),
        ));
        match location {
            Some(location) => poll.query(&[("location", location)]),
            None => poll,
        }
    }

    /// Authorizes and sends `request`; any answer but a 2xx becomes the
    /// error it means (404 about `what`).
    async fn call(
        &self,
        context: &str,
        what: &str,
        request: RequestBuilder,
    ) -> Result<serde_json::Value, WarehouseError> {
        let request = self
            .endpoint
            .credentials
            .authorize(request)
            .await
            .map_err(|e| backend(context, e))?;
        let response = request
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| backend(context, e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| backend(context, e))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| backend(context, e));
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(match status {
            StatusCode::NOT_FOUND => WarehouseError::NotFound {
                what: what.to_string(),
            },
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                backend(context, format!("HTTP {s}: {message}"))
            }
            s => WarehouseError::Rejected {
                context: context.to_string(),
                status: s.as_u16(),
                message,
            },
        })
    }
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

fn backend(
    context: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> WarehouseError {
    WarehouseError::Backend {
        context: context.to_string(),
        source: source.into(),
    }
}

/// A table resource, as far as it is read (int64 as strings).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableResource {
    last_modified_time: Option<String>,
    num_rows: Option<String>,
}

/// A job resource's status.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStatus {
    state: String,
    error_result: Option<serde_json::Value>,
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    async fn create_dataset(
        &self,
        project: &str,
        dataset: &str,
        location: &str,
    ) -> Result<(), WarehouseError> {
        let context = format!("create dataset {project}.{dataset} in {location}");
        let request = self
            .client
            .post(self.url(project, "/datasets"))
            .json(&json!({
                "datasetReference": { "projectId": project, "datasetId": dataset },
                "location": location,
            }));
        match self.call(&context, &context, request).await {
            Ok(_) | Err(WarehouseError::Rejected { status: 409, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn create_table(
        &self,
        table: &TableRef,
        columns: &[Column],
    ) -> Result<(), WarehouseError> {
        let context = format!("create table {table}");
        let url = self.url(
            &table.project,
            &format!("/datasets/{}/tables", encode(&table.dataset)),
        );
        let request = self.client.post(url).json(&json!({
            "tableReference": {
                "projectId": table.project, "datasetId": table.dataset, "tableId": table.table,
            },
            "schema": { "fields": columns },
        }));
        match self.call(&context, &table.to_string(), request).await {
            Ok(_) | Err(WarehouseError::Rejected { status: 409, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn insert_rows(
        &self,
        table: &TableRef,
        rows: &[serde_json::Value],
    ) -> Result<(), WarehouseError> {
        let context = format!("insert {} rows into {table}", rows.len());
        let rows: Vec<serde_json::Value> = rows.iter().map(|row| json!({ "json": row })).collect();
        let request = self
            .client
            .post(self.table_url(table, "/insertAll"))
            .json(&json!({ "rows": rows }));
        let answer = self.call(&context, &table.to_string(), request).await?;
        match answer["insertErrors"].as_array() {
            Some(errors) if !errors.is_empty() => Err(WarehouseError::JobFailed {
                context,
                message: serde_json::Value::Array(errors.clone()).to_string(),
            }),
            _ => Ok(()),
        }
    }

    async fn list_tables(
        &self,
        project: &str,
        dataset: &str,
    ) -> Result<Vec<String>, WarehouseError> {
        let context = format!("list tables of {project}.{dataset}");
        let mut tables = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut request = self
                .client
                .get(self.url(project, &format!("/datasets/{}/tables", encode(dataset))));
            if let Some(token) = &page_token {
                request = request.query(&[("pageToken", token)]);
            }
            let page = self
                .call(&context, &format!("dataset {project}.{dataset}"), request)
                .await?;
            for item in page["tables"].as_array().into_iter().flatten() {
                if let Some(id) = item["tableReference"]["tableId"].as_str() {
                    tables.push(id.to_string());
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => break,
            }
        }
        tables.sort();
        Ok(tables)
    }

    async fn table(&self, table: &TableRef) -> Result<TableMeta, WarehouseError> {
        let context = format!("get table {table}");
        let request = self.client.get(self.table_url(table, ""));
        let value = self.call(&context, &table.to_string(), request).await?;
        let resource: TableResource =
            serde_json::from_value(value).map_err(|e| backend(&context, e))?;
        let millis: i64 = resource
            .last_modified_time
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|e| backend(&context, e))?;
        let last_modified = DateTime::<Utc>::from_timestamp_millis(millis)
            .ok_or_else(|| backend(&context, format!("lastModifiedTime {millis} out of range")))?;
        let num_rows = resource
            .num_rows
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|e| backend(&context, e))?;
        Ok(TableMeta {
            table: table.clone(),
            last_modified,
            num_rows,
        })
    }

    async fn row_count(&self, table: &TableRef) -> Result<u64, WarehouseError> {
        let context = format!("count rows of {table}");
        if [&table.project, &table.dataset, &table.table]
            .iter()
            .any(|id| id.contains('`'))
        {
            return Err(WarehouseError::Rejected {
                context,
                status: 400,
                message: "a table id cannot hold a backtick".to_string(),
            });
        }
        let query = format!(
            "SELECT COUNT(*) FROM `{}.{}.{}`",
            table.project, table.dataset, table.table
        );
        let request = self
            .client
            .post(self.url(&self.job_project, "/queries"))
            .json(&json!({ "query": query, "useLegacySql": false, "timeoutMs": QUERY_WAIT_MS }));
        let mut answer = self.call(&context, &table.to_string(), request).await?;
        let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
        let mut location = None;
        while answer["jobComplete"].as_bool() == Some(false) {
            let job_id = answer["jobReference"]["jobId"]
                .as_str()
                .ok_or_else(|| backend(&context, "an incomplete query without a job id"))?
                .to_string();
            if tokio::time::Instant::now() >= deadline {
                return Err(backend(&context, format!("query {job_id} still running")));
            }
            if location.is_none() {
                let dataset = (table.project.as_str(), table.dataset.as_str());
                location = self.job_location(&context, &answer, dataset).await?;
            }
            tokio::time::sleep(JOB_POLL_INTERVAL).await;
            let poll = self.job_poll("queries", &job_id, location.as_deref());
            answer = self
                .call(&context, &format!("query {job_id}"), poll)
                .await?;
        }
        let count = &answer["rows"][0]["f"][0]["v"];
        count
            .as_str()
            .and_then(|text| text.parse().ok())
            .or_else(|| count.as_u64())
            .ok_or_else(|| backend(&context, format!("unreadable COUNT(*) answer: {count}")))
    }

    async fn copy_table(
        &self,
        source: &TableRef,
        destination: &TableRef,
    ) -> Result<(), WarehouseError> {
        let context = format!("copy {source} -> {destination}");
        let reference = |t: &TableRef| json!({ "projectId": t.project, "datasetId": t.dataset, "tableId": t.table });
        let job_id = format!("lifeboat_copy_{}", uuid::Uuid::new_v4().simple());
        let request = self
            .client
            .post(self.url(&self.job_project, "/jobs"))
            .json(&json!({
                "jobReference": { "projectId": self.job_project, "jobId": job_id },
                "configuration": { "copy": {
                    "sourceTable": reference(source),
                    "destinationTable": reference(destination),
                    "writeDisposition": "WRITE_TRUNCATE",
                    "createDisposition": "CREATE_IF_NEEDED",
                }},
            }));
        let mut job = self.call(&context, &source.to_string(), request).await?;
        let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
        let mut location = None;
        loop {
            let status: JobStatus =
                serde_json::from_value(job["status"].clone()).map_err(|e| backend(&context, e))?;
            if status.state == "DONE" {
                return match status.error_result {
                    None => Ok(()),
                    Some(error) => Err(WarehouseError::JobFailed {
                        context,
                        message: error["message"]
                            .as_str()
                            .map_or_else(|| error.to_string(), str::to_string),
                    }),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(backend(&context, format!("job {job_id} still running")));
            }
            if location.is_none() {
                let dataset = (source.project.as_str(), source.dataset.as_str());
                location = self.job_location(&context, &job, dataset).await?;
            }
            tokio::time::sleep(JOB_POLL_INTERVAL).await;
            let poll = self.job_poll("jobs", &job_id, location.as_deref());
            job = self.call(&context, &format!("job {job_id}"), poll).await?;
        }
    }
}

/// A BigQuery that accepts connections and never answers (a frozen
/// process, a half-open connection): each call fails at its deadline as a
/// transient error instead of waiting on.
#[cfg(test)]
mod silent_backend {
    use super::*;

    #[tokio::test]
    async fn a_call_to_a_silent_backend_fails_at_its_deadline() {
        // Bound and listening, never accepting: the kernel completes the
        // handshakes and nothing ever answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let warehouse =
            BigQueryWarehouse::new(ApiEndpoint::emulator(&format!("http://{address}")), "p")
                .with_call_timeout(Duration::from_millis(300));
        let table = TableRef::new("p", "d", "t");
        let answer = tokio::time::timeout(Duration::from_secs(30), warehouse.table(&table))
            .await
            .expect("the call ends at its deadline");
        let error = answer.expect_err("nothing answers");
        assert!(error.is_transient(), "not retried: {error}");
        drop(listener);
    }
}
