use super::*;
use std::sync::Arc;

/// What the schedules' status says about one host.
#[derive(Clone, Default)]
pub(super) struct HostSchedules<'a> {
    /// The earliest next run of any schedule.
    pub(super) next: Option<&'a Time>,
    /// The schedules stale on it.
    pub(super) stale: Vec<&'a str>,
    /// The schedules whose newest run on it was missed or skipped.
    pub(super) missed: Vec<&'a str>,
    /// The worst end of a schedule's newest run on it, when it failed in whole or in part:
    /// a failed forget or check counts as much as a failed backup.
    pub(super) failed: Option<Phase>,
}

pub(super) type ScheduleIndex<'a> = HashMap<(&'a str, &'a str), HostSchedules<'a>>;

pub(super) static NO_SCHEDULES: HostSchedules<'static> = HostSchedules {
    next: None,
    stale: Vec::new(),
    missed: Vec::new(),
    failed: None,
};

pub(super) fn schedules_of<'a, 'i>(
    index: &'i ScheduleIndex<'a>,
    host: &'a Host,
) -> &'i HostSchedules<'a> {
    index
        .get(&(namespace_of(host), name_of(host)))
        .unwrap_or(&NO_SCHEDULES)
}

/// Failed is worse than partially failed.
pub(super) fn worse(a: Option<Phase>, b: Option<Phase>) -> Option<Phase> {
    match (a, b) {
        (Some(Phase::Failed), _) | (_, Some(Phase::Failed)) => Some(Phase::Failed),
        (a, b) => a.or(b),
    }
}

impl<'a> HostSchedules<'a> {
    /// Takes in what one schedule's status says about this host.
    fn add(&mut self, schedule: &'a str, entry: &'a ScheduleHostStatus) {
        if entry.stale {
            self.stale.push(schedule);
        }
        match entry.last_result {
            Some(Phase::Missed | Phase::Skipped) => self.missed.push(schedule),
            Some(phase @ (Phase::Failed | Phase::PartiallyFailed)) => {
                self.failed = worse(self.failed, Some(phase));
            }
            _ => {}
        }
        if let Some(t) = &entry.next_schedule_time
            && self.next.is_none_or(|earliest| t.0 < earliest.0)
        {
            self.next = Some(t);
        }
    }
}

/// Every host's schedule entries by (namespace, host), gathered in one pass over the schedules'
/// status: each schedule lists every host it runs on, so searching those lists per host is
/// quadratic in the fleet's size.
pub(super) fn schedule_index(schedules: &[Arc<Schedule>], hosts: usize) -> ScheduleIndex<'_> {
    let mut index: ScheduleIndex = HashMap::with_capacity(hosts);
    for schedule in schedules {
        let namespace = namespace_of(schedule.as_ref());
        let name = name_of(schedule.as_ref());
        for entry in schedule.status.iter().flat_map(|s| &s.hosts) {
            index
                .entry((namespace, entry.host.as_str()))
                .or_default()
                .add(name, entry);
        }
    }
    index
}

/// One host's schedule entries, searched for in every schedule's status: for one row, where
/// indexing the whole fleet would cost more.
pub(super) fn host_schedules<'a>(
    schedules: &'a [Arc<Schedule>],
    namespace: &str,
    host: &str,
) -> HostSchedules<'a> {
    let mut found = HostSchedules::default();
    for schedule in schedules
        .iter()
        .filter(|s| namespace_of(s.as_ref()) == namespace)
    {
        if let Some(entry) = host_entry(schedule, host) {
            found.add(name_of(schedule.as_ref()), entry);
        }
    }
    found
}

/// How many hosts need each kind of attention, of how many: what the summary cards show.
/// It reads only the read model's objects, so one count serves every page and client until
/// the model changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    counts: [usize; HostFilter::ALL.len()],
}

impl Tally {
    /// Counts every host of the fleet.
    pub fn of(hosts: &[Arc<Host>], schedules: &[Arc<Schedule>]) -> Tally {
        Tally::counted(hosts, &schedule_index(schedules, hosts.len()))
    }

    pub(super) fn counted(hosts: &[Arc<Host>], index: &ScheduleIndex) -> Tally {
        let mut tally = Tally {
            total: hosts.len(),
            ..Tally::default()
        };
        for host in hosts {
            let schedules = schedules_of(index, host);
            for (n, filter) in HostFilter::ALL.into_iter().enumerate() {
                tally.counts[n] += usize::from(needs(host, schedules, filter));
            }
        }
        tally
    }

    /// The hosts that need `filter`'s attention.
    pub fn count(&self, filter: HostFilter) -> usize {
        HostFilter::ALL
            .into_iter()
            .position(|f| f == filter)
            .map_or(0, |n| self.counts[n])
    }
}

pub(super) fn needs(host: &Host, schedules: &HostSchedules, filter: HostFilter) -> bool {
    match filter {
        HostFilter::Failed => failed(host, schedules).is_some(),
        HostFilter::Stale => !schedules.stale.is_empty(),
        HostFilter::Missed => !schedules.missed.is_empty(),
        HostFilter::Offline => !is_online(host),
        HostFilter::Drifting => drifting(host.status.as_ref()),
    }
}

pub(super) fn is_online(host: &Host) -> bool {
    host.status.as_ref().and_then(|s| s.online).unwrap_or(false)
}

/// The agent runs another schedule version than the controller wants.
pub(super) fn drifting(status: Option<&HostStatus>) -> bool {
    status.is_some_and(|s| {
        s.desired_schedule_version.is_some()
            && s.applied_schedule_version != s.desired_schedule_version
    })
}

/// How the host's last backup or a schedule's newest run on it failed, in whole or in part.
pub(super) fn failed(host: &Host, schedules: &HostSchedules) -> Option<Phase> {
    let backup = host
        .status
        .as_ref()
        .and_then(|s| s.last_backup.as_ref())
        .map(|l| l.phase)
        .filter(|p| matches!(p, Phase::Failed | Phase::PartiallyFailed));
    worse(backup, schedules.failed)
}
pub(super) fn host_entry<'a>(schedule: &'a Schedule, host: &str) -> Option<&'a ScheduleHostStatus> {
    schedule
        .status
        .as_ref()?
        .hosts
        .iter()
        .find(|e| e.host == host)
}

pub(super) fn host_count(schedule: &Schedule) -> u64 {
    schedule
        .status
        .as_ref()
        .map_or(0, |s| s.host_count.map_or(s.hosts.len() as u64, u64::from))
}

pub(super) fn stale_hosts(schedule: &Schedule) -> u64 {
    schedule.status.as_ref().map_or(0, |s| {
        s.stale_hosts.map_or_else(
            || s.hosts.iter().filter(|e| e.stale).count() as u64,
            u64::from,
        )
    })
}
