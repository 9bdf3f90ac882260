//! Malformed YAML is an error with a location, never a panic, and never costs the rest of the
//! revision its meaning: the loader reports every broken file at once.

mod common;

use common::diagnostics;

#[test]
fn syntax_errors_name_file_line_and_column() {
    let broken = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: x\nspec:\n  defaults: [\n";
    check_one(
        broken,
        "broken.yaml:7:1: YAML syntax error: did not find expected node content, while parsing a flow node",
    );
    let tabs = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\n\tmetadata: {}\n";
    let d = diagnostics(&[("broken.yaml", tabs)]);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].starts_with("broken.yaml:3:1: YAML syntax error: "),
        "{}",
        d[0]
    );
}

#[test]
fn wrong_types_name_the_field() {
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\nspec:\n  operation: backup\n  cron: '0 2 * * *'\n  hosts: web-1\n  paths: [/etc]\n";
    check_one(
        s,
        "broken.yaml:8:3: Schedule/nightly: spec.hosts: expected a list, got `web-1`",
    );
    let h = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-3\nspec:\n  paused: sometimes\n";
    check_one(
        h,
        "broken.yaml:6:3: Host/web-3: spec.paused: expected `true` or `false`, got `sometimes`",
    );
}

#[test]
fn missing_fields_point_at_their_parent() {
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: r\nspec:\n  password: {hostFile: /p}\n";
    check_one(s, "broken.yaml:5:1: Repo/r: spec: missing field `url`");
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nspec: {url: /x, password: {hostFile: /p}}\n";
    check_one(s, "broken.yaml:1:1: missing field `metadata`");
}

#[test]
fn unknown_kinds_and_api_versions() {
    check_one(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedul\n",
        "broken.yaml:2:1: kind: unknown kind `Schedul`; did you mean `Schedule`?",
    );
    check_one(
        "apiVersion: v1\nkind: Secret\n",
        "broken.yaml:1:1: apiVersion: unsupported apiVersion `v1`; expected `holdfast.dev/v1alpha1`",
    );
    check_one(
        "- just\n- a list\n",
        "broken.yaml:1:1: a document must be a mapping with apiVersion, kind, metadata and spec",
    );
}

#[test]
fn every_document_of_a_multi_document_file_is_checked() {
    let text = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: ok-1}\nspec: {}\n---\nkind: Host\n---\n---\napiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: ok-2}\nspec: {paused: 3}\n";
    assert_eq!(
        diagnostics(&[("multi.yaml", text)]),
        [
            "multi.yaml:6:1: apiVersion: missing apiVersion; expected `holdfast.dev/v1alpha1`",
            "multi.yaml:12:8: Host/ok-2: spec.paused: expected `true` or `false`, got `3`",
        ]
    );
}

#[test]
fn non_utf8_and_binary_input_does_not_panic() {
    for text in [
        "\u{0}\u{1}\u{2}",
        "{{{{",
        "key: [}",
        "&a [*a]",
        "? [a]\n: b\n",
        ":",
    ] {
        let d = diagnostics(&[("junk.yaml", text)]);
        assert!(!d.is_empty(), "{text:?} gave no diagnostic");
        assert!(d.iter().all(|l| l.starts_with("junk.yaml:")), "{d:?}");
    }
}

fn check_one(text: &str, expected: &str) {
    assert_eq!(diagnostics(&[("broken.yaml", text)]), [expected]);
}

/// Found by fuzzing (fuzz/, target yaml_loader): libyaml reports an error at the end of a file
/// that does not end in a newline on the line after the last, which is not in the file.
#[test]
fn an_error_at_the_end_of_a_file_without_a_final_newline_points_at_its_end() {
    let text = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: x\nbroken";
    check_one(
        text,
        "broken.yaml:5:7: YAML syntax error: could not find expected ':', while scanning a simple key",
    );
    // The same with CR line breaks, which YAML counts as line breaks too.
    check_one(
        &text.replace('\n', "\r"),
        "broken.yaml:5:7: YAML syntax error: could not find expected ':', while scanning a simple key",
    );
    // Ending in a newline, the line after the last is the file's end.
    check_one(
        &format!("{text}\n"),
        "broken.yaml:6:1: YAML syntax error: could not find expected ':', while scanning a simple key",
    );
}
