//! Logging and tracing for every Lifeboat process.
//!
//! On Cloud Run, logs are JSON lines on stdout in the shape Cloud Logging
//! reads (severity, source location, spans) via `tracing-stackdriver`. Every
//! line carries `serviceContext.service`, and, when `GOOGLE_CLOUD_PROJECT` is
//! set and the line belongs to a request span carrying a `trace_id` (see
//! [`crate::server`]), `logging.googleapis.com/trace`, so the console groups
//! a request's logs under the caller's trace. Locally, `LIFEBOAT_LOG=pretty`
//! prints human-readable lines instead. `RUST_LOG` filters (default `info`).

use std::io::{self, Write};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The variable that selects the human-readable format (`pretty`).
pub const FORMAT_VARIABLE: &str = "LIFEBOAT_LOG";
/// The variable naming the project that traces are recorded in.
pub const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

/// Installs the global subscriber for `service_name`. Returns `false`, and
/// changes nothing, when one is already installed, so tests and a CLI that
/// mounts several services may call it more than once.
pub fn init(service_name: &str) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let pretty = std::env::var(FORMAT_VARIABLE).is_ok_and(|format| format == "pretty");
    let registry = tracing_subscriber::registry().with(filter);
    if pretty {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
            .is_ok()
    } else {
        let writer = CloudLoggingWriter::new(
            service_name,
            std::env::var(PROJECT_VARIABLE)
                .ok()
                .filter(|p| !p.is_empty()),
        );
        registry
            .with(tracing_stackdriver::layer().with_writer(writer))
            .try_init()
            .is_ok()
    }
}

/// Writes each JSON log line to stdout after adding the fields Cloud Logging
/// reads that `tracing-stackdriver` leaves out without OpenTelemetry: the
/// service name and the trace of the enclosing request span.
#[derive(Debug, Clone)]
pub struct CloudLoggingWriter {
    /// The service every line is attributed to.
    service: Arc<str>,
    /// The project traces live in; no trace field without it.
    project: Option<Arc<str>>,
}

impl CloudLoggingWriter {
    /// A writer for `service`, linking traces in `project` when given.
    pub fn new(service: &str, project: Option<String>) -> Self {
        Self {
            service: service.into(),
            project: project.map(Into::into),
        }
    }

    /// Adds `serviceContext` and, when a span of the line carries a
    /// `trace_id`, `logging.googleapis.com/trace` (and `trace_sampled`).
    /// Lines that are not JSON objects are left as they are.
    pub fn enrich(&self, line: &[u8]) -> Vec<u8> {
        let Ok(Value::Object(mut entry)) = serde_json::from_slice::<Value>(line) else {
            return line.to_vec();
        };
        entry.insert(
            "serviceContext".to_owned(),
            json!({ "service": &*self.service }),
        );
        if let Some(project) = &self.project
            && let Some(span) = innermost_traced_span(&entry)
            && let Some(Value::String(trace_id)) = span.get("trace_id")
        {
            let sampled = span.get("trace_sampled") == Some(&Value::Bool(true));
            entry.insert(
                "logging.googleapis.com/trace".to_owned(),
                Value::String(format!("projects/{project}/traces/{trace_id}")),
            );
            entry.insert(
                "logging.googleapis.com/trace_sampled".to_owned(),
                Value::Bool(sampled),
            );
        }
        let mut enriched = serde_json::to_vec(&entry).unwrap_or_else(|_| line.to_vec());
        enriched.push(b'\n');
        enriched
    }
}

/// The innermost span of a line that has a `trace_id` field.
fn innermost_traced_span(entry: &Map<String, Value>) -> Option<&Map<String, Value>> {
    entry
        .get("spans")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_object)
        .find(|span| span.get("trace_id").is_some_and(Value::is_string))
}

impl<'a> MakeWriter<'a> for CloudLoggingWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            target: self.clone(),
            buffer: Vec::new(),
        }
    }
}

/// Collects one formatted event and writes it, enriched, to stdout when
/// dropped (the formatter writes each event through a fresh writer).
#[derive(Debug)]
pub struct LineWriter {
    /// Where the line goes and what is added to it.
    target: CloudLoggingWriter,
    /// The event's bytes so far.
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = self.target.enrich(&self.buffer);
        // A log line that cannot be written has nowhere to be reported.
        let _ = io::stdout().lock().write_all(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_harmless() {
        // Installs the subscriber, unless another test already did.
        init("telemetry-test");
        assert!(!init("telemetry-test"), "the second call changes nothing");
    }

    #[test]
    fn lines_get_the_service_and_the_trace_of_their_request() {
        let writer = CloudLoggingWriter::new("failover", Some("ml-prod".to_owned()));
        let line = br#"{"severity":"INFO","message":"hi","spans":[{"name":"request","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","trace_sampled":true}]}"#;
        let entry: Value = serde_json::from_slice(&writer.enrich(line)).expect("JSON");
        assert_eq!(entry["serviceContext"]["service"], "failover");
        assert_eq!(
            entry["logging.googleapis.com/trace"],
            "projects/ml-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(entry["logging.googleapis.com/trace_sampled"], true);
        assert_eq!(entry["message"], "hi");
    }

    #[test]
    fn no_trace_without_a_project_or_a_traced_span() {
        let untraced = br#"{"message":"hi","spans":[{"name":"request"}]}"#;
        let with_project = CloudLoggingWriter::new("drill", Some("ml-prod".to_owned()));
        let entry: Value = serde_json::from_slice(&with_project.enrich(untraced)).expect("JSON");
        assert!(entry.get("logging.googleapis.com/trace").is_none());

        let traced = br#"{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}]}"#;
        let no_project = CloudLoggingWriter::new("drill", None);
        let entry: Value = serde_json::from_slice(&no_project.enrich(traced)).expect("JSON");
        assert!(entry.get("logging.googleapis.com/trace").is_none());
        assert_eq!(entry["serviceContext"]["service"], "drill");

        assert_eq!(no_project.enrich(b"not json\n"), b"not json\n");
    }
}
