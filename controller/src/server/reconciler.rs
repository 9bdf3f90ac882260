//! What the controller offers a source that reconciles hosts itself (Kubernetes mode's Host
//! reconcile): what agents say, and a place for each host's version once it is in the Host's
//! status. The controller implements it (`server::hub`); the source only calls it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::compile::{Fleet, HostKey};
use crate::diagnostics::Finding;
use crate::facts::AgentRecord;
use crate::revision::Revision;
use crate::runs::RunRecord;
use crate::versions::Versioned;

/// What connected agents say, kept by the agent hub.
#[derive(Clone, Debug, Default)]
pub struct Agents {
    pub records: BTreeMap<HostKey, AgentRecord>,
    pub online: BTreeSet<HostKey>,
}

/// The agent hub, as the reconcile sees it: what agents say, and where a host's version goes
/// once it is in the Host's status.
pub trait Hub: Send + Sync {
    fn agents(&self) -> Agents;
    /// `host` is to run `version` of `fleet`, compiled from `revision`: push it if its agent
    /// is connected and runs another, and dispatch the revision's new run requests.
    fn adopt(
        &self,
        revision: &Arc<Revision>,
        fleet: &Arc<Fleet>,
        host: &HostKey,
        version: Versioned,
    );
    /// The desired state does not validate: the objects at fault show it (`Stalled`) until a
    /// revision is adopted.
    fn rejected(&self, findings: &[Finding]);
    /// The run records this process holds for `host` (its journal, since the pod started).
    fn runs(&self, host: &HostKey) -> Vec<RunRecord>;
}
