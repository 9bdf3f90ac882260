//! What the controller offers a source that reconciles hosts itself (Kubernetes mode's Host
//! reconcile): what each agent applied, and a place for each host's version. The controller
//! implements it (`server::hub`); the source only calls it.

use std::sync::Arc;

use crate::compile::{Fleet, HostKey};
use crate::diagnostics::Finding;
use crate::revision::Revision;
use crate::versions::Versioned;

/// The agent hub, as the reconcile sees it.
pub trait Hub: Send + Sync {
    /// The version `host`'s agent says it applied.
    fn applied(&self, host: &HostKey) -> Option<Versioned>;
    /// `host` is to run `version` of `fleet`, compiled from `revision`: push it once the
    /// backend holds it (and if its agent is connected and runs another), and dispatch the
    /// revision's new run requests.
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
}
