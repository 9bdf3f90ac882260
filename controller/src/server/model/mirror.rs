//! A follower in Kubernetes mode computes nothing: it shows the objects as the cluster holds
//! them, with the status the leader wrote. Backups and Restores are written to the store only
//! when the cluster's copy changed.

use std::collections::HashSet;

use chrono::Utc;
use kube::Resource;
use kube::runtime::reflector::Store as Reflector;

use std::sync::Arc;

use super::History;
use super::settle::{HasStatus, Record, Writer};
use super::{Controller, Objects, publish};
use crate::records::RecordId;
use crate::resources::{Backup, Kind};
use crate::revision::{name_of, namespace_of};
use crate::runs::is_final;
use crate::server::backend::Stores;
use crate::store::{Store, StoreError};

pub fn mirror(controller: &Controller, stores: &Stores) -> Result<(), StoreError> {
    fn all<K>(writer: &mut Writer, kind: Kind, reflector: &Reflector<K>) -> Vec<Arc<K>>
    where
        K: HasStatus + Resource<DynamicType = ()> + Clone + 'static,
    {
        reflector
            .state()
            .iter()
            .map(|o| {
                let object = (**o).clone();
                let held = object.conditions();
                Arc::new(writer.settle(kind, object, held))
            })
            .collect()
    }
    let previous = controller.model();
    // Becoming the leader again, it computes everything anew.
    controller.index().reset();
    let mut history = controller.records();
    let mut store = controller.store();
    history.follow(&store)?;
    let mut writer = Writer::new(&previous, Utc::now(), false);
    let repos = all(&mut writer, Kind::Repo, &stores.repos);
    let hosts = all(&mut writer, Kind::Host, &stores.hosts);
    let schedules = all(&mut writer, Kind::Schedule, &stores.schedules);
    let notifiers = all(&mut writer, Kind::Notifier, &stores.notifiers);
    // Nothing is computed from them while following.
    store.take_saved_runs();
    let mut seen = HashSet::new();
    let backups = records(
        &mut writer,
        &store,
        &mut history,
        &stores.backups,
        &mut seen,
    )?;
    records(
        &mut writer,
        &store,
        &mut history,
        &stores.restores,
        &mut seen,
    )?;
    for id in history.mirror_gone(&seen) {
        let served = store.stored_object(&id)?.and_then(|(_, served)| served);
        writer.delete_record(id, served);
    }
    let revisions = store.revisions()?;
    drop(store);
    drop(history);
    let mut active: Vec<Backup> = backups
        .iter()
        .filter(|b| !is_final_backup(b))
        .map(|b| (**b).clone())
        .collect();
    active.sort_by_key(|b| std::cmp::Reverse(b.metadata.creation_timestamp.clone()));
    let objects = Objects {
        repos,
        hosts,
        schedules,
        notifiers,
        active,
    };
    publish(controller, &previous, writer, revisions, objects)
}

/// Settles the Backups or Restores the cluster changed since the last pass; returns them all.
fn records<K>(
    writer: &mut Writer,
    store: &Store,
    history: &mut History,
    reflector: &Reflector<K>,
    seen: &mut HashSet<RecordId>,
) -> Result<Vec<Arc<K>>, StoreError>
where
    K: Record,
{
    let all = reflector.state();
    for object in &all {
        let id = (
            K::KIND,
            namespace_of(&**object).to_string(),
            name_of(&**object).to_string(),
        );
        seen.insert(id.clone());
        if history.mirror_changed(&id, object.meta().resource_version.as_deref()) {
            let before = store.stored_object(&id)?;
            writer.settle_record(K::KIND, (**object).clone(), before.as_ref());
        }
    }
    Ok(all)
}

fn is_final_backup(backup: &Backup) -> bool {
    backup
        .status
        .as_ref()
        .and_then(|s| s.run.phase)
        .is_none_or(is_final)
}
