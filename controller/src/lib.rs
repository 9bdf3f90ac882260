//! The Holdfast controller: desired state from files or Kubernetes, compiled into versioned
//! per-host plans, and status written back.
//!
//! The pure core lives in the `holdfast-core` crate (resources, validation, compile, versions,
//! run records, status) and is re-exported here under its module names. This crate holds the
//! edges: reading files ([`source`]), the database ([`store`]), the agent hub and the running
//! controller ([`server`]), notifications ([`notify`]), Kubernetes mode ([`cluster`]), the web
//! surfaces ([`web`]) and the text `holdfast plan` prints ([`plan`]) and the forms of
//! `holdfast validate`'s findings ([`report`]).

pub use holdfast_core::{
    alerts, compile, crds, cronspec, decisions, diagnostics, diff, facts, notices, records,
    resources, retention, revision, routing, runs, scrub, secrets, select, snapshots, status,
    suggest, summaries, time, validate, versions,
};

pub mod cluster;
pub mod data_lock;
pub mod files;
pub mod notify;
pub mod plan;
pub mod report;
pub mod server;
pub mod source;
pub mod store;
pub mod web;
