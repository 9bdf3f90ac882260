//! The Holdfast controller: desired state from files or Kubernetes, compiled into versioned
//! per-host plans, and status written back.
//!
//! The pure core — [`validate`], [`compile`], [`versions`], [`plan`] — takes resources and
//! returns values; reading files ([`source`]) and the database ([`store`]) sit at the edges.

pub mod cluster;
pub mod compile;
pub mod crds;
pub mod cronspec;
pub mod diagnostics;
pub mod plan;
pub mod resources;
pub mod revision;
pub mod runs;
pub mod secrets;
pub mod select;
pub mod server;
pub mod source;
pub mod status;
pub mod store;
pub mod suggest;
pub mod time;
pub mod validate;
pub mod versions;
pub mod web;
