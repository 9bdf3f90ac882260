//! `limit` and `continue`: a list served in pages, in (namespace, name) order, for the
//! Kubernetes-compatible lists and for `/api/v1/{plural}` alike.
//!
//! A page holds at most `limit` objects. When more remain, the list's `metadata.continue` is a
//! token (opaque to clients: hex of a small JSON object) naming the kind, the resourceVersion
//! of the first page and the key of the last object served; `continue=TOKEN` resumes after that
//! key. Pages after the first are served from the read model as it is then, not as it was at
//! the first page: an object created, changed or deleted between two requests shows as it is
//! when its page is served (or not at all if its key falls on a page already served). Every
//! page reports the first page's resourceVersion, so that a watch from it replays those
//! changes.
//!
//! The read model keeps Repos, Hosts and Schedules in vectors in the order they were built, so
//! a page of them costs one pass over the kind's metadata (no serialization, no full sort), a
//! partial selection of the `limit` first keys, and the serialization of the page alone.
//! Backups and Restores are read from the store in key order, as far as the page goes.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::Kind;
use crate::server::{Controller, ReadModel};
use crate::store::StoreError;

/// Why `limit` or `continue` cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("invalid limit {0:?}: expected a whole number")]
    Limit(String),
    #[error("continue key is not valid: {0}; list again without continue")]
    Continue(&'static str),
}

/// What a `continue` token holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continue {
    /// The kind listed; a token of another kind is refused.
    kind: String,
    /// The resourceVersion of the list's first page, carried from page to page.
    rv: i64,
    /// The key of the last object served.
    namespace: String,
    name: String,
}

impl Continue {
    pub fn encode(&self) -> String {
        // Serializing four plain fields cannot fail; an empty token would end the list.
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str, kind: Kind) -> Result<Continue, PageError> {
        let bytes = hex::decode(text).map_err(|_| PageError::Continue("not a token"))?;
        let token: Continue =
            serde_json::from_slice(&bytes).map_err(|_| PageError::Continue("not a token"))?;
        if token.kind != kind.as_str() {
            return Err(PageError::Continue("the token is for another kind"));
        }
        Ok(token)
    }

    /// The resourceVersion of the list's first page.
    pub fn resource_version(&self) -> i64 {
        self.rv
    }
}

/// The `limit` and `continue` of one list request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// At most this many objects; `None` for the whole list (`limit` absent, 0 or negative,
    /// as for the API server).
    pub limit: Option<usize>,
    pub after: Option<Continue>,
}

impl Paging {
    pub fn parse(
        limit: Option<&str>,
        continue_: Option<&str>,
        kind: Kind,
    ) -> Result<Paging, PageError> {
        let limit = match limit.unwrap_or_default() {
            "" => None,
            text => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| PageError::Limit(text.to_string()))?;
                usize::try_from(n).ok().filter(|&n| n > 0)
            }
        };
        let after = match continue_.unwrap_or_default() {
            "" => None,
            text => Some(Continue::decode(text, kind)?),
        };
        Ok(Paging { limit, after })
    }

    /// The resourceVersion every page of the list reports: the first page's, as the API
    /// server's pages do. A watch from it replays every change made while the client paged,
    /// also those to objects on pages already served.
    pub fn resource_version(&self, current: i64) -> i64 {
        self.after
            .as_ref()
            .map_or(current, Continue::resource_version)
    }

    /// Whether the request pages at all (`limit` or `continue` given).
    pub fn pages(&self) -> bool {
        self.limit.is_some() || self.after.is_some()
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The objects, as JSON, in (namespace, name) order.
    pub items: Vec<Value>,
    /// The token for the next page, when more remain.
    pub next: Option<String>,
    /// How many selected objects come after this page; not counted for Backups and Restores,
    /// which are read from the store only as far as the page goes.
    pub remaining: Option<usize>,
}

impl Page {
    /// Sets `continue` and `remainingItemCount` in a list's (or Table's) `metadata`.
    pub fn annotate(&self, metadata: &mut Value) {
        if let Some(token) = &self.next {
            metadata["continue"] = Value::String(token.clone());
            if let Some(remaining) = self.remaining {
                metadata["remainingItemCount"] = Value::from(remaining);
            }
        }
    }
}

fn key(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The page of `items` that `paging` asks for, among those `selects` keeps. `resource_version`
/// is the read model's, for the token of a first page.
pub fn page<K: Resource + Serialize>(
    items: &[Arc<K>],
    kind: Kind,
    paging: &Paging,
    resource_version: i64,
    selects: impl Fn(&ObjectMeta) -> bool,
) -> Page {
    let after = paging
        .after
        .as_ref()
        .map(|a| (a.namespace.as_str(), a.name.as_str()));
    let mut found: Vec<((&str, &str), &K)> = items
        .iter()
        .map(|o| (key(o.meta()), o.as_ref()))
        .filter(|(k, _)| after.is_none_or(|a| *k > a))
        .filter(|(_, o)| selects(o.meta()))
        .collect();
    let total = found.len();
    let by_key = |a: &((&str, &str), &K), b: &((&str, &str), &K)| -> Ordering { a.0.cmp(&b.0) };
    let limit = paging.limit.filter(|&l| l < total);
    if let Some(limit) = limit {
        // The `limit` smallest keys, in no order, then only they are sorted.
        found.select_nth_unstable_by(limit - 1, by_key);
        found.truncate(limit);
    }
    found.sort_unstable_by(by_key);
    let next = match (limit, found.last()) {
        (Some(_), Some(((namespace, name), _))) => Some(
            Continue {
                kind: kind.as_str().to_string(),
                rv: paging.resource_version(resource_version),
                namespace: namespace.to_string(),
                name: name.to_string(),
            }
            .encode(),
        ),
        _ => None,
    };
    Page {
        remaining: Some(total - found.len()),
        items: found
            .into_iter()
            .filter_map(|(_, o)| serde_json::to_value(o).ok())
            .collect(),
        next,
    }
}

/// The page of Repos, Hosts, Schedules or Notifiers; no Backups or Restores, which the read
/// model does not hold.
pub fn page_of_model(
    model: &ReadModel,
    kind: Kind,
    paging: &Paging,
    selects: impl Fn(&ObjectMeta) -> bool,
) -> Page {
    let rv = model.resource_version;
    match kind {
        Kind::Repo => page(&model.repos, kind, paging, rv, selects),
        Kind::Host => page(&model.hosts, kind, paging, rv, selects),
        Kind::Schedule => page(&model.schedules, kind, paging, rv, selects),
        Kind::Notifier => page(&model.notifiers, kind, paging, rv, selects),
        Kind::Backup | Kind::Restore | Kind::Snapshot => Page {
            items: Vec::new(),
            next: None,
            remaining: Some(0),
        },
    }
}

/// The page of `kind`: Repos, Hosts, Schedules and Notifiers from the read model, Backups and Restores
/// from the store. `namespace`: the one namespace listed, if any. `every`: `selects` keeps
/// every object (of the namespace), so the store can count what remains after a page without
/// reading it.
pub fn of_kind(
    controller: &Controller,
    model: &ReadModel,
    kind: Kind,
    paging: &Paging,
    (namespace, every): (Option<&str>, bool),
    selects: impl Fn(&ObjectMeta) -> bool,
) -> Result<Page, StoreError> {
    let rv = model.resource_version;
    Ok(match kind {
        Kind::Repo | Kind::Host | Kind::Schedule | Kind::Notifier => {
            page_of_model(model, kind, paging, selects)
        }
        Kind::Backup | Kind::Restore | Kind::Snapshot => {
            let after = paging
                .after
                .as_ref()
                .map(|a| (a.namespace.as_str(), a.name.as_str()));
            let (items, more) =
                controller.records_page(kind, namespace, after, paging.limit, &mut |object| {
                    serde_json::from_value::<ObjectMeta>(object["metadata"].clone())
                        .is_ok_and(|m| selects(&m))
                })?;
            let last = more.then(|| items.last()).flatten().map(|last| {
                let text = |field: &str| {
                    last["metadata"][field]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                };
                Continue {
                    kind: kind.as_str().to_string(),
                    rv: paging.resource_version(rv),
                    namespace: text("namespace"),
                    name: text("name"),
                }
            });
            let remaining = match &last {
                Some(last) if every => {
                    let after = (last.namespace.as_str(), last.name.as_str());
                    controller.records_after(kind, namespace, after)?
                }
                Some(_) => None,
                None => Some(0),
            };
            Page {
                items,
                next: last.map(|l| l.encode()),
                remaining,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Host, HostSpec};

    fn host(namespace: &str, name: &str) -> Host {
        let mut h = Host::new(name, HostSpec::default());
        h.metadata.namespace = Some(namespace.into());
        h
    }

    fn names(page: &Page) -> Vec<String> {
        page.items
            .iter()
            .map(|o| {
                format!("{}/{}", o["metadata"]["namespace"], o["metadata"]["name"]).replace('"', "")
            })
            .collect()
    }

    fn all(_: &ObjectMeta) -> bool {
        true
    }

    /// Unsorted, as the read model may hold them.
    fn hosts() -> Vec<Arc<Host>> {
        [
            host("prod", "b"),
            host("default", "c"),
            host("prod", "a"),
            host("default", "a"),
            host("default", "b"),
        ]
        .map(Arc::new)
        .to_vec()
    }

    #[test]
    fn pages_follow_each_other_in_namespace_and_name_order() {
        let items = hosts();
        let mut paging = Paging::parse(Some("2"), None, Kind::Host).expect("parses");
        let mut seen = Vec::new();
        let mut remaining = Vec::new();
        loop {
            let p = page(&items, Kind::Host, &paging, 7, all);
            assert!(p.items.len() <= 2);
            seen.extend(names(&p));
            remaining.push(p.remaining);
            let Some(token) = p.next else { break };
            paging = Paging::parse(Some("2"), Some(&token), Kind::Host).expect("its own token");
            assert_eq!(
                paging.after.as_ref().map(Continue::resource_version),
                Some(7)
            );
        }
        assert_eq!(
            seen,
            ["default/a", "default/b", "default/c", "prod/a", "prod/b"]
        );
        assert_eq!(remaining, [Some(3), Some(1), Some(0)]);
    }

    #[test]
    fn without_a_limit_the_list_is_whole_and_sorted() {
        let p = page(&hosts(), Kind::Host, &Paging::default(), 1, all);
        assert_eq!(p.items.len(), 5);
        assert_eq!(names(&p)[0], "default/a");
        assert!(p.next.is_none());
        // A limit at least the size of the list is one page too.
        let paging = Paging::parse(Some("5"), None, Kind::Host).expect("parses");
        let p = page(&hosts(), Kind::Host, &paging, 1, all);
        assert_eq!((p.items.len(), p.next, p.remaining), (5, None, Some(0)));
    }

    #[test]
    fn selection_comes_before_paging() {
        let paging = Paging::parse(Some("1"), None, Kind::Host).expect("parses");
        let prod = |m: &ObjectMeta| m.namespace.as_deref() == Some("prod");
        let p = page(&hosts(), Kind::Host, &paging, 1, prod);
        assert_eq!(
            (names(&p), p.remaining),
            (vec!["prod/a".to_string()], Some(1))
        );
        let token = p.next.expect("one more");
        let paging = Paging::parse(Some("1"), Some(&token), Kind::Host).expect("parses");
        let p = page(&hosts(), Kind::Host, &paging, 1, prod);
        assert_eq!((names(&p), p.next), (vec!["prod/b".to_string()], None));
    }

    #[test]
    fn a_page_resumes_after_the_key_even_when_the_list_changed() {
        let paging = Paging::parse(Some("2"), None, Kind::Host).expect("parses");
        let token = page(&hosts(), Kind::Host, &paging, 1, all)
            .next
            .expect("more");
        // default/b (the last served) is gone and default/bb is new: served from the model now.
        let mut now = hosts();
        now.retain(|h| h.metadata.name.as_deref() != Some("b"));
        now.push(Arc::new(host("default", "bb")));
        let paging = Paging::parse(Some("10"), Some(&token), Kind::Host).expect("parses");
        let p = page(&now, Kind::Host, &paging, 2, all);
        assert_eq!(names(&p), ["default/bb", "default/c", "prod/a"]);
    }

    #[test]
    fn bad_limits_and_tokens_are_refused() {
        assert_eq!(
            Paging::parse(Some("ten"), None, Kind::Host),
            Err(PageError::Limit("ten".into()))
        );
        for limit in ["0", "-3"] {
            assert_eq!(
                Paging::parse(Some(limit), None, Kind::Host).map(|p| p.limit),
                Ok(None)
            );
        }
        for token in ["zz", "abcd", &hex::encode("{\"kind\":\"Host\"}")] {
            assert!(matches!(
                Paging::parse(None, Some(token), Kind::Host),
                Err(PageError::Continue(_))
            ));
        }
        let paging = Paging::parse(Some("1"), None, Kind::Host).expect("parses");
        let token = page(&hosts(), Kind::Host, &paging, 1, all)
            .next
            .expect("more");
        assert_eq!(
            Paging::parse(None, Some(&token), Kind::Backup),
            Err(PageError::Continue("the token is for another kind"))
        );
        let message = PageError::Continue("not a token").to_string();
        assert!(
            message.starts_with("continue key is not valid"),
            "{message}"
        );
    }
}
