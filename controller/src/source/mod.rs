//! Where desired state comes from. Files mode reads a directory; Kubernetes mode (later) watches
//! the API server. Both produce a [`Revision`](crate::revision::Revision).

pub mod files;
pub mod position;
