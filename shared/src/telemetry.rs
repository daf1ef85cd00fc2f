//! Logging and tracing for every Lifeboat process.
//!
//! On Cloud Run, logs are JSON lines on stdout in the shape Cloud Logging
//! reads (severity, source location, spans) via `tracing-stackdriver`. Every
//! line carries `serviceContext.service`, and, when `GOOGLE_CLOUD_PROJECT` is
//! set and the line belongs to a request span carrying a `trace_id` (see
//! [`crate::server`]), `logging.googleapis.com/trace`, so the console groups
//! a request's logs under the caller's trace. On a terminal, people read the
//! logs: one compact line per event instead (see [`LogFormat::choose`]).
//! `RUST_LOG` filters (default `info`).

use std::io::{self, IsTerminal as _, Write};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The variable that chooses the log format: `json` or `text`.
pub const FORMAT_VARIABLE: &str = "LIFEBOAT_LOG_FORMAT";
/// The variable Cloud Run sets in every service's environment.
pub const CLOUD_RUN_VARIABLE: &str = "K_SERVICE";
/// The variable naming the project that traces are recorded in.
pub const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, in the shape Cloud Logging reads.
    Json,
    /// One compact human-readable line per event.
    Text,
}

/// [`FORMAT_VARIABLE`] holds something other than a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{FORMAT_VARIABLE}={value:?} is not a log format: use json or text")]
pub struct UnknownLogFormat {
    /// The value found.
    pub value: String,
}

impl LogFormat {
    /// The format for a process: `requested` (the value of
    /// [`FORMAT_VARIABLE`], empty counting as unset) when given; else text
    /// when stdout is a terminal outside Cloud Run, since people read it;
    /// else JSON, which Cloud Logging and other collectors read.
    pub fn choose(
        stdout_is_terminal: bool,
        on_cloud_run: bool,
        requested: Option<&str>,
    ) -> Result<Self, UnknownLogFormat> {
        match requested.map(str::trim).filter(|value| !value.is_empty()) {
            Some(value) if value.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(value) if value.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(value) => Err(UnknownLogFormat {
                value: value.to_owned(),
            }),
            None if stdout_is_terminal && !on_cloud_run => Ok(Self::Text),
            None => Ok(Self::Json),
        }
    }

    /// The format for this process, from its stdout and environment.
    pub fn from_env() -> Result<Self, UnknownLogFormat> {
        Self::choose(
            io::stdout().is_terminal(),
            std::env::var_os(CLOUD_RUN_VARIABLE).is_some(),
            std::env::var(FORMAT_VARIABLE).ok().as_deref(),
        )
    }
}

/// Installs the global subscriber for `service_name`, in the format
/// [`LogFormat::from_env`] chooses. Returns `Ok(false)`, and changes
/// nothing, when one is already installed, so tests and a CLI that mounts
/// several services may call it more than once.
pub fn init(service_name: &str) -> Result<bool, UnknownLogFormat> {
    let format = LogFormat::from_env()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(text_layer(io::stdout, io::stdout().is_terminal()))
            .try_init()
            .is_ok(),
        LogFormat::Json => {
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
    };
    Ok(installed)
}

/// The human-readable layer: time, level, the event's message and fields
/// and its spans on one line, colored when `ansi`.
fn text_layer<S, W>(writer: W, ansi: bool) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .compact()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer)
}

/// Writes each JSON log line to stdout after adding the fields Cloud Logging
/// reads that `tracing-stackdriver` leaves out without OpenTelemetry: the
/// service name and the trace of the enclosing request span.
#[derive(Debug, Clone)]
pub struct CloudLoggingWriter {
    /// The service every line is attributed to, as a JSON string.
    service_json: Arc<str>,
    /// The project traces live in; no trace field without it.
    project: Option<Arc<str>>,
}

impl CloudLoggingWriter {
    /// A writer for `service`, linking traces in `project` when given.
    pub fn new(service: &str, project: Option<String>) -> Self {
        Self {
            service_json: Value::from(service).to_string().into(),
            project: project.map(Into::into),
        }
    }

    /// Adds `serviceContext` and, when a span of the line carries a
    /// `trace_id`, `logging.googleapis.com/trace` (and `trace_sampled`).
    /// Lines that are not JSON objects are left as they are. The fields are
    /// added to the line's text, which is parsed only when it names a trace:
    /// every request logs a line, and parsing and writing it again cost more
    /// than the rest of a gateway's forwarding.
    pub fn enrich(&self, line: &[u8]) -> Vec<u8> {
        let object = line.trim_ascii();
        let Some(fields) = object
            .strip_prefix(b"{")
            .and_then(|rest| rest.strip_suffix(b"}"))
        else {
            return line.to_vec();
        };
        let mut enriched = Vec::with_capacity(object.len() + 160);
        enriched.push(b'{');
        enriched.extend_from_slice(fields);
        if !fields.trim_ascii().is_empty() {
            enriched.push(b',');
        }
        enriched.extend_from_slice(br#""serviceContext":{"service":"#);
        enriched.extend_from_slice(self.service_json.as_bytes());
        enriched.push(b'}');
        if let Some(project) = &self.project
            && object.windows(10).any(|window| window == br#""trace_id""#)
            && let Ok(Value::Object(entry)) = serde_json::from_slice::<Value>(object)
            && let Some(span) = innermost_traced_span(&entry)
            && let Some(Value::String(trace_id)) = span.get("trace_id")
        {
            let sampled = span.get("trace_sampled") == Some(&Value::Bool(true));
            let trace = json!({
                "logging.googleapis.com/trace": format!("projects/{project}/traces/{trace_id}"),
                "logging.googleapis.com/trace_sampled": sampled,
            });
            let trace = trace.to_string();
            enriched.push(b',');
            enriched.extend_from_slice(&trace.as_bytes()[1..trace.len() - 1]);
        }
        enriched.extend_from_slice(b"}\n");
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
        init("telemetry-test").expect("the test runner's format");
        assert_eq!(
            init("telemetry-test"),
            Ok(false),
            "the second call changes nothing"
        );
    }

    #[test]
    fn people_get_text_and_collectors_get_json_unless_asked_otherwise() {
        use LogFormat::{Json, Text};
        // (stdout is a terminal, on Cloud Run, LIFEBOAT_LOG_FORMAT) -> format
        let cases = [
            (true, false, None, Text),
            (false, false, None, Json),
            (true, true, None, Json),
            (false, true, None, Json),
            (true, false, Some(""), Text),
            (true, false, Some("json"), Json),
            (false, true, Some("text"), Text),
            (false, false, Some("TEXT"), Text),
            (true, true, Some(" json "), Json),
        ];
        for (terminal, cloud_run, requested, expected) in cases {
            assert_eq!(
                LogFormat::choose(terminal, cloud_run, requested),
                Ok(expected),
                "terminal {terminal}, Cloud Run {cloud_run}, {requested:?}"
            );
        }
    }

    #[test]
    fn an_unknown_format_names_the_variable_and_the_formats() {
        let error = LogFormat::choose(true, false, Some("pretty")).expect_err("unknown");
        assert_eq!(error.value, "pretty");
        let message = error.to_string();
        for part in ["LIFEBOAT_LOG_FORMAT", "\"pretty\"", "json", "text"] {
            assert!(message.contains(part), "{message} names {part}");
        }
    }

    /// A writer into a buffer the test reads afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_lines_are_compact_lines_not_json() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(text_layer(move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("failover", workload = "fraud");
            let _entered = span.enter();
            tracing::warn!(region = "us-east1", "region failed its probes");
        });
        let output = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("UTF-8");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 1, "one line per event: {output}");
        let line = lines[0];
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "not JSON: {line}"
        );
        for part in [
            "WARN",
            "region failed its probes",
            "region=\"us-east1\"",
            "failover",
            "workload=\"fraud\"",
        ] {
            assert!(line.contains(part), "{line} holds {part}");
        }
        assert!(!line.contains('\u{1b}'), "no colors when not asked: {line}");
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

    #[test]
    fn an_enriched_line_is_the_line_with_the_added_fields_and_one_newline() {
        let writer = CloudLoggingWriter::new("gate\"way", Some("ml-prod".to_owned()));
        let line = br#"{"severity":"INFO","fields":{"status":200,"note":"}{"},"spans":[{"name":"request","trace_id":"abc","trace_sampled":false}]}"#;
        let mut given = line.to_vec();
        given.push(b'\n');
        let enriched = writer.enrich(&given);
        assert!(enriched.ends_with(b"}\n") && !enriched.ends_with(b"\n\n"));
        let mut expected: Value = serde_json::from_slice(line).expect("JSON");
        expected["serviceContext"] = json!({"service": "gate\"way"});
        expected["logging.googleapis.com/trace"] = json!("projects/ml-prod/traces/abc");
        expected["logging.googleapis.com/trace_sampled"] = json!(false);
        let entry: Value = serde_json::from_slice(&enriched).expect("JSON");
        assert_eq!(entry, expected);
        let empty: Value = serde_json::from_slice(&writer.enrich(b"{}\n")).expect("JSON");
        assert_eq!(empty, json!({"serviceContext": {"service": "gate\"way"}}));
    }
}
