//! Events out: publishing CloudEvents to a topic. Implemented by Pub/Sub
//! ([`pubsub`]) and by a local bus that pushes to HTTP endpoints with retries
//! and a dead-letter list, like a push subscription ([`local`]);
//! [`conformance`] is the suite both must pass. Both carry events the same
//! way, in the CloudEvents Pub/Sub binding ([`binding`]), so one handler
//! serves pushes from either.

pub mod binding;
pub mod conformance;
pub mod local;
pub mod pubsub;

use std::fmt;

use async_trait::async_trait;
use cloudevents::Event;

/// The topic Lifeboat publishes its own events to (replica verified,
/// checkpoint committed, failover decided...); `infra/` creates it.
pub const EVENTS_TOPIC: &str = "lifeboat-events";

/// The topic failover publishes to when it leaves a failed region's traffic
/// where it is because every candidate region failed a safety rule: someone
/// must act. A topic of its own, so paging can subscribe to exactly this;
/// `infra/failover.tf` creates it.
pub const FAILOVER_REFUSED_TOPIC: &str = "lifeboat-failover-refused";

/// The topic the drill service publishes the start, finish and abort of
/// every drill run to (`dev.lifeboat.drill.*`), for paging and audit.
pub const DRILL_EVENTS_TOPIC: &str = "lifeboat-drill-events";

/// The fewest delivery attempts a subscription may allow before dead-lettering,
/// as Pub/Sub requires (`max_delivery_attempts` 5-100); the local bus holds to
/// the same range so a configuration that works locally works on Google Cloud.
pub const MIN_DELIVERY_ATTEMPTS: u32 = 5;
/// The most delivery attempts a subscription may allow (Pub/Sub's limit).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 100;

/// What can go wrong when publishing or subscribing. Every variant names the
/// topic or the subscription.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The topic does not exist.
    #[error("topic {topic}: not found")]
    TopicNotFound {
        /// The missing topic.
        topic: String,
    },
    /// The event cannot be sent as it is (no data, bad attributes...).
    #[error("topic {topic}: event {event_id} cannot be published: {reason}")]
    InvalidEvent {
        /// The topic it was meant for.
        topic: String,
        /// The event's id.
        event_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The topic name is not one Pub/Sub accepts.
    #[error("topic {topic}: {reason}")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
        /// What is wrong.
        reason: String,
    },
    /// The subscription does not exist.
    #[error("subscription {subscription}: not found")]
    SubscriptionNotFound {
        /// The missing subscription.
        subscription: String,
    },
    /// The subscription cannot be created as asked (bad endpoint, attempts
    /// out of range...).
    #[error("subscription {subscription}: {reason}")]
    InvalidSubscription {
        /// The subscription concerned.
        subscription: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend could not be reached or failed; worth a retry.
    #[error("{context}: {source}")]
    Backend {
        /// The operation and topic.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    /// True when the same call may succeed later (the backend was unreachable
    /// or failed), false when the request itself is wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, BusError::Backend { .. })
    }

    /// A backend failure during `context` (which names the operation and the
    /// topic or subscription).
    pub(crate) fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BusError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Pub/Sub's rule for topic and subscription ids, minus `%`: 3-255
/// characters, starting with a letter, of letters, digits and `-_.~+`, not
/// starting with `goog`. Pub/Sub allows `%` too, but the official client puts
/// ids into REST paths unescaped, so a `%` id is created under another name
/// (`%25` becomes `%`) or never answered; both buses refuse it up front.
fn name_error(kind: &str, name: &str) -> Option<String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~+".contains(c));
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let valid = (3..=255).contains(&name.len())
        && valid_chars
        && starts_with_letter
        && !name.starts_with("goog");
    (!valid).then(|| {
        format!(
            "invalid {kind} id {name:?}: 3-255 letters, digits or -_.~+, \
             starting with a letter, not with goog"
        )
    })
}

/// Checks a topic id (see [`name_error`]).
pub(crate) fn check_topic(topic: &str) -> Result<(), BusError> {
    match name_error("topic", topic) {
        None => Ok(()),
        Some(reason) => Err(BusError::InvalidTopic {
            topic: topic.to_string(),
            reason,
        }),
    }
}

/// Checks a subscription id (see [`name_error`]).
pub(crate) fn check_subscription(subscription: &str) -> Result<(), BusError> {
    match name_error("subscription", subscription) {
        None => Ok(()),
        Some(reason) => Err(BusError::InvalidSubscription {
            subscription: subscription.to_string(),
            reason,
        }),
    }
}

/// Checks `max_attempts` against Pub/Sub's range for `subscription`.
pub(crate) fn check_max_attempts(subscription: &str, max_attempts: u32) -> Result<(), BusError> {
    if (MIN_DELIVERY_ATTEMPTS..=MAX_DELIVERY_ATTEMPTS).contains(&max_attempts) {
        Ok(())
    } else {
        Err(BusError::InvalidSubscription {
            subscription: subscription.to_string(),
            reason: format!(
                "max_attempts {max_attempts} is outside \
                 {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS}"
            ),
        })
    }
}

/// A topic that CloudEvents are published to and that pushes them to HTTP
/// subscribers.
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Creates the topic; does nothing if it exists.
    async fn create_topic(&self, topic: &str) -> Result<(), BusError>;

    /// Creates (or updates) a push subscription that POSTs every event of
    /// `topic` to `endpoint` in the Pub/Sub push format, retrying failures,
    /// and after `max_attempts` (5-100, as Pub/Sub requires) dead-letters the
    /// event: to the topic `<topic>-dead-letter` on Pub/Sub, to the
    /// subscription's dead-letter list on the local bus.
    async fn subscribe_push(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
        max_attempts: u32,
    ) -> Result<(), BusError>;

    /// Publishes one event; returns the message id the bus gave it once it
    /// is durable.
    async fn publish(&self, topic: &str, event: &Event) -> Result<String, BusError>;
}
