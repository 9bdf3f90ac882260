//! Notifier: where alerts go, for operators without Prometheus.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LabelSelector, SecretSource, conditions_schema};

/// What a Notifier declares: one receiver (exactly one of `webhook`, `ntfy`, `email` and
/// `alertmanager`), the events it wants, and for which hosts and schedules.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Notifier",
    namespaced,
    status = "NotifierStatus",
    category = "holdfast",
    shortname = "hfnotify",
    doc = "Where the controller sends alerts: a webhook, ntfy, email or Alertmanager.",
    printcolumn(name = "Firing", type_ = "integer", json_path = ".status.firing"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queued"),
    printcolumn(
        name = "Last delivery",
        type_ = "date",
        json_path = ".status.lastDelivery.time"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifierSpec {
    /// POST each alert as JSON to a URL, optionally signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookReceiver>,
    /// Publish each alert to an ntfy topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntfy: Option<NtfyReceiver>,
    /// Mail each alert through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailReceiver>,
    /// POST alerts to Alertmanager's `/api/v2/alerts`, which groups, silences and routes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerReceiver>,
    /// The events to send (default: every event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotifierEvent>,
    /// Only alerts about hosts with these labels (default: every host in the namespace).
    /// Alerts about no host (a repo's growth, a rejected revision) are not filtered by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
    /// Only alerts about schedules with these labels (default: every schedule). Alerts about
    /// no schedule are not filtered by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_selector: Option<LabelSelector>,
    /// Send a firing alert again this often while it lasts, such as `4h` (default: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// `AgentOffline` fires once an agent has been offline this long (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_offline_after: Option<String>,
    /// `DriftStuck` fires once a connected host has not applied its desired schedule version
    /// for this long (default `15m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_stuck_after: Option<String>,
    /// `RepoGrowth` fires when a repo's stored size is more than this many times its smallest
    /// size in the day before (default `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_growth_factor: Option<f64>,
}

/// A JSON POST per alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReceiver {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// A key for an HMAC-SHA256 of the body, sent as `X-Holdfast-Signature: sha256=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretSource>,
}

/// An ntfy topic (ntfy.sh or a server of your own).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NtfyReceiver {
    /// The topic's URL, such as `https://ntfy.sh/my-backups`.
    pub url: String,
    /// An access token, sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretSource>,
}

/// Mail through SMTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailReceiver {
    /// The SMTP server's host name.
    pub host: String,
    /// Its port (default: 587 for `StartTLS`, 465 for `TLS`, 25 for `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `StartTLS` (the default), `TLS` (implicit TLS) or `None` (plain text, only for a
    /// server on the same machine).
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of a certificate authority to trust for this server besides the system's:
    /// a path on the controller (in Kubernetes mode, mounted into its pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The sender, such as `Holdfast <holdfast@example.com>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// A user name to log in with (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password for `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SmtpTls {
    /// Plain text upgraded with STARTTLS, which the server must offer.
    #[default]
    #[serde(rename = "StartTLS")]
    StartTls,
    /// TLS from the first byte (SMTPS).
    #[serde(rename = "TLS")]
    Tls,
    /// No encryption.
    None,
}

impl SmtpTls {
    /// The port the protection is usually served on.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Alertmanager, whose routes, grouping, silences and receivers then apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertmanagerReceiver {
    /// Alertmanager's base URL, such as `http://alertmanager:9093`.
    pub url: String,
    /// A bearer token, for an Alertmanager behind an authenticating proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretSource>,
}

/// What a Notifier can be told about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum NotifierEvent {
    /// The last run of a schedule on a host that ran to an end failed.
    RunFailed,
    /// The last run of a schedule on a host that ran to an end left files out.
    RunPartiallyFailed,
    /// A schedule has not succeeded on a host within its `staleAfter`.
    ScheduleStale,
    /// A host's agent has been offline for `agentOfflineAfter`.
    AgentOffline,
    /// The last `restic check` of a repo found errors.
    CheckFailed,
    /// The newest revision of the desired state does not validate; the one before stays in force.
    RevisionRejected,
    /// A connected host has not applied its desired schedule version for `driftStuckAfter`.
    DriftStuck,
    /// A repo's stored size grew more than `repoGrowthFactor` times within a day.
    RepoGrowth,
}

impl NotifierEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifierEvent::RunFailed => "RunFailed",
            NotifierEvent::RunPartiallyFailed => "RunPartiallyFailed",
            NotifierEvent::ScheduleStale => "ScheduleStale",
            NotifierEvent::AgentOffline => "AgentOffline",
            NotifierEvent::CheckFailed => "CheckFailed",
            NotifierEvent::RevisionRejected => "RevisionRejected",
            NotifierEvent::DriftStuck => "DriftStuck",
            NotifierEvent::RepoGrowth => "RepoGrowth",
        }
    }
}

impl fmt::Display for NotifierEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How delivery to the receiver goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifierStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the last delivery worked (or none was due yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Alerts that fired and have not resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing: Option<u64>,
    /// Messages waiting to be delivered (retried with backoff while the receiver fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// The last message the receiver accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Delivery>,
    /// The last failed attempt to deliver, while it is newer than the last delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<DeliveryError>,
}

/// One message delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// When the receiver accepted it.
    pub time: Time,
    /// Its subject, such as `[FIRING] RunFailed: nightly on web-1`.
    pub message: String,
}

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryError {
    /// When the attempt failed.
    pub time: Time,
    /// Why, without any secret.
    pub message: String,
    /// Attempts of the message at the head of the queue so far.
    pub attempts: u32,
}
