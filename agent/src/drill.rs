//! Restore drills: which snapshot, which of its files, where they are restored, and whether what
//! restic restored is what the snapshot holds. The runner runs restic; this module decides and
//! compares.
//!
//! restic 0.14 has no `restore --verify`, so every restored file is compared byte for byte with
//! `restic dump` of the same path, both streamed: the comparison holds one chunk of each.

use std::io;
use std::path::{Path, PathBuf};

use protocol::{DrillDifference, DrillParams, DrillResult, MAX_DRILL_DIFFERENCES, Snapshot};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::restic::parse::FileNode;

/// Bytes compared at a time.
const CHUNK: usize = 64 * 1024;
/// Candidates kept per file wanted: the size cap may pass over some of them.
const CANDIDATES_PER_FILE: usize = 4;

/// `restic snapshots --json`, scoped to the drill's source host and its backup schedule's tags.
pub fn snapshots_args(params: &DrillParams) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "snapshots".into(),
        "--json".into(),
        "--host".into(),
        params.source_host.clone(),
    ];
    if !params.tags.is_empty() {
        args.extend(["--tag".into(), params.tags.join(",")]);
    }
    args
}

/// The newest snapshot holding every one of `paths` (as restic's `--path` selects), or the
/// newest of all when there are none.
pub fn latest<'a>(snapshots: &'a [Snapshot], paths: &[String]) -> Option<&'a Snapshot> {
    let wanted: Vec<&str> = paths.iter().map(|p| clean(p)).collect();
    snapshots
        .iter()
        .filter(|s| {
            wanted
                .iter()
                .all(|w| s.paths.iter().any(|p| clean(p) == *w))
        })
        .max_by_key(|s| {
            chrono::DateTime::parse_from_rfc3339(&s.time)
                .map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX))
                .unwrap_or(i64::MIN)
        })
}

/// restic records paths without a trailing separator.
fn clean(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// Whether a snapshot path is one of the whole paths, or inside one.
pub fn under(path: &str, include: &[String]) -> bool {
    include.iter().any(|i| {
        let i = clean(i);
        path == i || i == "/" || path.strip_prefix(i).is_some_and(|r| r.starts_with('/'))
    })
}

/// A restic `--include` pattern that matches exactly this path: its glob characters escaped.
pub fn exact_pattern(path: &str) -> String {
    let mut pattern = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// `restic restore` of only the patterns into the target.
pub fn restore_args(snapshot: &str, target: &Path, patterns: &[String], json: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["restore".into()];
    if json {
        args.push("--json".into());
    }
    args.extend([
        snapshot.to_string(),
        "--target".into(),
        target.display().to_string(),
    ]);
    for pattern in patterns {
        args.extend(["--include".into(), pattern.clone()]);
    }
    args
}

/// Where restic restores a snapshot path under the target.
pub fn restored_path(target: &Path, path: &str) -> PathBuf {
    let mut out = target.to_path_buf();
    out.extend(path.split('/').filter(|p| !p.is_empty()));
    out
}

/// A seed from the job id: a run's sample is random across runs, and the same for the same run.
pub fn seed(job: &str) -> u64 {
    // FNV-1a.
    job.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: small, fast and good enough to pick files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), close enough for sampling.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random sample of a snapshot's files, chosen as `restic ls` streams them: a reservoir of
/// candidates (memory bounded by the sample, not the snapshot), then files in random order while
/// they fit under the size cap.
pub struct Sampler {
    want: usize,
    max_bytes: u64,
    rng: Rng,
    seen: u64,
    reservoir: Vec<FileNode>,
}

impl Sampler {
    pub fn new(want: u32, max_bytes: u64, seed: u64) -> Sampler {
        let want = want as usize;
        Sampler {
            want,
            max_bytes,
            rng: Rng(seed),
            seen: 0,
            reservoir: Vec::with_capacity(want * CANDIDATES_PER_FILE),
        }
    }

    pub fn offer(&mut self, file: FileNode) {
        if file.size > self.max_bytes {
            return;
        }
        let capacity = self.want * CANDIDATES_PER_FILE;
        self.seen += 1;
        if self.reservoir.len() < capacity {
            self.reservoir.push(file);
        } else {
            let slot = self.rng.below(self.seen) as usize;
            if slot < capacity {
                self.reservoir[slot] = file;
            }
        }
    }

    /// The sample, sorted by path.
    pub fn finish(mut self) -> Vec<FileNode> {
        let mut candidates = std::mem::take(&mut self.reservoir);
        for i in (1..candidates.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            candidates.swap(i, j);
        }
        let mut total = 0u64;
        let mut chosen = Vec::with_capacity(self.want);
        for file in candidates {
            if chosen.len() == self.want {
                break;
            }
            if total + file.size <= self.max_bytes {
                total += file.size;
                chosen.push(file);
            }
        }
        chosen.sort_by(|a, b| a.path.cmp(&b.path));
        chosen
    }
}

/// Why a restored file is not the snapshot's.
#[derive(Debug)]
pub enum Mismatch {
    /// The restored file ends at this byte; the snapshot's goes on.
    Shorter(u64),
    /// The restored file goes on past the snapshot's end at this byte.
    Longer(u64),
    /// The first byte that differs.
    Differs(u64),
    /// The snapshot's content could not be read.
    Snapshot(io::Error),
    /// The restored file could not be read.
    Restored(io::Error),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Shorter(at) => write!(
                f,
                "the restored file ends at byte {at}, before the snapshot's"
            ),
            Mismatch::Longer(at) => write!(
                f,
                "the restored file goes on past the snapshot's {at} bytes"
            ),
            Mismatch::Differs(at) => write!(f, "content differs from the snapshot at byte {at}"),
            Mismatch::Snapshot(e) => write!(f, "cannot read the snapshot's content: {e}"),
            Mismatch::Restored(e) => write!(f, "cannot read the restored file: {e}"),
        }
    }
}

/// Compares two streams chunk by chunk; the number of equal bytes when they are the same.
pub async fn compare(
    mut snapshot: impl AsyncRead + Unpin,
    mut restored: impl AsyncRead + Unpin,
) -> Result<u64, Mismatch> {
    let mut expected = vec![0u8; CHUNK];
    let mut actual = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = snapshot
            .read(&mut expected)
            .await
            .map_err(Mismatch::Snapshot)?;
        if n == 0 {
            let extra = restored
                .read(&mut actual[..1])
                .await
                .map_err(Mismatch::Restored)?;
            return match extra {
                0 => Ok(offset),
                _ => Err(Mismatch::Longer(offset)),
            };
        }
        let mut got = 0;
        while got < n {
            let m = restored
                .read(&mut actual[got..n])
                .await
                .map_err(Mismatch::Restored)?;
            if m == 0 {
                return Err(Mismatch::Shorter(offset + got as u64));
            }
            got += m;
        }
        if let Some(i) = (0..n).find(|&i| expected[i] != actual[i]) {
            return Err(Mismatch::Differs(offset + i as u64));
        }
        offset += n as u64;
    }
}

/// What a drill verified so far.
#[derive(Debug, Default)]
pub struct Tally {
    files_expected: u64,
    files_verified: u64,
    bytes_verified: u64,
    differences: Vec<DrillDifference>,
    differences_total: u64,
}

impl Tally {
    pub fn new(files_expected: usize) -> Tally {
        Tally {
            files_expected: files_expected as u64,
            ..Tally::default()
        }
    }

    pub fn verified(&mut self, bytes: u64) {
        self.files_verified += 1;
        self.bytes_verified += bytes;
    }

    /// Files are verified in path order, so the list keeps the first ones by path.
    pub fn differs(&mut self, path: &str, reason: String) {
        self.differences_total += 1;
        if self.differences.len() < MAX_DRILL_DIFFERENCES {
            self.differences.push(DrillDifference {
                path: path.to_string(),
                reason: crate::restic::bound(reason),
            });
        }
    }

    pub fn differences(&self) -> &[DrillDifference] {
        &self.differences
    }

    pub fn differences_total(&self) -> u64 {
        self.differences_total
    }

    /// The result, with the restore's duration and the bytes it wrote.
    pub fn result(self, seconds: f64, restored_bytes: u64) -> DrillResult {
        let bytes_per_second = match seconds > 0.0 {
            true => (restored_bytes as f64 / seconds) as u64,
            false => restored_bytes,
        };
        DrillResult {
            files_verified: self.files_verified,
            bytes_verified: self.bytes_verified,
            files_expected: self.files_expected,
            seconds: (seconds * 1000.0).round() / 1000.0,
            bytes_per_second,
            differences: self.differences,
            differences_total: self.differences_total,
        }
    }
}

/// A private directory for one drill's files, removed when dropped: when the drill ends, fails
/// or is cancelled. One left by a killed agent goes with the rest of its temp directory at start.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new owner-only directory under `parent` (mode 0700; on Windows the owner-only ACL).
    pub fn new(parent: &Path) -> io::Result<Scratch> {
        loop {
            let path = parent.join(format!("drill-{:016x}", fastrand::u64(..)));
            if !path.exists() {
                crate::platform::create_private_dir(&path)?;
                return Ok(Scratch(path));
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            tracing::warn!(
                "cannot remove the drill directory {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Removes a directory tree, also one restored with read-only modes.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_removable(path)?;
            std::fs::remove_dir_all(path)
        }
    }
}

fn make_removable(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let is_dir = meta.is_dir();
    crate::platform::make_removable(path, is_dir)?;
    if is_dir {
        for entry in std::fs::read_dir(path)? {
            make_removable(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, time: &str, paths: &[&str]) -> Snapshot {
        Snapshot {
            id: id.into(),
            time: time.into(),
            hostname: "web-1".into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tags: vec![],
        }
    }

    fn file(path: &str, size: u64) -> FileNode {
        FileNode {
            path: path.into(),
            size,
        }
    }

    #[test]
    fn the_latest_snapshot_of_the_schedule_paths_wins_by_time() {
        let list = [
            snapshot("a", "2026-01-02T00:00:00Z", &["/etc"]),
            snapshot("b", "2026-01-03T00:00:00+02:00", &["/etc", "/srv"]),
            snapshot("c", "2026-01-02T23:00:00Z", &["/srv"]),
        ];
        assert_eq!(latest(&list, &[]).map(|s| s.id.as_str()), Some("c"));
        assert_eq!(
            latest(&list, &["/etc/".into()]).map(|s| s.id.as_str()),
            Some("b")
        );
        assert_eq!(latest(&list, &["/home".into()]), None);
    }

    #[test]
    fn whole_paths_take_their_files_and_nothing_beside_them() {
        let include = vec!["/srv/data/".to_string()];
        assert!(under("/srv/data", &include));
        assert!(under("/srv/data/a/b", &include));
        assert!(!under("/srv/database", &include));
        assert!(under("/anything", &["/".to_string()]));
    }

    #[test]
    fn patterns_match_exactly_the_path_given() {
        assert_eq!(
            exact_pattern("/srv/we[i]rd*?.txt"),
            r"/srv/we\[i\]rd\*\?.txt"
        );
        assert_eq!(
            restored_path(Path::new("/tmp/d"), "/srv/a.txt"),
            Path::new("/tmp/d/srv/a.txt")
        );
    }

    #[test]
    fn a_sample_is_the_same_for_one_seed_and_stays_under_the_cap() {
        let files: Vec<FileNode> = (0..500)
            .map(|i| file(&format!("/f/{i:03}"), i % 50))
            .collect();
        let take = |seed| {
            let mut s = Sampler::new(10, 1000, seed);
            files.iter().cloned().for_each(|f| s.offer(f));
            s.finish()
        };
        let one = take(seed("drill-1"));
        assert_eq!(one, take(seed("drill-1")));
        assert_ne!(
            one,
            take(seed("drill-2")),
            "another run samples other files"
        );
        assert_eq!(one.len(), 10);
        assert!(one.iter().map(|f| f.size).sum::<u64>() <= 1000);
        assert!(one.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn files_larger_than_the_cap_are_passed_over_and_a_small_snapshot_is_taken_whole() {
        let mut s = Sampler::new(5, 100, 7);
        for f in [
            file("/a", 10),
            file("/big", 101),
            file("/b", 90),
            file("/c", 5),
        ] {
            s.offer(f);
        }
        let chosen: Vec<String> = s.finish().into_iter().map(|f| f.path).collect();
        assert!(!chosen.contains(&"/big".to_string()));
        assert!(chosen.len() >= 2, "{chosen:?}");
    }

    #[tokio::test]
    async fn comparison_finds_the_first_difference_and_length_mismatches() {
        let a = vec![7u8; 200_000];
        let mut b = a.clone();
        assert_eq!(compare(&a[..], &b[..]).await.unwrap(), 200_000);
        b[150_001] = 0;
        assert!(matches!(
            compare(&a[..], &b[..]).await,
            Err(Mismatch::Differs(150_001))
        ));
        assert!(matches!(
            compare(&a[..], &a[..100]).await,
            Err(Mismatch::Shorter(100))
        ));
        assert!(matches!(
            compare(&a[..100], &a[..]).await,
            Err(Mismatch::Longer(100))
        ));
    }

    #[test]
    fn the_result_keeps_the_first_differences_and_counts_them_all() {
        let mut t = Tally::new(30);
        t.verified(10);
        for i in 0..25 {
            t.differs(&format!("/f/{i:02}"), "not restored".into());
        }
        let r = t.result(2.0, 1000);
        assert_eq!(r.differences.len(), MAX_DRILL_DIFFERENCES);
        assert_eq!(r.differences_total, 25);
        assert_eq!(r.bytes_per_second, 500);
        assert_eq!((r.files_verified, r.bytes_verified), (1, 10));
    }

    #[test]
    fn the_scratch_directory_goes_even_with_read_only_contents() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(parent.path()).unwrap();
        let path = scratch.path().to_path_buf();
        let inner = path.join("ro");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("f"), b"x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "owner-only");
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        drop(scratch);
        assert!(!path.exists());
    }
}
