//! [`StateStore`] on one embedded redb file, for the local cloud and tests.
//!
//! One table maps `(collection, id)` to `(version, JSON text)`; a second holds
//! the counter that versions come from, so a version is never reused, not
//! even after a delete or a restart. Every compare-and-set reads, checks and
//! writes inside one redb write transaction, and redb runs one write
//! transaction at a time, so concurrent callers cannot interleave.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Document, Precondition, StateError, StateStore, Version, check_collection, check_id,
    check_value,
};

/// `(collection, id)` → `(version, JSON text of the value)`.
const DOCUMENTS: TableDefinition<(&str, &str), (u64, &str)> = TableDefinition::new("documents");

/// The single key of [`COUNTERS`] holding the last version handed out.
const LAST_VERSION: &str = "last_version";

/// Named counters; only [`LAST_VERSION`] so far.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The file name inside the data directory.
const FILE_NAME: &str = "state.redb";

/// State kept in `state.redb` under a data directory. Cheap to clone: clones
/// share the open database.
#[derive(Clone)]
pub struct LocalStateStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for LocalStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalStateStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory if
    /// needed. Only one process may have the file open at a time.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StateError> {
        let dir = data_dir.as_ref().to_path_buf();
        let path = dir.join(FILE_NAME);
        let context = format!("open state store {}", path.display());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| backend(&context, e))?;
        let opened = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database, redb::Error> {
            let db = Database::create(&opened)?;
            let txn = db.begin_write()?;
            txn.open_table(DOCUMENTS)?;
            txn.open_table(COUNTERS)?;
            txn.commit()?;
            Ok(db)
        })
        .await
        .map_err(|e| backend(&context, e))?
        .map_err(|e| backend(&context, e))?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the blocking pool with the database, naming `context`
    /// in any error.
    async fn blocking<T, F>(&self, context: String, work: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<Result<T, StateError>, redb::Error> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| backend(&context, e))?
            .map_err(|e| backend(&context, e))?
    }
}

/// A [`StateError::Backend`] for a failed redb call or blocking task.
fn backend(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Backend {
        context: context.to_string(),
        source: Box::new(source),
    }
}

/// Turns a stored row back into a [`Document`].
fn document(collection: &str, id: &str, version: u64, json: &str) -> Result<Document, StateError> {
    let value = serde_json::from_str(json).map_err(|e| StateError::InvalidValue {
        collection: collection.to_string(),
        id: id.to_string(),
        reason: format!("stored JSON is unreadable: {e}"),
    })?;
    Ok(Document {
        id: id.to_string(),
        value,
        version: Version(version.to_string()),
    })
}

/// Whether `precondition` holds for a document currently at `current`
/// (`None`: absent); the conflict to report when it does not.
fn check_precondition(
    collection: &str,
    id: &str,
    precondition: &Precondition,
    current: Option<u64>,
) -> Result<(), StateError> {
    let detail = match (precondition, current) {
        (Precondition::None, _) | (Precondition::MustNotExist, None) => return Ok(()),
        (Precondition::MustNotExist, Some(v)) => format!("must not exist, but is at version {v}"),
        (Precondition::Version(want), Some(v)) if want.0 == v.to_string() => return Ok(()),
        (Precondition::Version(want), Some(v)) => {
            format!("expected version {want}, found version {v}")
        }
        (Precondition::Version(want), None) => {
            format!("expected version {want}, found no document")
        }
    };
    Err(StateError::Conflict {
        collection: collection.to_string(),
        id: id.to_string(),
        detail,
    })
}

#[async_trait]
impl StateStore for LocalStateStore {
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StateError> {
        check_id(collection, id)?;
        let (c, i) = (collection.to_string(), id.to_string());
        self.blocking(format!("get {collection}/{id}"), move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(DOCUMENTS)?;
            let row = table.get((c.as_str(), i.as_str()))?;
            Ok(row
                .map(|row| {
                    let (version, json) = row.value();
                    document(&c, &i, version, json)
                })
                .transpose())
        })
        .await
    }

    async fn put(
        &self,
        collection: &str,
        id: &str,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Version, StateError> {
        check_id(collection, id)?;
        check_value(collection, id, value)?;
        let json = value.to_string();
        let (c, i) = (collection.to_string(), id.to_string());
        self.blocking(format!("put {collection}/{id}"), move |db| {
            let txn = db.begin_write()?;
            let outcome = {
                let mut docs = txn.open_table(DOCUMENTS)?;
                let current = docs.get((c.as_str(), i.as_str()))?.map(|row| row.value().0);
                match check_precondition(&c, &i, &precondition, current) {
                    Err(conflict) => Err(conflict),
                    Ok(()) => {
                        let mut counters = txn.open_table(COUNTERS)?;
                        let next = counters.get(LAST_VERSION)?.map_or(0, |v| v.value()) + 1;
                        counters.insert(LAST_VERSION, next)?;
                        docs.insert((c.as_str(), i.as_str()), (next, json.as_str()))?;
                        Ok(Version(next.to_string()))
                    }
                }
            };
            if outcome.is_ok() {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StateError> {
        check_id(collection, id)?;
        let (c, i) = (collection.to_string(), id.to_string());
        self.blocking(format!("delete {collection}/{id}"), move |db| {
            let txn = db.begin_write()?;
            let outcome = {
                let mut docs = txn.open_table(DOCUMENTS)?;
                let current = docs.get((c.as_str(), i.as_str()))?.map(|row| row.value().0);
                let outcome = check_precondition(&c, &i, &precondition, current);
                if outcome.is_ok() && current.is_some() {
                    docs.remove((c.as_str(), i.as_str()))?;
                }
                outcome
            };
            if outcome.is_ok() {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn list(&self, collection: &str) -> Result<Vec<Document>, StateError> {
        check_collection(collection)?;
        let c = collection.to_string();
        self.blocking(format!("list {collection}"), move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(DOCUMENTS)?;
            let mut documents = Vec::new();
            for row in table.range((c.as_str(), "")..)? {
                let (key, row) = row?;
                let (collection, id) = key.value();
                if collection != c {
                    break;
                }
                let (version, json) = row.value();
                match document(collection, id, version, json) {
                    Ok(doc) => documents.push(doc),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(documents))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStateStore::open(dir.path()).await.expect("open");
        conformance::run_all(&store, "local").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clones_in_spawned_tasks_race_safely() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStateStore::open(dir.path()).await.expect("open");
        let racers: Vec<_> = (0..16)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let value = serde_json::json!({ "racer": n });
                    store
                        .put("race", "winner", &value, Precondition::MustNotExist)
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.expect("task") {
                Ok(_) => winners += 1,
                Err(StateError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners, 1, "exactly one create wins");
    }

    #[tokio::test]
    async fn documents_and_versions_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = serde_json::json!({"region": "europe-west4", "weight": 100});
        let (first, second) = {
            let store = LocalStateStore::open(dir.path()).await.expect("open");
            let first = store
                .put("routing", "gateway", &value, Precondition::MustNotExist)
                .await
                .expect("put");
            store
                .put("routing", "other", &value, Precondition::None)
                .await
                .expect("put");
            store
                .delete("routing", "other", Precondition::None)
                .await
                .expect("delete");
            let second = store
                .put("scratch", "x", &value, Precondition::None)
                .await
                .expect("put");
            (first, second)
        };
        // The first store (and its Arc<Database>) is dropped: the file is
        // closed, as when the process exits.
        let store = LocalStateStore::open(dir.path()).await.expect("reopen");
        let doc = store
            .get("routing", "gateway")
            .await
            .expect("get")
            .expect("document survived the restart");
        assert_eq!(doc.value, value);
        assert_eq!(doc.version, first);
        assert!(store.get("routing", "other").await.expect("get").is_none());
        // Versions keep counting from where they were: a new write cannot
        // reuse a version a caller may still hold.
        let third = store
            .put(
                "routing",
                "gateway",
                &value,
                Precondition::Version(first.clone()),
            )
            .await
            .expect("compare-and-set after restart");
        assert_ne!(third, first);
        assert_ne!(third, second);
    }
}
