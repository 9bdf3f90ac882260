//! From YAML text to every host's digest, for a generated fleet of 10,000 hosts with 5 schedules
//! each (100 groups of 100 hosts; each group has its own 5 schedules, selected by label).
//!
//! Run: `cargo bench -p holdfast --bench compile`. Prints the fastest and the median of the
//! timed runs, after one warm-up.

use std::fmt::Write;
use std::time::{Duration, Instant};

use holdfast::compile::compile;
use holdfast::source::files::{SourceFile, load_sources};

const HOSTS: usize = 10_000;
const GROUPS: usize = 100;
const RUNS: usize = 7;

fn fleet() -> Vec<SourceFile> {
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

fn main() {
    let generated = Instant::now();
    let texts: Vec<(String, String)> = fleet()
        .into_iter()
        .map(|f| (f.display().to_string(), f.text().to_string()))
        .collect();
    let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
    println!(
        "fleet: {HOSTS} hosts, {} schedules, {:.1} MiB of YAML (generated in {:?})",
        GROUPS * 5,
        bytes as f64 / (1024.0 * 1024.0),
        generated.elapsed()
    );
    let mut times: Vec<Duration> = Vec::new();
    for run in 0..=RUNS {
        let sources = texts
            .iter()
            .map(|(n, t)| SourceFile::new(n.clone(), t.clone()))
            .collect();
        let started = Instant::now();
        let loaded = load_sources(sources);
        let parsed = started.elapsed();
        assert!(loaded.is_valid(), "generated fleet is invalid");
        let fleet = compile(&loaded.revision).expect("generated fleet compiles");
        let total = started.elapsed();
        let schedules: usize = fleet.hosts.values().map(|h| h.plan.schedules.len()).sum();
        assert_eq!((fleet.hosts.len(), schedules), (HOSTS, HOSTS * 5));
        if run == 0 {
            println!(
                "warm-up: load+validate {parsed:?}, compile {:?}",
                total - parsed
            );
        } else {
            println!(
                "run {run}: load+validate {parsed:?}, compile {:?}, total {total:?}",
                total - parsed
            );
            times.push(total);
        }
    }
    times.sort();
    println!(
        "YAML text to all {} digests: fastest {:?}, median {:?} over {RUNS} runs",
        HOSTS,
        times[0],
        times[RUNS / 2]
    );
}
