//! The behaviour every [`Warehouse`] must have, as plain async functions that
//! panic with a precise message when a warehouse departs from it. Each
//! implementation's tests call [`run_all`] with a project and two dataset
//! ids of their own (created here, in two locations).

use serde_json::json;

use super::{Column, TableRef, Warehouse, WarehouseError};

/// Runs every check of the suite.
pub async fn run_all(warehouse: &dyn Warehouse, project: &str, source: &str, replica: &str) {
    datasets_and_tables(warehouse, project, source, replica).await;
    copy_replaces_the_destination(warehouse, project, source, replica).await;
    missing_tables_are_not_found(warehouse, project, source).await;
}

fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "id".to_string(),
            kind: "INTEGER".to_string(),
        },
        Column {
            name: "name".to_string(),
            kind: "STRING".to_string(),
        },
    ]
}

/// Datasets are created once in their location; tables list in id order
/// and count their rows.
pub async fn datasets_and_tables(
    warehouse: &dyn Warehouse,
    project: &str,
    source: &str,
    replica: &str,
) {
    for (dataset, location) in [(source, "us-central1"), (replica, "us-east1")] {
        for _ in 0..2 {
            warehouse
                .create_dataset(project, dataset, location)
                .await
                .unwrap_or_else(|e| panic!("create dataset {dataset}: {e}"));
        }
    }
    for id in ["b_table", "a_table"] {
        let table = TableRef::new(project, source, id);
        warehouse
            .create_table(&table, &columns())
            .await
            .unwrap_or_else(|e| panic!("create {table}: {e}"));
    }
    let tables = warehouse
        .list_tables(project, source)
        .await
        .unwrap_or_else(|e| panic!("list {source}: {e}"));
    assert_eq!(tables, ["a_table", "b_table"], "tables of {source}");
    let table = TableRef::new(project, source, "a_table");
    warehouse
        .insert_rows(
            &table,
            &[json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"})],
        )
        .await
        .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
    let meta = warehouse
        .table(&table)
        .await
        .unwrap_or_else(|e| panic!("get {table}: {e}"));
    assert_eq!(meta.num_rows, 2, "rows of {table}");
    let counted = warehouse
        .row_count(&table)
        .await
        .unwrap_or_else(|e| panic!("count rows of {table}: {e}"));
    assert_eq!(counted, 2, "counted rows of {table}");
}

/// A copy creates the destination with the source's rows, and a second copy
/// (of a source grown by one row) replaces them (WRITE_TRUNCATE) rather than
/// appending.
pub async fn copy_replaces_the_destination(
    warehouse: &dyn Warehouse,
    project: &str,
    source: &str,
    replica: &str,
) {
    let from = TableRef::new(project, source, "copied");
    let to = TableRef::new(project, replica, "copied");
    warehouse
        .create_table(&from, &columns())
        .await
        .unwrap_or_else(|e| panic!("create {from}: {e}"));
    warehouse
        .insert_rows(&from, &[json!({"id": 1, "name": "x"})])
        .await
        .unwrap_or_else(|e| panic!("insert into {from}: {e}"));
    for round in 1..=2 {
        if round == 2 {
            warehouse
                .insert_rows(&from, &[json!({"id": 2, "name": "y"})])
                .await
                .unwrap_or_else(|e| panic!("insert into {from}: {e}"));
        }
        warehouse
            .copy_table(&from, &to)
            .await
            .unwrap_or_else(|e| panic!("copy {from} -> {to} (round {round}): {e}"));
        let copied = warehouse
            .row_count(&to)
            .await
            .unwrap_or_else(|e| panic!("count rows of {to}: {e}"));
        assert_eq!(copied, round, "rows of {to} after copy {round}");
    }
}

/// A missing table or dataset is [`WarehouseError::NotFound`].
pub async fn missing_tables_are_not_found(warehouse: &dyn Warehouse, project: &str, source: &str) {
    let missing = TableRef::new(project, source, "no_such_table");
    match warehouse.table(&missing).await {
        Err(WarehouseError::NotFound { .. }) => {}
        other => panic!("{missing}: expected NotFound, got {other:?}"),
    }
    let elsewhere = TableRef::new(project, "no_such_dataset", "t");
    match warehouse.copy_table(&missing, &elsewhere).await {
        Err(WarehouseError::NotFound { .. } | WarehouseError::JobFailed { .. }) => {}
        other => panic!("copy of {missing}: expected NotFound or a failed job, got {other:?}"),
    }
}
