//! [`EventBus`] on Google Cloud Pub/Sub, through Google's official client
//! (`google-cloud-pubsub`, gRPC): `TopicAdmin` and `SubscriptionAdmin` for
//! the topics and push subscriptions, one batching `Publisher` per topic for
//! the events.
//!
//! Each subscription pushes to its endpoint with the configured ack deadline
//! and retry backoff, and dead-letters to `<topic>-dead-letter` (created on
//! the way) after `max_attempts`. On Google Cloud the Pub/Sub service agent
//! needs the publisher role on that topic and the subscriber role on the
//! subscription, which [`EventBus::subscribe_push`] here does not grant (see
//! its doc). The Pub/Sub emulator honours both
//! policies (checked: with 1 s-2 s backoff a failing push was retried every
//! 1.5-3 s and reached the dead-letter topic after `max_attempts`). OIDC
//! push authentication ([`PubSubOptions::push_service_account`]) is not
//! exercised against the emulator.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_pubsub::client::{BasePublisher, Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::{
    DeadLetterPolicy, Message, PushConfig, RetryPolicy, Subscription, push_config::OidcToken,
};

use super::binding::PubSubMessage;
use super::{BusError, EventBus, check_max_attempts, check_subscription, check_topic};
use crate::gcp::{ApiEndpoint, Credentials};

/// Pub/Sub's production endpoint.
pub const PUBSUB_URL: &str = "https://pubsub.googleapis.com";

/// Suffix of the topic a subscription dead-letters to.
pub const DEAD_LETTER_SUFFIX: &str = "-dead-letter";

/// How subscriptions push and how long calls keep retrying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubOptions {
    /// How long an endpoint may take to acknowledge a push (10 s-600 s).
    pub ack_deadline: Duration,
    /// Wait after the first failed push (0 s-600 s).
    pub min_backoff: Duration,
    /// The longest wait between two pushes (0 s-600 s).
    pub max_backoff: Duration,
    /// How long one call keeps retrying transient failures (an unreachable
    /// service) before it reports a [`BusError::Backend`]. It also bounds
    /// each attempt: an answer slower than the time left is a timeout.
    pub retry_time_limit: Duration,
    /// The service account whose OIDC token authenticates pushes to Cloud
    /// Run; `None` pushes unauthenticated (emulator, public endpoints).
    pub push_service_account: Option<String>,
}

impl Default for PubSubOptions {
    /// Pub/Sub's own defaults (10 s ack deadline, 10 s-600 s backoff), 30 s
    /// of retries per call, unauthenticated pushes.
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(10),
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            retry_time_limit: Duration::from_secs(30),
            push_service_account: None,
        }
    }
}

/// Events published to Google Cloud Pub/Sub (or its emulator) and pushed
/// by push subscriptions. Build once per process and share.
pub struct PubSubBus {
    project: String,
    options: PubSubOptions,
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
    publisher: BasePublisher,
    /// One batching publisher per topic, created on first use.
    publishers: Mutex<HashMap<String, Publisher>>,
}

impl std::fmt::Debug for PubSubBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBus")
            .field("project", &self.project)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PubSubBus {
    /// Connects to Pub/Sub at `endpoint` for `project`. Anonymous endpoint
    /// credentials (the emulator) are passed on; with Google credentials the
    /// client finds Application Default Credentials itself, as
    /// `gcp_auth` does.
    pub async fn new(
        project: impl Into<String>,
        endpoint: &ApiEndpoint,
        options: PubSubOptions,
    ) -> Result<Self, BusError> {
        let project = project.into();
        let context = || format!("connect to Pub/Sub at {}", endpoint.base_url);
        let retry = || Aip194Strict.with_time_limit(options.retry_time_limit);
        let anonymous = matches!(endpoint.credentials, Credentials::Anonymous);
        let credentials = || google_cloud_auth::credentials::anonymous::Builder::new().build();

        let mut topics = TopicAdmin::builder()
            .with_endpoint(&endpoint.base_url)
            .with_retry_policy(retry());
        let mut subscriptions = SubscriptionAdmin::builder()
            .with_endpoint(&endpoint.base_url)
            .with_retry_policy(retry());
        let mut publisher = BasePublisher::builder()
            .with_endpoint(&endpoint.base_url)
            .with_retry_policy(retry());
        if anonymous {
            topics = topics.with_credentials(credentials());
            subscriptions = subscriptions.with_credentials(credentials());
            publisher = publisher.with_credentials(credentials());
        }
        Ok(Self {
            topics: topics
                .build()
                .await
                .map_err(|e| BusError::backend(context(), e))?,
            subscriptions: subscriptions
                .build()
                .await
                .map_err(|e| BusError::backend(context(), e))?,
            publisher: publisher
                .build()
                .await
                .map_err(|e| BusError::backend(context(), e))?,
            project,
            options,
            publishers: Mutex::new(HashMap::new()),
        })
    }

    /// `projects/P/topics/T`.
    fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    /// `projects/P/subscriptions/S`.
    fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    /// The publisher of `topic`, created on first use.
    fn publisher(&self, topic: &str) -> Publisher {
        let mut publishers = self
            .publishers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        publishers
            .entry(topic.to_string())
            .or_insert_with(|| self.publisher.publisher(self.topic_path(topic)).build())
            .clone()
    }

    /// The subscription `subscription` of `topic` as configured by `options`.
    fn subscription_spec(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
        max_attempts: u32,
    ) -> Result<Subscription, BusError> {
        let invalid = |reason: String| BusError::InvalidSubscription {
            subscription: subscription.to_string(),
            reason,
        };
        let duration = |name: &str, value: Duration| {
            google_cloud_wkt::Duration::try_from(value)
                .map_err(|e| invalid(format!("{name} {value:?}: {e}")))
        };
        let ack_deadline = i32::try_from(self.options.ack_deadline.as_secs())
            .map_err(|e| invalid(format!("ack deadline: {e}")))?;
        let max_attempts =
            i32::try_from(max_attempts).map_err(|e| invalid(format!("max_attempts: {e}")))?;
        let mut push = PushConfig::new().set_push_endpoint(endpoint);
        if let Some(account) = &self.options.push_service_account {
            push = push.set_oidc_token(
                OidcToken::new()
                    .set_service_account_email(account)
                    .set_audience(endpoint),
            );
        }
        Ok(Subscription::new()
            .set_name(self.subscription_path(subscription))
            .set_topic(self.topic_path(topic))
            .set_push_config(push)
            .set_ack_deadline_seconds(ack_deadline)
            .set_retry_policy(
                RetryPolicy::new()
                    .set_minimum_backoff(duration("min backoff", self.options.min_backoff)?)
                    .set_maximum_backoff(duration("max backoff", self.options.max_backoff)?),
            )
            .set_dead_letter_policy(
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(self.topic_path(&dead_letter_topic(topic)))
                    .set_max_delivery_attempts(max_attempts),
            ))
    }
}

/// The topic that subscriptions of `topic` dead-letter to.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// The gRPC status code of `error`, if the service answered.
fn code(error: &google_cloud_pubsub::Error) -> Option<Code> {
    error.status().map(|status| status.code)
}

#[async_trait]
impl EventBus for PubSubBus {
    async fn create_topic(&self, topic: &str) -> Result<(), BusError> {
        check_topic(topic)?;
        match self
            .topics
            .create_topic()
            .set_name(self.topic_path(topic))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(Code::AlreadyExists) => Ok(()),
            Err(e) if code(&e) == Some(Code::InvalidArgument) => Err(BusError::InvalidTopic {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
            Err(e) => Err(BusError::backend(format!("create topic {topic}"), e)),
        }
    }

    /// Creates or updates the push subscription with its dead-letter policy.
    ///
    /// It grants nothing: on Google Cloud, dead-lettering also needs the
    /// Pub/Sub service agent (`service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com`)
    /// to hold `roles/pubsub.publisher` on `<topic>-dead-letter` and
    /// `roles/pubsub.subscriber` on the subscription; without them a poison
    /// event is retried until the retention ends instead. No deployed
    /// service calls this method (the subscriptions of Google Cloud are
    /// Terraform's, in `infra/`, with both grants, checked by
    /// `tests/tests/permissions.rs`; the local cloud uses the local bus);
    /// only the tests call it, against the emulator, which enforces no IAM.
    /// A caller on Google Cloud
    /// must make the grants itself (Terraform, or `setIamPolicy`).
    async fn subscribe_push(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
        max_attempts: u32,
    ) -> Result<(), BusError> {
        check_topic(topic)?;
        check_subscription(subscription)?;
        check_max_attempts(subscription, max_attempts)?;
        let spec = self.subscription_spec(topic, subscription, endpoint, max_attempts)?;
        let context = format!("subscribe {subscription} to topic {topic}");
        // The dead-letter topic must exist before a subscription names it;
        // checking the topic first keeps a missing topic a TopicNotFound.
        if let Err(e) = self
            .topics
            .get_topic()
            .set_topic(self.topic_path(topic))
            .send()
            .await
        {
            return Err(match code(&e) {
                Some(Code::NotFound) => BusError::TopicNotFound {
                    topic: topic.to_string(),
                },
                _ => BusError::backend(context, e),
            });
        }
        self.create_topic(&dead_letter_topic(topic)).await?;

        let created = self
            .subscriptions
            .create_subscription()
            .with_request(spec.clone())
            .send()
            .await;
        let result = match created {
            Err(e) if code(&e) == Some(Code::AlreadyExists) => self
                .subscriptions
                .update_subscription()
                .set_subscription(spec)
                .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths([
                    "push_config",
                    "ack_deadline_seconds",
                    "retry_policy",
                    "dead_letter_policy",
                ]))
                .send()
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        };
        result.map_err(|e| match code(&e) {
            Some(Code::NotFound) => BusError::TopicNotFound {
                topic: topic.to_string(),
            },
            Some(Code::InvalidArgument) => BusError::InvalidSubscription {
                subscription: subscription.to_string(),
                reason: e.to_string(),
            },
            _ => BusError::backend(context, e),
        })
    }

    async fn publish(&self, topic: &str, event: &Event) -> Result<String, BusError> {
        check_topic(topic)?;
        let message = PubSubMessage::from_event(topic, event)?;
        let published = self
            .publisher(topic)
            .publish(
                Message::new()
                    .set_data(message.data)
                    .set_attributes(message.attributes),
            )
            .await;
        published.map_err(|e| {
            let context = format!("publish event {} to topic {topic}", event.id());
            match &e {
                PublishError::Rpc(rpc) if code(rpc) == Some(Code::NotFound) => {
                    BusError::TopicNotFound {
                        topic: topic.to_string(),
                    }
                }
                PublishError::Rpc(rpc) if code(rpc) == Some(Code::InvalidArgument) => {
                    BusError::InvalidEvent {
                        topic: topic.to_string(),
                        event_id: event.id().to_string(),
                        reason: rpc.to_string(),
                    }
                }
                _ => BusError::backend(context, e),
            }
        })
    }
}
