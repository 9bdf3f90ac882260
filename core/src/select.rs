//! Which hosts a schedule applies to: by name and by label selector, within its namespace.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;

use crate::resources::{Host, LabelSelector, Schedule};
use crate::revision::{name_of, namespace_of};

/// Hosts indexed for selection, so that a fleet of many schedules does not compare every
/// schedule with every host.
pub struct HostIndex<'a> {
    hosts: &'a [Host],
    by_name: HashMap<(&'a str, &'a str), usize>,
    by_namespace: HashMap<&'a str, Vec<usize>>,
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
}

impl<'a> HostIndex<'a> {
    pub fn new(hosts: &'a [Host]) -> Self {
        let mut index = HostIndex {
            hosts,
            by_name: HashMap::new(),
            by_namespace: HashMap::new(),
            by_label: HashMap::new(),
        };
        for (i, host) in hosts.iter().enumerate() {
            let ns = namespace_of(host);
            index.by_name.insert((ns, name_of(host)), i);
            index.by_namespace.entry(ns).or_default().push(i);
            for (k, v) in host.labels() {
                index.by_label.entry((ns, k, v)).or_default().push(i);
            }
        }
        index
    }

    /// The hosts `schedule` applies to, sorted by name, each once.
    pub fn select(&self, schedule: &Schedule) -> Vec<&'a Host> {
        let ns = namespace_of(schedule);
        let mut selected: BTreeMap<&str, &'a Host> = BTreeMap::new();
        let mut add = |i: usize| {
            let host = &self.hosts[i];
            selected.insert(name_of(host), host);
        };
        for name in &schedule.spec.hosts {
            if let Some(i) = self.by_name.get(&(ns, name.as_str())) {
                add(*i);
            }
        }
        if let Some(selector) = &schedule.spec.host_selector {
            self.matching(ns, selector).for_each(add);
        }
        selected.into_values().collect()
    }

    /// Indexes of the hosts in `namespace` that `selector` matches.
    pub fn matching<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s LabelSelector,
    ) -> impl Iterator<Item = usize> + 's {
        // Start from the hosts carrying one required label when there is one.
        let candidates = match selector.match_labels.iter().next() {
            Some((k, v)) => self.by_label.get(&(namespace, k.as_str(), v.as_str())),
            None => self.by_namespace.get(namespace),
        };
        candidates
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| selector.matches(self.hosts[i].labels()))
    }
}
