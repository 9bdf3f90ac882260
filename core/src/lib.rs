//! The pure core of Holdfast: the resources, a revision of them, validation, compile, versions,
//! host selection, cron, run records, status computation, restic's retention policy, and which
//! alerts notifiers send. Values in, values out: no tokio, no SQLite, no Kubernetes client, no
//! files. The controller (`holdfast`) adds every edge: where desired state is read, where status
//! goes, the agent hub and the web surfaces.

pub mod alerts;
pub mod compile;
pub mod crds;
pub mod cronspec;
pub mod decisions;
pub mod diagnostics;
pub mod diff;
pub mod facts;
pub mod notices;
pub mod records;
pub mod resources;
pub mod retention;
pub mod revision;
pub mod routing;
pub mod runs;
pub mod scrub;
pub mod secrets;
pub mod select;
pub mod snapshots;
pub mod status;
pub mod suggest;
pub mod summaries;
pub mod time;
pub mod validate;
pub mod versions;
