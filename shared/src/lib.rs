//! Lifeboat's common library: the topology of a deployment, the events the
//! functions receive, the backends they act through (Google Cloud and local),
//! and the skeleton every service is built on.

pub mod bus;
pub mod events;
pub mod fault;
pub mod gcp;
pub mod golden;
pub mod metrics;
pub mod models;
pub mod outage;
pub mod pause;
pub mod poison;
pub mod records;
pub mod routing;
pub mod server;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod topology;
pub mod traffic;
pub mod transfer;
pub mod warehouse;
