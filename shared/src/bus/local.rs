//! The local cloud's embedded bus: topics and push subscriptions kept in a
//! redb file under a data directory, with a delivery task per subscription
//! that POSTs each message to its endpoint in the Pub/Sub push format, so the
//! handlers that serve Cloud Run serve the local cloud unchanged.
//!
//! Everything that matters survives a restart: topics, subscriptions, every
//! message not yet acknowledged (with its attempt count) and the dead-letter
//! lists. A publish returns only once the message is committed to disk for
//! every subscription of the topic; a topic without subscriptions drops the
//! message, as Pub/Sub does.
//!
//! Delivery follows a push subscription: a 2xx answer acknowledges, anything
//! else (or no answer) is retried with exponential backoff, and after the
//! subscription's `max_attempts` the message moves to its dead-letter list,
//! where [`LocalBus::dead_letters`] reads it and [`LocalBus::redrive`] sends it
//! back. A stored message that no longer parses (a damaged file) is set
//! aside, as it was, with an error log line, so that it holds back none of
//! the messages after it. Delivery is at-least-once: a message acknowledged just before a
//! shutdown may be delivered again after the restart.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::binding::{DecodeError, PubSubMessage, PushEnvelope};
use super::{BusError, EventBus, check_max_attempts, check_subscription, check_topic};

/// Topic names; the value is unused.
const TOPICS: TableDefinition<&str, ()> = TableDefinition::new("topics");
/// Subscription name to its JSON [`SubscriptionRecord`].
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// (subscription, message id) to the JSON [`StoredMessage`] still to deliver.
const PENDING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("pending");
/// (subscription, message id) to the JSON [`StoredMessage`] given up on.
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
/// Pending records that do not parse (a damaged file, a format change),
/// set aside as they were so that none holds back the messages after it.
const UNREADABLE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("unreadable");
/// Counters; only [`NEXT_MESSAGE_ID`].
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// The id the next published message gets.
const NEXT_MESSAGE_ID: &str = "next_message_id";

/// The project named in push envelopes' subscription names.
const LOCAL_PROJECT: &str = "local";

/// How the local bus delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalBusOptions {
    /// Wait after the first failed attempt; doubled after each further one.
    pub min_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How many messages of one subscription are being delivered at once
    /// (counting those waiting for their next attempt); 0 counts as 1.
    pub max_concurrent_deliveries: usize,
    /// How long an endpoint may take to answer before the attempt counts as
    /// failed (the push subscription's ack deadline).
    pub ack_deadline: Duration,
}

impl Default for LocalBusOptions {
    /// Pub/Sub's push defaults scaled down for a workstation: 1 s to 60 s of
    /// backoff, 16 concurrent deliveries, a 10 s ack deadline.
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_concurrent_deliveries: 16,
            ack_deadline: Duration::from_secs(10),
        }
    }
}

impl LocalBusOptions {
    /// The wait before the next attempt once `attempts` have failed.
    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.min_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// A message a subscription gave up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id the bus gave the message.
    pub message_id: String,
    /// When it was published.
    pub publish_time: DateTime<Utc>,
    /// The message as it was pushed.
    pub message: PubSubMessage,
    /// How many deliveries were attempted.
    pub attempts: u32,
    /// What the last attempt got (an HTTP status or a connection error).
    pub last_error: String,
}

impl DeadLetter {
    /// The event the message carries.
    pub fn event(&self) -> Result<Event, DecodeError> {
        self.message.to_event(&self.message_id)
    }
}

/// The embedded bus of the local cloud. Cheap to share behind an `Arc`; call
/// [`LocalBus::shutdown`] before dropping it to let deliveries stop cleanly.
pub struct LocalBus {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<String, Worker>>,
}

/// What the bus and its delivery tasks share.
struct Shared {
    store: Store,
    http: reqwest::Client,
    options: LocalBusOptions,
    shutdown: CancellationToken,
}

/// The delivery task of one subscription and the way to wake it up.
struct Worker {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// A subscription as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SubscriptionRecord {
    topic: String,
    endpoint: String,
    max_attempts: u32,
}

/// A message as stored for one subscription.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredMessage {
    message_id: u64,
    publish_time: DateTime<Utc>,
    message: PubSubMessage,
    attempts: u32,
    last_error: Option<String>,
}

/// What [`Store::next_pending`] found.
enum Pending {
    /// A message to deliver, with its subscription as it is now.
    Message(SubscriptionRecord, StoredMessage),
    /// A record that does not parse: set it aside, never retry it.
    Unreadable {
        /// Its key.
        message_id: u64,
        /// Why it does not parse.
        error: String,
    },
}

impl fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBus")
            .field("path", &self.shared.store.path)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl LocalBus {
    /// Opens (or creates) the bus stored under `dir` and resumes delivering
    /// whatever was left undelivered.
    pub async fn open(dir: impl AsRef<Path>, options: LocalBusOptions) -> Result<Self, BusError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("bus.redb");
        let context = format!("open local bus at {}", path.display());
        let open_path = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database, Failure> {
            std::fs::create_dir_all(&dir)?;
            let db = Database::create(&open_path)?;
            let txn = db.begin_write()?;
            txn.open_table(TOPICS)?;
            txn.open_table(SUBSCRIPTIONS)?;
            txn.open_table(PENDING)?;
            txn.open_table(DEAD)?;
            txn.open_table(COUNTERS)?;
            txn.commit()?;
            Ok(db)
        })
        .await
        .map_err(|e| BusError::backend(context.clone(), e))?
        .map_err(|e| BusError::backend(context, e))?;

        let http = reqwest::Client::builder()
            .timeout(options.ack_deadline)
            .build()
            .map_err(|e| BusError::backend("build the local bus HTTP client", e))?;
        let bus = Self {
            shared: Arc::new(Shared {
                store: Store {
                    db: Arc::new(db),
                    path,
                },
                http,
                options,
                shutdown: CancellationToken::new(),
            }),
            workers: Mutex::new(HashMap::new()),
        };
        for subscription in bus.shared.store.subscription_names().await? {
            bus.start_worker(&subscription);
        }
        Ok(bus)
    }

    /// The messages `subscription` gave up on, oldest first.
    pub async fn dead_letters(&self, subscription: &str) -> Result<Vec<DeadLetter>, BusError> {
        let name = subscription.to_string();
        self.shared
            .store
            .run(
                format!("read dead letters of subscription {subscription}"),
                move |db| {
                    let txn = db.begin_read()?;
                    require_subscription(&txn.open_table(SUBSCRIPTIONS)?, &name)?;
                    let dead = txn.open_table(DEAD)?;
                    let mut letters = Vec::new();
                    for entry in dead.range((name.as_str(), 0)..=(name.as_str(), u64::MAX))? {
                        let (_, value) = entry?;
                        let stored: StoredMessage = serde_json::from_slice(value.value())?;
                        letters.push(DeadLetter {
                            message_id: stored.message_id.to_string(),
                            publish_time: stored.publish_time,
                            message: stored.message,
                            attempts: stored.attempts,
                            last_error: stored.last_error.unwrap_or_default(),
                        });
                    }
                    Ok(letters)
                },
            )
            .await
    }

    /// Moves every dead letter of `subscription` back to delivery with a
    /// fresh attempt count; returns how many were moved.
    pub async fn redrive(&self, subscription: &str) -> Result<usize, BusError> {
        let name = subscription.to_string();
        let moved = self
            .shared
            .store
            .run(
                format!("redrive dead letters of subscription {subscription}"),
                move |db| {
                    let txn = db.begin_write()?;
                    let moved = {
                        require_subscription(&txn.open_table(SUBSCRIPTIONS)?, &name)?;
                        let mut dead = txn.open_table(DEAD)?;
                        let mut pending = txn.open_table(PENDING)?;
                        let letters = dead
                            .extract_from_if(
                                (name.as_str(), 0)..=(name.as_str(), u64::MAX),
                                |_, _| true,
                            )?
                            .map(|entry| {
                                entry.map(|(key, value)| (key.value().1, value.value().to_vec()))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        for (id, value) in &letters {
                            let mut stored: StoredMessage = serde_json::from_slice(value)?;
                            stored.attempts = 0;
                            stored.last_error = None;
                            let value = serde_json::to_vec(&stored)?;
                            pending.insert((name.as_str(), *id), value.as_slice())?;
                        }
                        letters.len()
                    };
                    txn.commit()?;
                    Ok(moved)
                },
            )
            .await?;
        self.wake(subscription);
        Ok(moved)
    }

    /// Stops every delivery task and waits for them. Messages being delivered
    /// stay undelivered and are retried when the bus is opened again;
    /// publishing still works but nothing more is pushed.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let workers: Vec<Worker> = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, worker)| worker)
            .collect();
        for worker in workers {
            if let Err(e) = worker.task.await {
                tracing::warn!(error = %e, "local bus delivery task ended abnormally");
            }
        }
    }

    /// Starts the delivery task of `subscription` unless it runs already or
    /// the bus is shutting down.
    fn start_worker(&self, subscription: &str) {
        if self.shared.shutdown.is_cancelled() {
            return;
        }
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if workers.contains_key(subscription) {
            return;
        }
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run_worker(
            self.shared.clone(),
            subscription.to_string(),
            wake.clone(),
        ));
        workers.insert(subscription.to_string(), Worker { wake, task });
    }

    /// Tells the delivery task of `subscription` that there is work.
    fn wake(&self, subscription: &str) {
        if let Some(worker) = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(subscription)
        {
            worker.wake.notify_one();
        }
    }
}

impl Drop for LocalBus {
    /// Stops the delivery tasks if [`LocalBus::shutdown`] was not called.
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn create_topic(&self, topic: &str) -> Result<(), BusError> {
        check_topic(topic)?;
        let name = topic.to_string();
        self.shared
            .store
            .run(format!("create topic {topic}"), move |db| {
                let txn = db.begin_write()?;
                txn.open_table(TOPICS)?.insert(name.as_str(), ())?;
                txn.commit()?;
                Ok(())
            })
            .await
    }

    async fn subscribe_push(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
        max_attempts: u32,
    ) -> Result<(), BusError> {
        let invalid = |reason: String| BusError::InvalidSubscription {
            subscription: subscription.to_string(),
            reason,
        };
        check_topic(topic)?;
        check_subscription(subscription)?;
        check_max_attempts(subscription, max_attempts)?;
        match reqwest::Url::parse(endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => {
                return Err(invalid(format!(
                    "endpoint {endpoint}: scheme {} is not http or https",
                    url.scheme()
                )));
            }
            Err(e) => return Err(invalid(format!("endpoint {endpoint}: {e}"))),
        }
        let record = SubscriptionRecord {
            topic: topic.to_string(),
            endpoint: endpoint.to_string(),
            max_attempts,
        };
        let name = subscription.to_string();
        self.shared
            .store
            .run(
                format!("subscribe {subscription} to topic {topic}"),
                move |db| {
                    let txn = db.begin_write()?;
                    {
                        if txn
                            .open_table(TOPICS)?
                            .get(record.topic.as_str())?
                            .is_none()
                        {
                            return Err(BusError::TopicNotFound {
                                topic: record.topic,
                            }
                            .into());
                        }
                        let value = serde_json::to_vec(&record)?;
                        txn.open_table(SUBSCRIPTIONS)?
                            .insert(name.as_str(), value.as_slice())?;
                    }
                    txn.commit()?;
                    Ok(())
                },
            )
            .await?;
        self.start_worker(subscription);
        self.wake(subscription);
        Ok(())
    }

    async fn publish(&self, topic: &str, event: &Event) -> Result<String, BusError> {
        check_topic(topic)?;
        let message = PubSubMessage::from_event(topic, event)?;
        let name = topic.to_string();
        let (message_id, subscribers) = self
            .shared
            .store
            .run(format!("publish event to topic {topic}"), move |db| {
                let txn = db.begin_write()?;
                let published = {
                    if txn.open_table(TOPICS)?.get(name.as_str())?.is_none() {
                        return Err(BusError::TopicNotFound { topic: name }.into());
                    }
                    let mut counters = txn.open_table(COUNTERS)?;
                    let message_id = counters
                        .get(NEXT_MESSAGE_ID)?
                        .map(|id| id.value())
                        .unwrap_or(1);
                    counters.insert(NEXT_MESSAGE_ID, message_id + 1)?;
                    let stored = serde_json::to_vec(&StoredMessage {
                        message_id,
                        publish_time: Utc::now(),
                        message,
                        attempts: 0,
                        last_error: None,
                    })?;
                    let subscriptions = txn.open_table(SUBSCRIPTIONS)?;
                    let mut pending = txn.open_table(PENDING)?;
                    let mut subscribers = Vec::new();
                    for entry in subscriptions.iter()? {
                        let (subscription, record) = entry?;
                        let record: SubscriptionRecord = serde_json::from_slice(record.value())?;
                        if record.topic == name {
                            pending
                                .insert((subscription.value(), message_id), stored.as_slice())?;
                            subscribers.push(subscription.value().to_string());
                        }
                    }
                    (message_id, subscribers)
                };
                txn.commit()?;
                Ok(published)
            })
            .await?;
        for subscription in &subscribers {
            self.wake(subscription);
        }
        Ok(message_id.to_string())
    }
}

/// Fails with [`BusError::SubscriptionNotFound`] unless `name` is in `table`.
fn require_subscription(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<(), Failure> {
    if table.get(name)?.is_none() {
        return Err(BusError::SubscriptionNotFound {
            subscription: name.to_string(),
        }
        .into());
    }
    Ok(())
}

/// Delivers the messages of `subscription` until the bus shuts down, at
/// most `max_concurrent_deliveries` at a time.
async fn run_worker(shared: Arc<Shared>, subscription: String, wake: Arc<Notify>) {
    let slots = Arc::new(Semaphore::new(
        shared.options.max_concurrent_deliveries.max(1),
    ));
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let mut deliveries = JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        while deliveries.try_join_next().is_some() {}
        let skip = in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match shared.store.next_pending(&subscription, skip).await {
            Ok(Some(Pending::Unreadable { message_id, error })) => {
                drop(slot);
                tracing::error!(subscription, message_id, %error, "pending message unreadable; set aside so that the messages after it are delivered");
                if let Err(e) = shared.store.set_aside(&subscription, message_id).await {
                    tracing::warn!(subscription, message_id, error = %e, "cannot set the unreadable message aside");
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(shared.options.min_backoff) => {}
                    }
                }
            }
            Ok(Some(Pending::Message(record, message))) => {
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(message.message_id);
                deliveries.spawn(deliver(
                    shared.clone(),
                    subscription.clone(),
                    record,
                    message,
                    slot,
                    in_flight.clone(),
                ));
            }
            Ok(None) => {
                drop(slot);
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = wake.notified() => {}
                }
            }
            Err(e) => {
                drop(slot);
                tracing::warn!(subscription, error = %e, "local bus cannot read pending messages");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(shared.options.min_backoff) => {}
                }
            }
        }
    }
    deliveries.join_all().await;
}

/// Pushes one message until it is acknowledged, dead-lettered or the bus
/// shuts down, holding `slot` throughout.
async fn deliver(
    shared: Arc<Shared>,
    subscription: String,
    record: SubscriptionRecord,
    mut message: StoredMessage,
    slot: OwnedSemaphorePermit,
    in_flight: Arc<Mutex<HashSet<u64>>>,
) {
    let envelope = PushEnvelope::new(
        format!("projects/{LOCAL_PROJECT}/subscriptions/{subscription}"),
        &message.message,
        message.message_id.to_string(),
        message.publish_time,
    );
    match serde_json::to_vec(&envelope) {
        Ok(body) => {
            push_until_done(&shared, &subscription, &record, &mut message, body.into()).await
        }
        Err(e) => {
            tracing::error!(subscription, message_id = message.message_id, error = %e, "push envelope cannot be serialized");
        }
    }
    in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&message.message_id);
    drop(slot);
}

/// The attempts of one delivery, with backoff in between.
async fn push_until_done(
    shared: &Shared,
    subscription: &str,
    record: &SubscriptionRecord,
    message: &mut StoredMessage,
    body: Bytes,
) {
    loop {
        let attempt = shared
            .http
            .post(&record.endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send();
        let outcome = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            outcome = attempt => outcome,
        };
        let error = match outcome {
            Ok(response) if response.status().is_success() => {
                if let Err(e) = shared.store.ack(subscription, message.message_id).await {
                    tracing::warn!(subscription, message_id = message.message_id, error = %e, "acknowledged push not recorded; it will be delivered again");
                }
                return;
            }
            Ok(response) => format!("{} answered HTTP {}", record.endpoint, response.status()),
            Err(e) => format!("{}: {e}", record.endpoint),
        };
        message.attempts += 1;
        message.last_error = Some(error);
        let dead = message.attempts >= record.max_attempts;
        if let Err(e) = shared
            .store
            .record_attempt(subscription, message, dead)
            .await
        {
            tracing::warn!(subscription, message_id = message.message_id, error = %e, "failed push not recorded");
        }
        if dead {
            tracing::warn!(
                subscription,
                message_id = message.message_id,
                attempts = message.attempts,
                last_error = message.last_error.as_deref().unwrap_or_default(),
                "message dead-lettered"
            );
            return;
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.options.backoff(message.attempts)) => {}
        }
    }
}

/// The redb file and the blocking work on it.
#[derive(Clone)]
struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

/// A failure inside a store operation: a refusal the caller should see as
/// it is, or a storage problem reported with the operation's context.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Refused(#[from] BusError),
    #[error(transparent)]
    Db(#[from] redb::Error),
    #[error("corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Lets `?` turn each of redb's error types into a [`Failure`].
macro_rules! redb_failure {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Failure::Db(error.into())
            }
        }
    )*};
}
redb_failure!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Store {
    /// Runs `work` on the blocking pool; storage failures are reported as
    /// transient with `context`.
    async fn run<T: Send + 'static>(
        &self,
        context: String,
        work: impl FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, BusError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || work(&db)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::Refused(e))) => Err(e),
            Ok(Err(failure)) => Err(BusError::backend(context, failure)),
            Err(join) => Err(BusError::backend(context, join)),
        }
    }

    /// Every subscription's name.
    async fn subscription_names(&self) -> Result<Vec<String>, BusError> {
        self.run("list local subscriptions".to_string(), |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SUBSCRIPTIONS)?;
            let mut names = Vec::new();
            for entry in table.iter()? {
                names.push(entry?.0.value().to_string());
            }
            Ok(names)
        })
        .await
    }

    /// The oldest message of `subscription` to deliver that is not in `skip`,
    /// with the subscription as it is now.
    async fn next_pending(
        &self,
        subscription: &str,
        skip: HashSet<u64>,
    ) -> Result<Option<Pending>, BusError> {
        let name = subscription.to_string();
        self.run(
            format!("read pending messages of subscription {subscription}"),
            move |db| {
                let txn = db.begin_read()?;
                let Some(record) = txn.open_table(SUBSCRIPTIONS)?.get(name.as_str())? else {
                    return Ok(None);
                };
                let record: SubscriptionRecord = serde_json::from_slice(record.value())?;
                let pending = txn.open_table(PENDING)?;
                for entry in pending.range((name.as_str(), 0)..=(name.as_str(), u64::MAX))? {
                    let (key, value) = entry?;
                    let message_id = key.value().1;
                    if !skip.contains(&message_id) {
                        return Ok(Some(match serde_json::from_slice(value.value()) {
                            Ok(message) => Pending::Message(record, message),
                            Err(error) => Pending::Unreadable {
                                message_id,
                                error: error.to_string(),
                            },
                        }));
                    }
                }
                Ok(None)
            },
        )
        .await
    }

    /// Moves the pending record `message_id` of `subscription`, which does
    /// not parse, to the unreadable list as it is.
    async fn set_aside(&self, subscription: &str, message_id: u64) -> Result<(), BusError> {
        let name = subscription.to_string();
        self.run(
            format!("set aside unreadable message {message_id} of subscription {subscription}"),
            move |db| {
                let txn = db.begin_write()?;
                {
                    let mut pending = txn.open_table(PENDING)?;
                    let raw = pending
                        .remove((name.as_str(), message_id))?
                        .map(|value| value.value().to_vec());
                    if let Some(raw) = raw {
                        txn.open_table(UNREADABLE)?
                            .insert((name.as_str(), message_id), raw.as_slice())?;
                    }
                }
                txn.commit()?;
                Ok(())
            },
        )
        .await
    }

    /// Forgets a message `subscription` acknowledged.
    async fn ack(&self, subscription: &str, message_id: u64) -> Result<(), BusError> {
        let name = subscription.to_string();
        self.run(
            format!("acknowledge message {message_id} of subscription {subscription}"),
            move |db| {
                let txn = db.begin_write()?;
                txn.open_table(PENDING)?
                    .remove((name.as_str(), message_id))?;
                txn.commit()?;
                Ok(())
            },
        )
        .await
    }

    /// Records a failed attempt; with `dead`, moves the message to the
    /// dead-letter list.
    async fn record_attempt(
        &self,
        subscription: &str,
        message: &StoredMessage,
        dead: bool,
    ) -> Result<(), BusError> {
        let name = subscription.to_string();
        let message_id = message.message_id;
        let value = serde_json::to_vec(message)
            .map_err(|e| BusError::backend(format!("record attempt on message {message_id}"), e))?;
        self.run(
            format!("record attempt on message {message_id} of subscription {subscription}"),
            move |db| {
                let txn = db.begin_write()?;
                {
                    let mut pending = txn.open_table(PENDING)?;
                    if dead {
                        pending.remove((name.as_str(), message_id))?;
                        txn.open_table(DEAD)?
                            .insert((name.as_str(), message_id), value.as_slice())?;
                    } else {
                        pending.insert((name.as_str(), message_id), value.as_slice())?;
                    }
                }
                txn.commit()?;
                Ok(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::conformance::{self, Receiver, sample_event};
    use cloudevents::AttributesReader;

    /// Backoff small enough that retries take milliseconds.
    fn fast() -> LocalBusOptions {
        LocalBusOptions {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_concurrent_deliveries: 8,
            ack_deadline: Duration::from_secs(5),
        }
    }

    /// Polls `dead_letters` until `count` are there.
    async fn wait_for_dead_letters(
        bus: &LocalBus,
        subscription: &str,
        count: usize,
    ) -> Vec<DeadLetter> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let letters = bus.dead_letters(subscription).await.expect("dead letters");
            if letters.len() >= count {
                return letters;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} dead letters of {count}",
                letters.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LocalBus::open(dir.path(), fast()).await.expect("open");
        conformance::run_all(&bus, "local").await;
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn message_is_dead_lettered_after_max_attempts_and_redriven() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LocalBus::open(dir.path(), fast()).await.expect("open");
        let receiver = Receiver::start(5).await;
        bus.create_topic("orders").await.expect("topic");
        bus.subscribe_push("orders", "orders-push", &receiver.endpoint(), 5)
            .await
            .expect("subscribe");
        let id = bus
            .publish("orders", &sample_event("dead-1"))
            .await
            .expect("publish");

        let letters = wait_for_dead_letters(&bus, "orders-push", 1).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].message_id, id);
        assert_eq!(letters[0].attempts, 5);
        assert!(
            letters[0].last_error.contains("503"),
            "{}",
            letters[0].last_error
        );
        assert_eq!(letters[0].event().expect("decodes").id(), "dead-1");
        assert_eq!(receiver.requests(), 5);
        assert!(receiver.events().is_empty());

        assert_eq!(bus.redrive("orders-push").await.expect("redrive"), 1);
        let events = receiver.wait_for_distinct(1, Duration::from_secs(20)).await;
        assert_eq!(events[0].id(), "dead-1");
        assert!(
            bus.dead_letters("orders-push")
                .await
                .expect("read")
                .is_empty()
        );
        bus.shutdown().await;
    }

    /// A pending record that does not parse (a damaged file) is set aside as
    /// it is, and the messages after it are still delivered.
    #[tokio::test]
    async fn an_unreadable_pending_record_holds_back_no_other() {
        let dir = tempfile::tempdir().expect("temp dir");
        let receiver = Receiver::start(0).await;
        let bus = LocalBus::open(dir.path(), fast()).await.expect("open");
        bus.create_topic("models").await.expect("topic");
        bus.subscribe_push("models", "models-sub", &receiver.endpoint(), 5)
            .await
            .expect("subscribe");
        // Key 0 comes before every message id the bus gives out.
        bus.shared
            .store
            .run("damage the file".to_string(), |db| {
                let txn = db.begin_write()?;
                txn.open_table(PENDING)?
                    .insert(("models-sub", 0), b"{not a message".as_slice())?;
                txn.commit()?;
                Ok(())
            })
            .await
            .expect("write the damaged record");
        bus.publish("models", &sample_event("after-damage"))
            .await
            .expect("publish");
        let events = receiver.wait_for_distinct(1, Duration::from_secs(20)).await;
        assert_eq!(events[0].id(), "after-damage");
        let set_aside = bus
            .shared
            .store
            .run("read the unreadable list".to_string(), |db| {
                let txn = db.begin_read()?;
                let raw = txn
                    .open_table(UNREADABLE)?
                    .get(("models-sub", 0))?
                    .map(|value| value.value().to_vec());
                let still_pending = txn.open_table(PENDING)?.get(("models-sub", 0))?.is_some();
                Ok((raw, still_pending))
            })
            .await
            .expect("read");
        assert_eq!(set_aside, (Some(b"{not a message".to_vec()), false));
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn undelivered_messages_and_dead_letters_survive_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let slow = LocalBusOptions {
            min_backoff: Duration::from_secs(600),
            max_backoff: Duration::from_secs(600),
            ..fast()
        };
        let flaky = Receiver::start(1).await;
        let down = Receiver::start(usize::MAX).await;
        {
            let bus = LocalBus::open(dir.path(), fast()).await.expect("open");
            bus.create_topic("models").await.expect("topic");
            bus.subscribe_push("models", "models-down", &down.endpoint(), 5)
                .await
                .expect("subscribe");
            bus.publish("models", &sample_event("gone-1"))
                .await
                .expect("publish");
            wait_for_dead_letters(&bus, "models-down", 1).await;
            bus.shutdown().await;
        }
        {
            let bus = LocalBus::open(dir.path(), slow.clone())
                .await
                .expect("reopen");
            bus.subscribe_push("models", "models-flaky", &flaky.endpoint(), 5)
                .await
                .expect("subscribe");
            bus.publish("models", &sample_event("kept-1"))
                .await
                .expect("publish");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while flaky.requests() == 0 {
                assert!(tokio::time::Instant::now() < deadline, "no first attempt");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            bus.shutdown().await;
        }
        assert!(
            flaky.events().is_empty(),
            "the first attempt was made to fail"
        );

        let bus = LocalBus::open(dir.path(), fast()).await.expect("reopen");
        let events = flaky.wait_for_distinct(1, Duration::from_secs(20)).await;
        assert_eq!(events[0].id(), "kept-1");
        let letters = bus.dead_letters("models-down").await.expect("read");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].event().expect("decodes").id(), "gone-1");
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_subscriptions_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = LocalBus::open(dir.path(), fast()).await.expect("open");
        bus.create_topic("topic-a").await.expect("topic");
        for (name, endpoint, attempts) in [
            ("sub-a", "http://127.0.0.1:9/push", 4),
            ("sub-a", "http://127.0.0.1:9/push", 101),
            ("sub-a", "ftp://127.0.0.1/push", 5),
            ("s", "http://127.0.0.1:9/push", 5),
        ] {
            let err = bus
                .subscribe_push("topic-a", name, endpoint, attempts)
                .await
                .expect_err("refused");
            assert!(
                matches!(&err, BusError::InvalidSubscription { subscription, .. } if subscription == name),
                "{err:?}"
            );
            assert!(!err.is_transient());
        }
        for topic in ["x", "a%25b", "goog-topic", "1abc"] {
            assert!(
                matches!(
                    bus.create_topic(topic).await,
                    Err(BusError::InvalidTopic { .. })
                ),
                "{topic} must be refused"
            );
        }
        assert!(matches!(
            bus.redrive("nope-sub").await,
            Err(BusError::SubscriptionNotFound { .. })
        ));
        bus.shutdown().await;
    }
}
