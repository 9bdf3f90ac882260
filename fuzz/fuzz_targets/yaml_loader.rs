//! Loads arbitrary text as a config file, in both modes, then compiles what validates and
//! renders its plan. Nothing may panic; every diagnostic points inside the text; a revision
//! that validates compiles (validation exists so that compile never refuses).
#![no_main]

use std::collections::BTreeMap;

use holdfast::compile;
use holdfast::source::files::{SourceFile, load_sources_as};
use holdfast::validate::Mode;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // The loader reads files as UTF-8 and reports anything else without parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let last_line = lines(text);
    for mode in [Mode::Files, Mode::Kubernetes] {
        let loaded = load_sources_as(vec![SourceFile::new(FILE, text)], mode);
        for d in &loaded.diagnostics {
            let at = &d.location;
            assert_eq!(at.file, FILE, "{d}");
            assert!(
                (1..=last_line).contains(&at.line) && at.column >= 1,
                "diagnostic outside the {last_line}-line text: {d}"
            );
            let _ = d.to_string();
        }
        let revision = &loaded.revision;
        let _ = revision.summary();
        if !loaded.is_valid() {
            continue;
        }
        match compile::compile(revision) {
            Ok(fleet) => {
                let _ = holdfast::plan::render(&fleet, &BTreeMap::new());
            }
            Err(e) => panic!("a revision that validates does not compile ({mode:?}): {e}"),
        }
        // Requests resolve when the controller hands them out; they may refuse, not panic.
        for backup in &revision.backups {
            let _ = compile::backup_request(revision, backup);
        }
        for restore in &revision.restores {
            let _ = compile::restore_request(revision, restore, None);
            let _ = compile::restore_request(revision, restore, Some("0123abcd"));
        }
    }
});

/// Lines as YAML counts them (CR LF, CR, LF, NEL, LS and PS end one); a file ending in a line
/// break has one more, empty, line that a parser may point at: its end.
fn lines(text: &str) -> usize {
    let text = text.replace("\r\n", "\n");
    1 + text
        .chars()
        .filter(|c| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}
