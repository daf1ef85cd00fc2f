//! Every fixture under `tests/fixtures/events/` parses into the expected
//! event, every malformed variant into an error naming its problem, and the
//! extractor hands both to the handler through a real axum router.

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use chrono::{DateTime, TimeZone, Utc};
use cloudevents::AttributesReader;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;

/// The directory of the event fixtures, shared with the cross-crate tests.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/events");

/// A fixture as a request: files with `headers` and `body` are binary-mode
/// or scheduler requests; others are JSON bodies, structured CloudEvents
/// when they have a `specversion`.
fn fixture(name: &str) -> (HeaderMap, Vec<u8>) {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut headers = HeaderMap::new();
    if let (Some(Value::Object(given)), Some(body)) = (value.get("headers"), value.get("body")) {
        for (name, header) in given {
            let header = header.as_str().expect("header values are strings");
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(header).expect("header value"),
            );
        }
        return (headers, body.to_string().into_bytes());
    }
    let content_type = if value.get("specversion").is_some() {
        "application/cloudevents+json; charset=utf-8"
    } else {
        "application/json"
    };
    headers.insert("content-type", HeaderValue::from_static(content_type));
    (headers, text.into_bytes())
}

/// Parses a fixture, failing the test with the error if it does not parse.
fn parse_fixture(name: &str) -> InboundEvent {
    let (headers, body) = fixture(name);
    parse(&headers, &body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A UTC time from an RFC 3339 string.
fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid test time")
        .with_timezone(&Utc)
}

/// Asserts the object is the checkpoint shard of the storage fixtures.
fn assert_checkpoint_shard(object: &StorageObject) {
    assert_eq!(object.bucket, "lifeboat-ckpt-us-central1");
    assert_eq!(
        object.name,
        "runs/llama-ft/step-1200/shard-00000-of-00004.safetensors"
    );
    assert_eq!(object.size, 11);
    assert_eq!(object.crc32c, crc32c::crc32c(b"hello world"));
    assert_eq!(object.metageneration, Some(1));
    assert_eq!(
        object.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(object.storage_class.as_deref(), Some("STANDARD"));
    assert_eq!(
        object.metadata.get("lifeboat-step").map(String::as_str),
        Some("1200")
    );
    assert_eq!(object.time_created, Some(time("2024-11-25T16:00:00.123Z")));
}

#[test]
fn storage_finalized_in_binary_mode() {
    let InboundEvent::ObjectFinalized { context, object } =
        parse_fixture("storage_finalized_binary.json")
    else {
        panic!("expected ObjectFinalized");
    };
    assert_eq!(context.id, "12418829374823951");
    assert_eq!(
        context.source,
        "//storage.googleapis.com/projects/_/buckets/lifeboat-ckpt-us-central1"
    );
    assert_eq!(context.time, time("2024-11-25T16:00:00.123456Z"));
    let trace = context.trace.expect("traceparent");
    assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(trace.span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert!(trace.sampled);
    assert_checkpoint_shard(&object);
    assert_eq!(object.generation, 1_732_550_400_123_456);
}

#[test]
fn storage_deleted_in_structured_mode() {
    let InboundEvent::ObjectDeleted { context, object } =
        parse_fixture("storage_deleted_structured.json")
    else {
        panic!("expected ObjectDeleted");
    };
    assert_eq!(context.id, "12418829374829999");
    assert_eq!(context.time, time("2024-11-25T16:05:00.5Z"));
    assert_eq!(context.trace, None);
    assert_checkpoint_shard(&object);
    assert_eq!(object.generation, 1_732_550_300_000_000);
}

/// Modelled on the shape of Google's published `StorageObjectData` samples
/// (int64 fields as strings, as the JSON API renders them).
#[test]
fn storage_finalized_in_structured_mode() {
    let InboundEvent::ObjectFinalized { context, object } =
        parse_fixture("storage_finalized_structured.json")
    else {
        panic!("expected ObjectFinalized");
    };
    assert_eq!(context.id, "9031746628301144");
    assert_eq!(context.time, time("2024-11-25T17:12:40.618Z"));
    assert_eq!(object.bucket, "ml-prod-datasets");
    assert_eq!(object.name, "clickstream/2024-11-25/part-0007.parquet");
    assert_eq!(object.generation, 1_732_554_760_618_204);
    assert_eq!(object.metageneration, Some(1));
    assert_eq!(object.size, 36);
    assert_eq!(object.crc32c, 0x86a4_86d2);
    assert_eq!(object.storage_class.as_deref(), Some("STANDARD"));
}

/// Modelled on the shape of Google's published "complex" `StorageObjectData`
/// sample: int64 fields as JSON numbers, a composite object (no MD5), holds,
/// customer encryption and `timeDeleted`.
#[test]
fn storage_deleted_in_binary_mode() {
    let InboundEvent::ObjectDeleted { context, object } =
        parse_fixture("storage_deleted_binary.json")
    else {
        panic!("expected ObjectDeleted");
    };
    assert_eq!(context.id, "9031746628305521");
    assert_eq!(context.time, time("2024-11-25T17:30:02.104Z"));
    assert_eq!(object.name, "clickstream/2024-11-24/merged.parquet");
    assert_eq!(object.generation, 1_732_468_200_331_907);
    assert_eq!(object.metageneration, Some(3));
    assert_eq!(object.size, 734_003_200);
    assert_eq!(
        object.metadata.get("pipeline").map(String::as_str),
        Some("clickstream-merge")
    );
}

#[test]
fn audit_log_of_a_vertex_model_upload() {
    let InboundEvent::AuditLog { context, entry } =
        parse_fixture("audit_log_upload_model_binary.json")
    else {
        panic!("expected AuditLog");
    };
    assert_eq!(
        context.source,
        "//cloudaudit.googleapis.com/projects/ml-prod/logs/activity"
    );
    let trace = context.trace.expect("X-Cloud-Trace-Context");
    assert_eq!(trace.trace_id, "105445aa7843bc8bf206b12000100000");
    assert_eq!(trace.span_id.as_deref(), Some("0000000000000001"));
    assert!(trace.sampled);
    assert_eq!(entry.service_name, "aiplatform.googleapis.com");
    assert_eq!(
        entry.method_name,
        "google.cloud.aiplatform.v1.ModelService.UploadModel"
    );
    assert_eq!(
        entry.resource_name,
        "projects/ml-prod/locations/us-central1/models/fraud-scorer"
    );
    assert_eq!(
        entry.principal_email.as_deref(),
        Some("trainer@ml-prod.iam.gserviceaccount.com")
    );
    assert!(entry.succeeded());
    assert_eq!(entry.resource_type.as_deref(), Some("audited_resource"));
    let operation = entry.operation.as_ref().expect("long-running operation");
    assert!(operation.first && !operation.last);
    let request = entry.request.as_ref().expect("request");
    assert_eq!(
        request["model"]["artifactUri"],
        json!("gs://ml-prod-models/fraud-scorer/v7/")
    );
    assert_eq!(entry.bigquery, None);
    assert_eq!(
        entry.uploaded_model(),
        Some(UploadedModel {
            project: "ml-prod".to_owned(),
            region: "us-central1".to_owned(),
            model: "fraud-scorer".to_owned(),
            version: None,
        })
    );
}

/// A first upload targets the location (`parent`), not a model: the model
/// and its version come from the `UploadModelResponse`.
#[test]
fn audit_log_of_a_first_vertex_model_upload() {
    let InboundEvent::AuditLog { entry, .. } =
        parse_fixture("audit_log_upload_model_first_structured.json")
    else {
        panic!("expected AuditLog");
    };
    assert_eq!(
        entry.resource_name,
        "projects/ml-prod/locations/europe-west4"
    );
    assert!(entry.operation.as_ref().is_some_and(|op| op.last));
    assert_eq!(
        entry.uploaded_model(),
        Some(UploadedModel {
            project: "204817365521".to_owned(),
            region: "europe-west4".to_owned(),
            model: "6630104472913281024".to_owned(),
            version: Some("1".to_owned()),
        })
    );
}

/// Every place an `UploadModel` entry may name its model, in the order
/// [`AuditLogEntry::uploaded_model`] looks.
#[test]
fn uploaded_model_from_each_place_an_entry_names_it() {
    let InboundEvent::AuditLog { entry, .. } =
        parse_fixture("audit_log_upload_model_first_structured.json")
    else {
        panic!("expected AuditLog");
    };
    let location = "projects/ml-prod/locations/europe-west4".to_owned();
    let model_of = |edit: &dyn Fn(&mut AuditLogEntry)| {
        let mut entry = (*entry).clone();
        edit(&mut entry);
        entry.uploaded_model().map(|m| (m.model, m.version))
    };
    let some =
        |model: &str, version: Option<&str>| Some((model.to_owned(), version.map(str::to_owned)));
    // A new version: the resource names the model, and may name the version.
    assert_eq!(
        model_of(&|e| e.resource_name = format!("{location}/models/m7@3")),
        some("m7", Some("3"))
    );
    // The first entry of a new version: no response yet, `parentModel` set.
    assert_eq!(
        model_of(&|e| {
            e.response = None;
            e.request =
                Some(json!({"parent": location, "parentModel": format!("{location}/models/m7")}));
        }),
        some("m7", None)
    );
    // A first upload with a chosen id.
    assert_eq!(
        model_of(&|e| {
            e.response = None;
            e.request = Some(json!({"parent": location, "modelId": "churn"}));
        }),
        some("churn", None)
    );
    // A first upload's first entry: only the operation names the model.
    assert_eq!(
        model_of(&|e| {
            e.request = None;
            e.response = Some(json!({"name": format!("{location}/models/42/operations/9")}));
        }),
        some("42", None)
    );
    // Nothing names a model: the operation's last entry will.
    assert_eq!(
        model_of(&|e| {
            e.request = None;
            e.response = None;
            e.operation = None;
        }),
        None
    );
    assert_eq!(
        UploadedModel::from_resource_name("projects/p/locations/l"),
        None
    );
    assert_eq!(
        UploadedModel::from_resource_name("projects//locations/l/models/m"),
        None
    );
}

#[test]
fn audit_log_of_a_bigquery_table_change() {
    let InboundEvent::AuditLog { entry, .. } = parse_fixture("audit_log_bigquery_structured.json")
    else {
        panic!("expected AuditLog");
    };
    let change = entry.bigquery.as_ref().expect("a table change");
    assert_eq!(
        change.table,
        BigQueryTable {
            project: "ml-prod".into(),
            dataset: "features".into(),
            table: "transactions".into(),
        }
    );
    assert_eq!(change.kind, TableChangeKind::DataChanged);
    assert_eq!(change.reason.as_deref(), Some("QUERY"));
    assert_eq!(
        change.job_name.as_deref(),
        Some("projects/ml-prod/jobs/bquxjob_5a1b2c3d_1935c0ffee0")
    );
}

#[test]
fn plain_pubsub_message() {
    let InboundEvent::Message { context, message } = parse_fixture("pubsub_push_plain.json") else {
        panic!("expected Message");
    };
    assert_eq!(context.id, "2070443601311540");
    assert_eq!(
        context.source,
        "projects/ml-prod/subscriptions/lifeboat-drill-push"
    );
    assert_eq!(context.time, time("2024-11-25T16:30:00.001Z"));
    assert_eq!(
        context.trace.map(|t| t.trace_id).as_deref(),
        Some("7d3efb1b173fecfa2c4e1c7c5d5e6f70"),
        "the publisher's trace, carried by Pub/Sub"
    );
    assert_eq!(message.data, br#"{"job": "reconcile"}"#);
    assert_eq!(
        message.attributes.get("origin").map(String::as_str),
        Some("scheduler")
    );
}

#[test]
fn storage_notification_over_pubsub() {
    let InboundEvent::ObjectFinalized { context, object } =
        parse_fixture("pubsub_storage_notification.json")
    else {
        panic!("expected ObjectFinalized");
    };
    assert_eq!(context.id, "9310481629412837");
    assert_eq!(
        context.source,
        "//storage.googleapis.com/projects/_/buckets/lifeboat-ckpt-us-central1"
    );
    assert_checkpoint_shard(&object);
}

#[test]
fn eventarc_pubsub_event_carrying_a_storage_notification() {
    let InboundEvent::ObjectDeleted { context, object } =
        parse_fixture("eventarc_pubsub_published_binary.json")
    else {
        panic!("expected ObjectDeleted");
    };
    assert_eq!(context.id, "9310481629419999");
    assert_eq!(context.time, time("2024-11-25T16:07:00.2Z"));
    let trace = context.trace.expect("traceparent");
    assert_eq!(trace.trace_id, "5c9fd0f7b1b84e5e9d1c1fcb47d7f8a0");
    assert!(!trace.sampled);
    assert_checkpoint_shard(&object);
}

#[test]
fn cloudevent_in_the_pubsub_binding() {
    let InboundEvent::Other { context, event } = parse_fixture("pubsub_cloudevent_binding.json")
    else {
        panic!("expected Other");
    };
    assert_eq!(context.id, "7f4c2a1e-9b1d-4a8f-b0e6-1f2d3c4b5a69");
    assert_eq!(context.source, "//lifeboat/checkpoint-fanout");
    assert_eq!(context.time, time("2024-11-25T16:02:10.5Z"));
    assert_eq!(
        context.trace.map(|t| t.trace_id).as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c"),
        "the trace comes from the event's traceparent extension"
    );
    assert_eq!(event.ty(), "dev.lifeboat.checkpoint.committed");
    assert_eq!(event.datacontenttype(), Some("application/json"));
}

#[test]
fn monitoring_incident_by_webhook() {
    let InboundEvent::Incident { context, incident } =
        parse_fixture("monitoring_incident_webhook.json")
    else {
        panic!("expected Incident");
    };
    assert_eq!(context.id, "0.opqiw61fsv7p/open");
    assert_eq!(
        context.source,
        "//monitoring.googleapis.com/projects/ml-prod"
    );
    let started = Utc.timestamp_opt(1_732_552_200, 0).single();
    assert_eq!(Some(context.time), started);
    assert_eq!(incident.state, IncidentState::Open);
    assert_eq!(Some(incident.started_at), started);
    assert_eq!(incident.ended_at, None);
    assert_eq!(
        incident.resource_type.as_deref(),
        Some("aiplatform.googleapis.com/Endpoint")
    );
    assert_eq!(
        incident.resource_labels.get("location").map(String::as_str),
        Some("us-central1")
    );
    assert_eq!(
        incident
            .policy_user_labels
            .get("lifeboat-workload")
            .map(String::as_str),
        Some("fraud-scorer")
    );
    assert_eq!(incident.metric_display_name.as_deref(), Some("Error count"));
    assert_eq!(incident.threshold_value.as_deref(), Some("0.05"));
    assert_eq!(incident.observed_value.as_deref(), Some("0.412"));
    assert_eq!(
        incident.condition_name.as_deref(),
        Some("5xx rate above 5%")
    );
}

#[test]
fn monitoring_incident_over_pubsub() {
    let InboundEvent::Incident { context, incident } =
        parse_fixture("monitoring_incident_pubsub.json")
    else {
        panic!("expected Incident");
    };
    assert_eq!(context.id, "0.opqiw61fsv7p/closed");
    assert_eq!(incident.state, IncidentState::Closed);
    let ended = Utc.timestamp_opt(1_732_553_100, 0).single();
    assert_eq!(incident.ended_at, ended);
    assert_eq!(Some(context.time), ended);
}

#[test]
fn scheduler_tick() {
    let InboundEvent::SchedulerTick { context, tick } = parse_fixture("scheduler_tick.json") else {
        panic!("expected SchedulerTick");
    };
    assert_eq!(context.id, "lifeboat-drill-weekly@2024-11-25T03:00:00Z");
    assert_eq!(context.time, time("2024-11-25T03:00:00Z"));
    assert_eq!(tick.schedule_time, Some(context.time));
    assert!(context.trace.is_some());
    assert_eq!(tick.job, "lifeboat-drill-weekly");
    assert_eq!(tick.body, json!({"job": "reconcile"}));
}

/// A run started by hand ("force run") may come without
/// `X-CloudScheduler-ScheduleTime`: it is timed from when it is read.
#[test]
fn scheduler_manual_run_without_schedule_time() {
    let before = Utc::now();
    let InboundEvent::SchedulerTick { context, tick } = parse_fixture("scheduler_manual_run.json")
    else {
        panic!("expected SchedulerTick");
    };
    let after = Utc::now();
    assert_eq!(tick.job, "lifeboat-reconcile-hourly");
    assert_eq!(tick.schedule_time, None);
    assert!(
        before <= context.time && context.time <= after,
        "{context:?}"
    );
    assert!(
        context.id.starts_with("lifeboat-reconcile-hourly@"),
        "{}",
        context.id
    );
    assert_eq!(tick.body, json!({"job": "reconcile"}));
}

/// `time` is optional in CloudEvents 1.0: an event without it is accepted
/// and timed from its payload, or else from when it is read.
#[test]
fn cloudevent_without_time() {
    let (mut binary, body) = fixture("storage_finalized_binary.json");
    binary.remove("ce-time");
    let InboundEvent::ObjectFinalized { context, object } =
        parse(&binary, &body).unwrap_or_else(|e| panic!("no ce-time refused: {e}"))
    else {
        panic!("expected ObjectFinalized");
    };
    assert_eq!(Some(context.time), object.updated);

    let (mut binary, body) = fixture("audit_log_upload_model_binary.json");
    binary.remove("ce-time");
    let InboundEvent::AuditLog { context, entry } =
        parse(&binary, &body).unwrap_or_else(|e| panic!("no ce-time refused: {e}"))
    else {
        panic!("expected AuditLog");
    };
    assert_eq!(Some(context.time), entry.timestamp);

    for name in [
        "storage_deleted_structured.json",
        "cloudevent_unknown_type_structured.json",
    ] {
        let mut structured = fixture_json(name);
        structured.as_object_mut().map(|e| e.remove("time"));
        let before = Utc::now();
        let event = parse(
            &headers_with_type("application/cloudevents+json"),
            structured.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{name} without time refused: {e}"));
        let after = Utc::now();
        let time = event.context().time;
        assert!(before <= time && time <= after, "{name}: {time}");
    }
}

#[test]
fn unknown_cloudevent_type_is_other_not_an_error() {
    let event = parse_fixture("cloudevent_unknown_type_structured.json");
    assert_eq!(event.kind(), "other");
    assert_eq!(event.context().id, "8a4b3c2d-firestore");
}

/// Headers from name/value pairs.
fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).expect("test header"));
    }
    map
}

/// The JSON content type.
fn json_headers() -> HeaderMap {
    headers(&[("content-type", "application/json")])
}

/// A fixture's JSON value, to be broken by a test.
fn fixture_json(name: &str) -> Value {
    let (_, body) = fixture(name);
    serde_json::from_slice(&body).expect("fixture JSON")
}

/// The binary-mode storage fixture with its data edited.
fn storage_with(edit: impl FnOnce(&mut Value)) -> (HeaderMap, Vec<u8>) {
    let (headers, body) = fixture("storage_finalized_binary.json");
    let mut data: Value = serde_json::from_slice(&body).expect("fixture JSON");
    edit(&mut data);
    (headers, data.to_string().into_bytes())
}

/// A change that breaks a valid JSON payload.
type Edit = Box<dyn FnOnce(&mut Value)>;

/// Asserts `parse` rejects the input with an error whose message is `expected`.
fn assert_rejected(headers: &HeaderMap, body: &[u8], expected: &str) {
    match parse(headers, body) {
        Ok(event) => panic!("expected {expected:?}, parsed {event:?}"),
        Err(error) => assert_eq!(error.to_string(), expected),
    }
}

#[test]
fn storage_data_errors_name_the_field() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["generation"] = json!("abc")),
            r#"data.generation: expected an integer, got "abc""#,
        ),
        (
            Box::new(|d| d["generation"] = json!("99999999999999999999999")),
            r#"data.generation: integer out of range, got "99999999999999999999999""#,
        ),
        (
            Box::new(|d| d["generation"] = json!(1e22)),
            "data.generation: integer out of range, got 1e+22",
        ),
        (
            Box::new(|d| d["generation"] = json!(17.5)),
            "data.generation: expected an integer, got 17.5",
        ),
        (
            Box::new(|d| d["generation"] = json!("17.0")),
            r#"data.generation: expected an integer, got "17.0""#,
        ),
        (
            Box::new(|d| d["generation"] = json!(true)),
            "data.generation: expected an integer, got true",
        ),
        (
            Box::new(|d| d["metageneration"] = json!("")),
            r#"data.metageneration: expected an integer, got """#,
        ),
        (
            Box::new(|d| d["size"] = json!("-1")),
            r#"data.size: integer out of range, got "-1""#,
        ),
        (
            Box::new(|d| d["size"] = json!(-1)),
            "data.size: integer out of range, got -1",
        ),
        (
            Box::new(|d| d["size"] = json!(18_446_744_073_709_551_616_f64)),
            "data.size: integer out of range, got 1.8446744073709552e+19",
        ),
        (
            Box::new(|d| {
                d.as_object_mut().map(|o| o.remove("bucket"));
            }),
            "data.bucket: missing",
        ),
        (
            Box::new(|d| d["name"] = json!(["a"])),
            r#"data.name: expected a string, got ["a"]"#,
        ),
        (
            Box::new(|d| d["crc32c"] = json!("not base64!")),
            r#"data.crc32c: invalid base64: "not base64!""#,
        ),
        (
            Box::new(|d| d["crc32c"] = json!("AAAAAAA=")),
            "data.crc32c: expected base64 of 4 bytes (big-endian CRC32C), got 5 bytes",
        ),
        (
            Box::new(|d| d["timeCreated"] = json!("yesterday")),
            r#"data.timeCreated: expected an RFC 3339 timestamp, got "yesterday""#,
        ),
        (
            Box::new(|d| d["metadata"] = json!({"step": 12})),
            "data.metadata.step: expected a string, got 12",
        ),
        (
            Box::new(|d| *d = json!([1, 2])),
            "data: expected a JSON object, got [1,2]",
        ),
    ];
    for (edit, expected) in cases {
        let (headers, body) = storage_with(edit);
        assert_rejected(&headers, &body, expected);
    }
}

/// The proto3 JSON mapping lets a parser accept a 64-bit integer as a string
/// or as a number; some of Google's samples send numbers.
#[test]
fn storage_int64_fields_as_json_numbers() {
    let (headers, body) = storage_with(|d| {
        d["generation"] = json!(1_732_550_400_123_456_i64);
        d["metageneration"] = json!(1);
        d["size"] = json!(1_048_576);
    });
    let InboundEvent::ObjectFinalized { object, .. } =
        parse(&headers, &body).unwrap_or_else(|e| panic!("numbers refused: {e}"))
    else {
        panic!("not an object event");
    };
    assert_eq!(object.generation, 1_732_550_400_123_456);
    assert_eq!(object.metageneration, Some(1));
    assert_eq!(object.size, 1_048_576);

    let (headers, body) = storage_with(|d| {
        d["size"] = json!(1e3);
    });
    let InboundEvent::ObjectFinalized { object, .. } =
        parse(&headers, &body).unwrap_or_else(|e| panic!("exponent refused: {e}"))
    else {
        panic!("not an object event");
    };
    assert_eq!(object.size, 1000);
}

/// Google's published "complex" `StorageObjectData` sample fills the fields
/// Lifeboat does not read with placeholder text: an `md5Hash` that is not
/// base64, customer encryption, holds, a component count, `timeDeleted`.
/// None of them is checked, so the event is taken (replicas are verified by
/// CRC32C, which every object has).
#[test]
fn storage_fields_lifeboat_does_not_read_are_not_checked() {
    let (headers, body) = storage_with(|d| {
        d["md5Hash"] = json!("not an md5 at all");
        d["componentCount"] = json!(3);
        d["customerEncryption"] = json!({"encryptionAlgorithm": "AES256", "keySha256": "x"});
        d["eventBasedHold"] = json!(true);
        d["kmsKeyName"] = json!("some key");
        d["storageClass"] = json!("MULTI_REGIONAL");
        d["timeDeleted"] = json!("2026-11-25T16:00:00Z");
        d["size"] = json!(0);
        d["crc32c"] = json!("AAAAAA==");
    });
    let InboundEvent::ObjectFinalized { object, .. } =
        parse(&headers, &body).unwrap_or_else(|e| panic!("refused: {e}"))
    else {
        panic!("not an object event");
    };
    assert_eq!((object.size, object.crc32c), (0, 0));
    assert_eq!(object.storage_class.as_deref(), Some("MULTI_REGIONAL"));
}

#[test]
fn envelope_and_body_errors_name_the_field() {
    let json = json_headers();
    let mut envelope = fixture_json("pubsub_push_plain.json");
    envelope["message"]["data"] = json!("%%%");
    assert_rejected(
        &json,
        envelope.to_string().as_bytes(),
        "message.data: invalid base64 (Invalid symbol 37, offset 0.)",
    );

    let mut envelope = fixture_json("pubsub_push_plain.json");
    for key in ["messageId", "message_id"] {
        envelope["message"].as_object_mut().map(|m| m.remove(key));
    }
    assert_rejected(
        &json,
        envelope.to_string().as_bytes(),
        "message.messageId: missing",
    );

    let mut envelope = fixture_json("pubsub_push_plain.json");
    envelope["message"]["publishTime"] = json!(12);
    assert_rejected(
        &json,
        envelope.to_string().as_bytes(),
        "message.publishTime: expected a string, got 12",
    );

    let mut notification = fixture_json("pubsub_storage_notification.json");
    notification["message"]["data"] = json!("bm90IGpzb24="); // "not json"
    assert_rejected(
        &json,
        notification.to_string().as_bytes(),
        "message.data: expected the object resource as JSON (notification payloadFormat JSON_API_V1)",
    );

    let (headers, body) = fixture("eventarc_pubsub_published_binary.json");
    let mut published: Value = serde_json::from_slice(&body).expect("fixture JSON");
    published["message"]["data"] = json!("e30="); // "{}"
    assert_rejected(
        &headers,
        published.to_string().as_bytes(),
        "data.message.data.bucket: missing",
    );

    assert_rejected(&json, b"", "body: empty");
    assert_rejected(
        &json,
        b"{\"message\": ",
        "body: invalid JSON (EOF while parsing a value at line 1 column 12)",
    );
    assert_rejected(&json, b"[]", "body: expected a JSON object, got []");
    assert_rejected(
        &headers_with_type("text/plain"),
        b"{}",
        r#"content-type: expected application/json, application/cloudevents+json or CloudEvents binary mode (ce-* headers), got "text/plain""#,
    );
    assert_rejected(
        &json,
        b"{\"hello\": 1}",
        "body: not a CloudEvent, a Pub/Sub push envelope, a Monitoring incident nor a Cloud Scheduler job (a JSON object with neither \"message\" nor \"incident\")",
    );
}

/// Headers with only a content type.
fn headers_with_type(content_type: &str) -> HeaderMap {
    headers(&[("content-type", content_type)])
}

#[test]
fn cloudevent_errors_name_the_problem() {
    let (mut binary, body) = fixture("storage_finalized_binary.json");
    binary.remove("ce-id");
    let error = parse(&binary, &body).expect_err("no ce-id");
    assert!(
        error
            .to_string()
            .starts_with("ce-* headers: invalid CloudEvent"),
        "{error}"
    );
    assert!(error.to_string().contains("id"), "{error}");

    let (binary, _) = fixture("storage_finalized_binary.json");
    assert_rejected(&binary, b"", "data: missing");
    assert_rejected(
        &binary,
        b"{",
        "data: invalid JSON (EOF while parsing an object at line 1 column 1)",
    );

    let structured = headers_with_type("application/cloudevents+json");
    assert_rejected(&structured, b" ", "body: empty");
    let error = parse(&structured, b"{\"specversion\": \"1.0\"}").expect_err("no id");
    assert!(
        error.to_string().starts_with("body: invalid CloudEvent"),
        "{error}"
    );

    assert_rejected(
        &headers_with_type("application/cloudevents-batch+json"),
        b"[]",
        "content-type: CloudEvents batch mode is not supported; send one event per request",
    );

    let mut binding = fixture_json("pubsub_cloudevent_binding.json");
    binding["message"]["attributes"]
        .as_object_mut()
        .map(|a| a.remove("ce-type"));
    let error = parse(&json_headers(), binding.to_string().as_bytes()).expect_err("no ce-type");
    assert!(
        error
            .to_string()
            .starts_with("message.attributes: invalid CloudEvent in the Pub/Sub binding"),
        "{error}"
    );
}

#[test]
fn incident_and_scheduler_errors_name_the_field() {
    let json = json_headers();
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|n| n["version"] = json!("1.1")),
            r#"version: expected notification schema "1.2", got "1.1""#,
        ),
        (
            Box::new(|n| n["incident"]["state"] = json!("firing")),
            r#"incident.state: expected "open" or "closed", got "firing""#,
        ),
        (
            Box::new(|n| n["incident"]["started_at"] = json!("yesterday")),
            r#"incident.started_at: expected an integer, got "yesterday""#,
        ),
        (
            Box::new(|n| n["incident"]["started_at"] = json!(i64::MAX)),
            "incident.started_at: 9223372036854775807 is not a valid time in Unix seconds",
        ),
        (
            Box::new(|n| {
                n["incident"]
                    .as_object_mut()
                    .map(|i| i.remove("incident_id"));
            }),
            "incident.incident_id: missing",
        ),
    ];
    for (edit, expected) in cases {
        let mut notification = fixture_json("monitoring_incident_webhook.json");
        edit(&mut notification);
        assert_rejected(&json, notification.to_string().as_bytes(), expected);
    }

    let mut over_pubsub = fixture_json("monitoring_incident_pubsub.json");
    let closed = json!({"version": "1.2", "incident": {"incident_id": "x", "state": "closed"}});
    over_pubsub["message"]["data"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        closed.to_string()
    ));
    assert_rejected(
        &json,
        over_pubsub.to_string().as_bytes(),
        "message.data.incident.started_at: missing",
    );

    let (mut scheduler, body) = fixture("scheduler_tick.json");
    scheduler.remove("x-cloudscheduler-jobname");
    assert_rejected(&scheduler, &body, "x-cloudscheduler-jobname: missing");
    let (mut scheduler, body) = fixture("scheduler_tick.json");
    scheduler.insert(
        "x-cloudscheduler-scheduletime",
        HeaderValue::from_static("soon"),
    );
    assert_rejected(
        &scheduler,
        &body,
        r#"x-cloudscheduler-scheduletime: expected an RFC 3339 timestamp, got "soon""#,
    );
    let (scheduler, _) = fixture("scheduler_tick.json");
    assert_rejected(
        &scheduler,
        b"job=reconcile",
        "body: invalid JSON (expected value at line 1 column 1)",
    );
}

#[test]
fn trace_context_headers() {
    let trace =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid traceparent");
    assert!(!trace.sampled);
    for invalid in [
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
    ] {
        assert_eq!(TraceContext::from_traceparent(invalid), None, "{invalid:?}");
    }
    let trace = TraceContext::from_cloud_trace_context("105445aa7843bc8bf206b12000100000")
        .expect("trace id alone");
    assert_eq!(trace.span_id, None);
    assert!(!trace.sampled);
    assert_eq!(TraceContext::from_cloud_trace_context("nope/1;o=1"), None);
}

/// A router whose handler answers every delivery with the event's kind and
/// id, or with the id and type the request tells and the parse error.
fn router() -> Router {
    Router::new().route(
        "/",
        post(|delivery: Delivery| async move {
            match delivery.event {
                Ok(event) => format!("{} {}", event.kind(), event.context().id),
                Err(error) => format!(
                    "unreadable {} ({}): {error}",
                    delivery.received.id, delivery.received.event_type
                ),
            }
        }),
    )
}

/// POSTs a request to the router; returns the status and body.
async fn post_event(headers: HeaderMap, body: Vec<u8>) -> (StatusCode, String) {
    let mut request = Request::post("/")
        .body(Body::from(body))
        .expect("valid request");
    *request.headers_mut() = headers;
    let response = router().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("response body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn extractor_hands_typed_events_to_the_handler() {
    for (name, expected) in [
        (
            "storage_finalized_binary.json",
            "object_finalized 12418829374823951",
        ),
        (
            "storage_deleted_structured.json",
            "object_deleted 12418829374829999",
        ),
        (
            "monitoring_incident_webhook.json",
            "incident 0.opqiw61fsv7p/open",
        ),
        ("pubsub_push_plain.json", "pubsub_message 2070443601311540"),
        (
            "cloudevent_unknown_type_structured.json",
            "other 8a4b3c2d-firestore",
        ),
        (
            "scheduler_tick.json",
            "scheduler_tick lifeboat-drill-weekly@2024-11-25T03:00:00Z",
        ),
    ] {
        let (headers, body) = fixture(name);
        assert_eq!(
            post_event(headers, body).await,
            (StatusCode::OK, expected.to_owned()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn extractor_hands_unreadable_events_to_the_handler_with_what_they_tell() {
    let (headers, body) = storage_with(|d| d["generation"] = json!("abc"));
    assert_eq!(
        post_event(headers, body).await,
        (
            StatusCode::OK,
            r#"unreadable 12418829374823951 (google.cloud.storage.object.v1.finalized): data.generation: expected an integer, got "abc""#.to_owned()
        )
    );
    let (headers, body) = fixture("pubsub_push_plain.json");
    let mut envelope: Value = serde_json::from_slice(&body).expect("fixture JSON");
    envelope["message"]["data"] = json!("not base64 !");
    let (status, message) = post_event(headers, envelope.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        message.starts_with("unreadable 2070443601311540 (unreadable): message.data:"),
        "{message}"
    );
    let (status, message) = post_event(json_headers(), Vec::new()).await;
    assert_eq!(
        (status, message.as_str()),
        (
            StatusCode::OK,
            "unreadable body crc32c 00000000, 0 bytes (unreadable): body: empty"
        )
    );
}

#[tokio::test]
async fn extractor_stops_reading_oversized_bodies() {
    let body = vec![b' '; extract::MAX_BODY_BYTES + 1];
    let (status, message) = post_event(json_headers(), body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        message.ends_with(&format!(
            "body: larger than {} bytes",
            extract::MAX_BODY_BYTES
        )),
        "{message}"
    );
}

/// A small deterministic generator (xorshift) for the mutation test.
struct Xorshift(u64);

impl Xorshift {
    /// The next number below `bound` (which must not be 0).
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// A cheap stand-in for the fuzz target (`fuzz/fuzz_targets/events.rs`) that
/// runs with the unit tests: every fixture, mutated byte by byte, parses or
/// fails with an error, and never panics.
#[test]
fn parse_never_panics_on_mutated_fixtures() {
    let names = std::fs::read_dir(FIXTURES)
        .expect("fixtures directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok());
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let interesting = b"\"{}[]:,0123456789-+.eE\\/=ABZaz \n\x00\xff";
    for name in names {
        let (headers, body) = fixture(&name);
        for _ in 0..300 {
            let mut mutated = body.clone();
            for _ in 0..=random.below(8) {
                let at = random.below(mutated.len().max(1));
                match random.below(3) {
                    0 if !mutated.is_empty() => {
                        mutated.remove(at);
                    }
                    1 => mutated.insert(
                        at.min(mutated.len()),
                        interesting[random.below(interesting.len())],
                    ),
                    _ if !mutated.is_empty() => {
                        mutated[at] = interesting[random.below(interesting.len())];
                    }
                    _ => {}
                }
            }
            if let Err(error) = parse(&headers, &mutated) {
                assert!(!error.to_string().is_empty(), "{name}: {error:?}");
            }
        }
    }
}
