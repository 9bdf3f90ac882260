//! What agents tell the controller about themselves and their repositories, as the status
//! computation takes it: plain values, wherever they are kept.

use chrono::{DateTime, Utc};

/// One agent as last seen; kept across restarts so drift stays visible while it is away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentRecord {
    pub applied_version: Option<u64>,
    pub applied_digest: Option<String>,
    /// Why the agent refused the last schedule it was sent.
    pub rejected: Option<String>,
    pub agent_version: Option<String>,
    pub restic_version: Option<String>,
    pub protocol_version: Option<u32>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A repo's size at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizePoint {
    pub at: DateTime<Utc>,
    pub total_size: u64,
    pub uncompressed_size: Option<u64>,
    pub snapshots: u64,
}
