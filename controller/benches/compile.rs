//! From YAML text to every host's digest, for a generated fleet of 10,000 hosts with 5 schedules
//! each (100 groups of 100 hosts; each group has its own 5 schedules, selected by label).
//!
//! Run: `cargo bench -p holdfast --bench compile`. Prints the fastest and the median of the
//! timed runs, after one warm-up.

use std::time::{Duration, Instant};

use holdfast::compile::compile;
use holdfast::source::files::{SourceFile, load_sources};

#[path = "common/generated.rs"]
mod generated;
use generated::{GROUPS, HOSTS, fleet};

const RUNS: usize = 7;

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
