use lifeboat_pages::report::render;
use lifeboat_shared::records::drill_run::*;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::topology::DrillKind;

use super::*;

#[path = "../../../../pages/tests/fixtures/mod.rs"]
#[allow(
    dead_code,
    reason = "the report's fixtures: saving needs only two of them"
)]
mod fixtures;

#[tokio::test]
async fn a_report_is_saved_whole_in_a_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let run = fixtures::passed_region_outage();
    let sink = ReportSink::Directory(dir.path().join("reports"));
    let html = render(&run, None);
    let location = sink.save(&run, &html).await.expect("saved");
    let path = dir.path().join("reports").join(format!("{}.html", run.id));
    assert_eq!(location, path.display().to_string());
    assert_eq!(std::fs::read_to_string(&path).expect("the file"), html);
    // Saved again, it replaces the first whole and leaves no temporary.
    sink.save(&run, "<!DOCTYPE html><p>again</p>")
        .await
        .expect("saved again");
    assert_eq!(
        std::fs::read_to_string(&path).expect("the file"),
        "<!DOCTYPE html><p>again</p>"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .expect("listed")
        .collect();
    assert_eq!(files.len(), 1);

    let mut bad = run.clone();
    for id in ["../escape", ".hidden", "", "a\\b"] {
        bad.id = id.to_string();
        let error = sink.save(&bad, &html).await.expect_err("refused");
        assert!(
            matches!(error, ReportError::InvalidRunId { .. }),
            "{id}: {error}"
        );
    }
}

#[tokio::test]
async fn a_report_is_saved_in_the_reports_bucket() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = LocalStore::open(dir.path()).await.expect("a store");
    store
        .create_bucket("lifeboat-reports", "us-central1")
        .await
        .expect("a bucket");
    let run = fixtures::failed_restore();
    let html = render(&run, None);
    let sink = ReportSink::Bucket {
        storage: Arc::new(store.clone()),
        bucket: "lifeboat-reports".to_string(),
    };
    let location = sink.save(&run, &html).await.expect("saved");
    assert_eq!(
        location,
        format!("gs://lifeboat-reports/reports/{}.html", run.id)
    );
    let object = ObjectRef::new("lifeboat-reports", format!("reports/{}.html", run.id));
    let meta = store.head(&object).await.expect("the object");
    assert_eq!(meta.size, html.len() as u64);
    assert_eq!(
        meta.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );

    let missing = ReportSink::Bucket {
        storage: Arc::new(store),
        bucket: "no-such-bucket".to_string(),
    };
    let error = missing.save(&run, &html).await.expect_err("no bucket");
    assert!(
        error
            .to_string()
            .contains("gs://no-such-bucket/reports/daily-restore--20261208T100000Z.html"),
        "{error}"
    );
}
