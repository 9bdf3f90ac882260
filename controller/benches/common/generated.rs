//! The generated fleet the benchmarks share: 10,000 hosts in 100 groups of 100, each group with
//! its own 5 schedules (two backups, a forget, a prune, a check) selected by label, over 10 repos.

use std::fmt::Write;

use holdfast::source::files::SourceFile;

pub const HOSTS: usize = 10_000;
pub const GROUPS: usize = 100;

pub fn fleet() -> Vec<SourceFile> {
    let mut repos = String::new();
    for r in 0..10 {
        let _ = write!(
            repos,
            "---\napiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: repo-{r}\nspec:\n  url: rest:http://nas-{r}.internal:8000/fleet/\n  password:\n    hostFile: /etc/holdfast/repo-{r}.password\n  admin:\n    url: rest:http://nas-{r}.internal:8001/fleet/\n"
        );
    }
    let mut hosts = String::new();
    for h in 0..HOSTS {
        let _ = write!(
            hosts,
            "---\napiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: host-{h:05}\n  labels:\n    group: g{:03}\n    site: site-{}\nspec:\n  defaultRepo: repo-{}\n  defaults:\n    excludes: [/var/cache, /tmp]\n",
            h % GROUPS,
            h % 7,
            h % 10
        );
    }
    let mut schedules = String::new();
    for g in 0..GROUPS {
        let selector = format!("  hostSelector:\n    matchLabels: {{group: g{g:03}}}\n");
        let _ = write!(
            schedules,
            "---\napiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: g{g:03}-nightly\nspec:\n  operation: backup\n  cron: '30 1 * * *'\n  timeZone: Europe/Berlin\n  jitter: 30m\n{selector}  paths: [/etc, /home, /srv]\n  excludes: ['*.tmp']\n  hooks:\n    pre: [{{command: [sh, -c, 'dpkg --get-selections > /var/backups/dpkg.txt'], timeout: 2m}}]\n\
             ---\napiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: g{g:03}-hourly\nspec:\n  operation: backup\n  cron: '0 * * * *'\n{selector}  paths: [/var/lib/app]\n  tags: [hourly]\n\
             ---\napiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: g{g:03}-forget\nspec:\n  operation: forget\n  cron: '0 5 * * 0'\n{selector}  retention: {{keepDaily: 7, keepWeekly: 5, keepMonthly: 12}}\n  prune: true\n\
             ---\napiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: g{g:03}-prune\nspec:\n  operation: prune\n  cron: '0 6 1 * *'\n{selector}\
             ---\napiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: g{g:03}-check\nspec:\n  operation: check\n  cron: '0 7 1 * *'\n{selector}  readDataSubset: 5%\n"
        );
    }
    vec![
        SourceFile::new("repos.yaml", repos),
        SourceFile::new("hosts.yaml", hosts),
        SourceFile::new("schedules.yaml", schedules),
    ]
}
