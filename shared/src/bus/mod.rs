//! Events out: publishing CloudEvents to a topic. Implemented by Pub/Sub
//! ([`pubsub`]) and by a local bus that pushes to HTTP endpoints with retries
//! and a dead-letter list, like a push subscription ([`local`]);
//! [`conformance`] is the suite both must pass.

pub mod conformance;
pub mod local;
pub mod pubsub;

use std::fmt;

use async_trait::async_trait;
use cloudevents::Event;

/// What can go wrong when publishing. Every variant names the topic.
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

/// A topic that CloudEvents are published to and that pushes them to HTTP
/// subscribers.
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Creates the topic; does nothing if it exists.
    async fn create_topic(&self, topic: &str) -> Result<(), BusError>;

    /// Creates (or updates) a push subscription that POSTs every event of
    /// `topic` to `endpoint`, retrying failures, and after `max_attempts`
    /// puts the event on the topic's dead-letter list.
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
