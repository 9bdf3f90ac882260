//! What the API serves, read from the CRDs: names, short names, categories and printer columns
//! come from the same `#[kube(...)]` attributes that generate `crds/`, so `kubectl` sees the
//! same resource here as in a cluster.

use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
};

use super::selector;
use super::table::Column;
use crate::crds::crd;
use crate::resources::Kind;

/// The Kubernetes release whose API types (k8s-openapi's `latest`) this server is built with;
/// `/version` reports it so that `kubectl version` and its skew warning have something to read.
const KUBERNETES_MAJOR: &str = "1";
const KUBERNETES_MINOR: &str = "37";

pub const GROUP: &str = "holdfast.dev";
pub const VERSION: &str = "v1alpha1";
pub const GROUP_VERSION: &str = "holdfast.dev/v1alpha1";

/// `GET /version`, as an API server answers it: the Kubernetes version, then Holdfast's own in
/// `gitVersion`'s pre-release part and its commit in `gitCommit`.
pub fn version() -> k8s_openapi::apimachinery::pkg::version::Info {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    k8s_openapi::apimachinery::pkg::version::Info {
        major: KUBERNETES_MAJOR.into(),
        minor: KUBERNETES_MINOR.into(),
        git_version: format!(
            "v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-holdfast.{}",
            env!("CARGO_PKG_VERSION")
        ),
        git_commit: env!("HOLDFAST_COMMIT").into(),
        git_tree_state: "clean".into(),
        compiler: "rustc".into(),
        platform: format!("{}/{arch}", std::env::consts::OS),
        ..Default::default()
    }
}

/// One kind as the API serves it.
pub struct Served {
    pub kind: Kind,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// `Name`, then the CRD's printer columns.
    pub columns: Vec<Column>,
    /// What a field selector may name: the name, the namespace, and the CRD's selectable fields.
    pub fields: Vec<String>,
}

/// Every kind, in the order of [`Kind::ALL`].
pub fn served() -> &'static [Served] {
    static SERVED: OnceLock<Vec<Served>> = OnceLock::new();
    SERVED.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|kind| {
                let crd = crd(kind);
                let names = crd.spec.names;
                let version = crd.spec.versions.into_iter().find(|v| v.name == VERSION);
                let selectable = version
                    .as_ref()
                    .and_then(|v| v.selectable_fields.clone())
                    .unwrap_or_default();
                let printer = version
                    .and_then(|v| v.additional_printer_columns)
                    .unwrap_or_default();
                Served {
                    kind,
                    singular: names
                        .singular
                        .unwrap_or_else(|| kind.as_str().to_lowercase()),
                    plural: names.plural,
                    short_names: names.short_names.unwrap_or_default(),
                    categories: names.categories.unwrap_or_default(),
                    columns: std::iter::once(Column::name())
                        .chain(printer.iter().map(Column::from_crd))
                        .collect(),
                    fields: selector::NAME_AND_NAMESPACE
                        .iter()
                        .map(|f| f.to_string())
                        .chain(
                            selectable
                                .into_iter()
                                .map(|f| f.json_path.trim_start_matches('.').to_string()),
                        )
                        .collect(),
                }
            })
            .collect()
    })
}

/// The kind served under `plural` (the only form `kubectl` puts in a URL).
pub fn by_plural(plural: &str) -> Option<&'static Served> {
    served().iter().find(|s| s.plural == plural)
}

pub fn of(kind: Kind) -> &'static Served {
    served()
        .iter()
        .find(|s| s.kind == kind)
        .expect("every kind is served")
}

/// `GET /api`: the core group, for its Events alone.
pub fn api_versions() -> APIVersions {
    APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: Vec::new(),
    }
}

/// `GET /apis`: Holdfast's group, and `events.k8s.io` for Events.
pub fn group_list() -> APIGroupList {
    APIGroupList {
        groups: vec![group(), super::events::events_group()],
    }
}

/// `GET /apis/holdfast.dev`.
pub fn group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: GROUP_VERSION.into(),
        version: VERSION.into(),
    };
    APIGroup {
        name: GROUP.into(),
        preferred_version: Some(version.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![version],
    }
}

/// `GET /apis/holdfast.dev/v1alpha1`: the six kinds, read-only, and their status subresources.
pub fn resource_list() -> APIResourceList {
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut resources = Vec::new();
    for s in served() {
        resources.push(APIResource {
            name: s.plural.clone(),
            singular_name: s.singular.clone(),
            namespaced: true,
            kind: s.kind.as_str().into(),
            verbs: verbs(&["get", "list", "watch"]),
            short_names: Some(s.short_names.clone()),
            categories: Some(s.categories.clone()),
            group: None,
            version: None,
            storage_version_hash: None,
        });
        resources.push(APIResource {
            name: format!("{}/status", s.plural),
            singular_name: String::new(),
            namespaced: true,
            kind: s.kind.as_str().into(),
            verbs: verbs(&["get"]),
            short_names: None,
            categories: None,
            group: None,
            version: None,
            storage_version_hash: None,
        });
    }
    APIResourceList {
        group_version: GROUP_VERSION.into(),
        resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_served_with_the_names_of_its_crd() {
        let backup = by_plural("backups").expect("backups are served");
        assert_eq!(backup.kind, Kind::Backup);
        assert_eq!(backup.singular, "backup");
        assert_eq!(backup.short_names, ["hfbackup"]);
        assert_eq!(backup.categories, ["holdfast"]);
        assert!(by_plural("backup").is_none(), "URLs use the plural");
        for kind in Kind::ALL {
            let crd = crd(kind);
            assert_eq!(of(kind).plural, crd.spec.names.plural);
        }
    }

    #[test]
    fn discovery_documents_have_their_kinds_and_the_read_verbs() {
        let list = serde_json::to_value(resource_list()).expect("serialises");
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "holdfast.dev/v1alpha1");
        let hosts = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "hosts")
            .expect("hosts");
        assert_eq!(hosts["kind"], "Host");
        assert_eq!(hosts["namespaced"], true);
        assert_eq!(hosts["verbs"], serde_json::json!(["get", "list", "watch"]));
        assert_eq!(hosts["shortNames"], serde_json::json!(["hfhost"]));
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names.len(), 14);
        assert!(names.contains(&"restores/status"));
        assert!(names.contains(&"snapshots/status"));
        assert!(names.contains(&"notifiers/status"));

        let groups = serde_json::to_value(group_list()).expect("serialises");
        assert_eq!(groups["kind"], "APIGroupList");
        assert_eq!(groups["groups"][0]["name"], "holdfast.dev");
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "holdfast.dev/v1alpha1"
        );
        assert_eq!(groups["groups"][1]["name"], "events.k8s.io");
        let core = serde_json::to_value(api_versions()).expect("serialises");
        assert_eq!(core["kind"], "APIVersions");
        assert_eq!(core["versions"], serde_json::json!(["v1"]));
    }
}
