//! The `holdfast-agent` command line: help for every flag, completions and the man page.

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

/// The flags in a `--help` text whose help says nothing but `[env: …]` or `[default: …]`.
fn flags_without_help(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let flag_line = line.trim_start();
        if !flag_line.starts_with('-') {
            continue;
        }
        let indent = line.len() - flag_line.len();
        let (flag, same_line) = flag_line.split_once("  ").unwrap_or((flag_line, ""));
        // Help goes after the flag, or on the further-indented lines below it.
        let mut text = same_line.to_string();
        for next in &lines[i + 1..] {
            let trimmed = next.trim_start();
            if trimmed.is_empty() || next.len() - trimmed.len() <= indent {
                break;
            }
            text.push_str(trimmed);
        }
        let mut words = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => words.push(c),
                _ => {}
            }
        }
        if words.trim().is_empty() {
            missing.push(flag.to_string());
        }
    }
    missing
}

#[test]
fn every_flag_has_help_text() {
    for args in [&[][..], &["enroll"], &["run"], &["completions"], &["man"]] {
        let out = agent(&[args, &["--help"]].concat());
        assert!(out.status.success());
        let help = stdout(&out);
        assert!(help.contains("--help"), "{help}");
        let missing = flags_without_help(&help);
        assert!(
            missing.is_empty(),
            "holdfast-agent {args:?}: {missing:?}\n{help}"
        );
    }
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
