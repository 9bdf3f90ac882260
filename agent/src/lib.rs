//! The Holdfast agent: runs restic on one host on the schedule its controller pushes, keeps
//! doing so when the controller is gone, and never loses a report.

pub mod agent;
pub mod config;
pub mod connection;
pub mod drill;
pub mod enroll;
pub mod hooks;
pub mod jobs;
pub mod outbox;
pub mod platform;
pub mod reporter;
pub mod restic;
pub mod runner;
pub mod scheduler;
pub mod service_manager;
pub mod state;
pub mod tls;
