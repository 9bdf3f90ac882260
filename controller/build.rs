// Records the commit a binary is built from, for `--version` and `holdfast_build_info`: the
// `HOLDFAST_COMMIT` environment variable when set (an image built without `.git`), else
// `git rev-parse --short HEAD`, else `unknown`. The agent's build script is this file too.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HOLDFAST_COMMIT");
    let commit = std::env::var("HOLDFAST_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HOLDFAST_COMMIT={commit}");

    // Build again when HEAD moves: a checkout rewrites HEAD, a commit the branch's ref (loose
    // or packed). Only files that exist: Cargo reruns on every build for one that does not.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The trimmed output of a git command that succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
