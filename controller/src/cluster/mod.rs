//! Kubernetes mode: desired state from the API server instead of a directory, status through
//! the status subresource instead of SQLite. Compile, versions and status computation are the
//! same pure code as in files mode.
//!
//! - [`sink`]: status by server-side apply (field manager `holdfast`), coalesced; a Backup
//!   object for every run (AlreadyExists means recorded).
//! - [`auth`]: enrollment tokens and agent credentials as Secrets holding only hashes.
//! - [`lease`]: leader election on a `coordination.k8s.io` Lease.
//! - [`reconcile`]: a Host's desired version and status from reflector stores, for
//!   `kube-runtime`'s applier; versions continue from what Host status holds.
//! - [`secrets`]: Repo passwords and environment from Secret keys, only in the controller's
//!   namespaces, for the agents whose plans name them.
//! - [`agents`]: what the agent hub uses instead of the database and secret files.
//! - [`events`]: the controller's decisions as Events on the API server.
//! - [`writeback`]: the read model's Repo, Schedule, Backup and Restore status written to the
//!   API server, Backup records created and pruned.
//! - [`run`]: `holdfast controller --kube`, putting them together.

pub mod agents;
pub mod auth;
pub mod events;
pub mod lease;
pub mod reconcile;
pub mod run;
#[cfg(test)]
pub(crate) mod scripted;
pub mod secrets;
pub mod sink;
pub mod writeback;
