//! Fixtures shared by the integration tests.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

/// A Kubernetes API-server stand-in for Kubernetes mode, in the test process (`tests/kube_e2e.rs`).
pub mod apiserver;
/// A TCP load balancer over controller replicas, as a Service is (`tests/kube_e2e.rs`).
pub mod balancer;
/// The agent built for Windows and arm64, run under wine and qemu-user (`tests/platforms.rs`).
pub mod cross;
/// The end-to-end harness: real controller, agent and restic processes (`tests/fleet.rs`).
pub mod fleet;
/// An HTTP receiver of notifications on loopback (`tests/notify.rs`, `tests/kube_e2e.rs`).
pub mod receiver;

use holdfast::source::files::{Loaded, SourceFile, load_sources};

pub const REPO: &str = "\
apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata:
  name: nas
spec:
  url: /srv/restic/nas
  password:
    hostFile: /etc/holdfast/nas.password
";

pub const HOSTS: &str = "\
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata:
  name: web-1
  labels: {role: web}
spec:
  defaultRepo: nas
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata:
  name: db-1
  labels: {role: db}
spec:
  defaultRepo: nas
";

pub const SCHEDULE: &str = "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  operation: backup
  cron: '0 2 * * *'
  hostSelector:
    matchLabels: {role: web}
  paths: [/etc]
";

/// Loads files given as `(name, text)`.
pub fn load(files: &[(&str, &str)]) -> Loaded {
    load_sources(
        files
            .iter()
            .map(|(name, text)| SourceFile::new(*name, *text))
            .collect(),
    )
}

/// The diagnostics of a fleet made of the base repo and hosts plus `extra` files.
pub fn diagnostics(extra: &[(&str, &str)]) -> Vec<String> {
    let mut files = vec![("repo.yaml", REPO), ("hosts.yaml", HOSTS)];
    files.extend_from_slice(extra);
    load(&files)
        .diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect()
}
