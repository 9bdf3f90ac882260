//! Types shared by the Holdfast controller and agent. No kube, no I/O: this crate is what both
//! sides agree on, so that a plan compiled by one is exactly what the other runs.

pub mod messages;
pub mod plan;

pub use messages::*;
pub use plan::*;

#[cfg(test)]
mod tests;
