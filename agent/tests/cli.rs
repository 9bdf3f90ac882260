//! The `holdfast-agent` command line: completions and the man page (the help of every flag is
//! checked with the controller's, in `controller/tests/cli.rs`).

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast-agent"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let subcommands = ["enroll", "run", "service", "completions", "man"];
    let bash = agent(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = stdout(&bash);
    for sub in subcommands {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish"] {
        let out = agent(&["completions", shell]);
        assert!(
            out.status.success() && stdout(&out).contains("enroll"),
            "{shell}"
        );
    }
    let man = stdout(&agent(&["man"]));
    assert!(man.contains(".TH holdfast-agent"), "{man}");
    for sub in subcommands {
        assert!(man.contains(sub), "the man page lacks {sub}");
    }
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = agent(&["--version"]);
    assert!(out.status.success());
    let commit = env!("HOLDFAST_COMMIT");
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "holdfast-agent {} (commit {commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
    // Built from a git checkout (as every test run is), the commit is known.
    assert_ne!(commit, "unknown");
}
