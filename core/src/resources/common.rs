//! Types that several kinds share: secret sources, hooks, selectors, conditions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group and version of every Holdfast kind.
pub const API_VERSION: &str = "holdfast.dev/v1alpha1";
pub const GROUP: &str = "holdfast.dev";
pub const VERSION: &str = "v1alpha1";
/// The namespace of a files-mode resource that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The label on the Backups Holdfast records from runs. A Backup or Restore without it was
/// created by a person (or a GitOps tool): a run request.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "holdfast");

/// Where a secret value comes from. Exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// A key of a Secret in the resource's namespace (Kubernetes mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// Path of a file on the controller's machine, which the controller reads; a repo's secret
    /// goes only to the agents that need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Path of a file on the agent's host; its contents never leave that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_file: Option<String>,
}

/// A key in a Kubernetes Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret, in the same namespace.
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// An environment variable given to restic, such as cloud credentials for the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name, such as `AWS_ACCESS_KEY_ID`.
    pub name: String,
    /// A plain value, for what is not secret. Exactly one of `value` and `valueFrom` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where a secret value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretSource>,
}

/// Commands run around a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// Run in order before the backup; the first that fails aborts the backup (reason PreHookFailed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<HookSpec>,
    /// Run in order after the backup whatever its result, with `HOLDFAST_JOB_STATUS` set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<HookSpec>,
}

/// A command run without a shell; use `["sh", "-c", "..."]` for one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Killed after this long, such as `5m` (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Selects hosts by their labels, as Kubernetes label selectors do. An empty selector selects
/// every host in the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a host must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// One of `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// How a label selector requirement compares a label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether a host with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::NotIn => !value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// The phase of one run (a Backup or a Restore).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Dispatched,
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
    Missed,
    Skipped,
    Cancelled,
}

/// Schema of every status's `conditions`: a list-map keyed by `type`, as `metav1.Condition`
/// lists are, so that server-side apply merges conditions by type.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn empty_selector_selects_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let sel = LabelSelector {
            match_labels: labels(&[("role", "db"), ("site", "fra")]),
            match_expressions: vec![],
        };
        assert!(sel.matches(&labels(&[("role", "db"), ("site", "fra"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("role", "db")])));
        assert!(!sel.matches(&labels(&[("role", "web"), ("site", "fra")])));
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let host = labels(&[("tier", "gold")]);
        use SelectorOperator::*;
        assert!(requirement("tier", In, &["gold", "silver"]).matches(&host));
        assert!(!requirement("tier", In, &["bronze"]).matches(&host));
        assert!(!requirement("tier", NotIn, &["gold"]).matches(&host));
        assert!(requirement("zone", NotIn, &["a"]).matches(&host));
        assert!(requirement("tier", Exists, &[]).matches(&host));
        assert!(!requirement("zone", Exists, &[]).matches(&host));
        assert!(requirement("zone", DoesNotExist, &[]).matches(&host));
    }
}
