//! `holdfast validate`'s findings for machines: GitHub Actions annotations and JSON.

use serde::Serialize;

use crate::diagnostics::{Diagnostic, Severity};
use crate::revision::plural;
use crate::source::files::Loaded;

/// `valid: 2 repos, … in 9 files, 1 warning` or `invalid: 3 errors, 1 warning in 9 files`.
pub fn validation_summary(loaded: &Loaded) -> String {
    let warnings = loaded.warnings().count();
    let files = plural(loaded.files, "file");
    if loaded.is_valid() {
        let warnings = match warnings {
            0 => String::new(),
            n => format!(", {}", plural(n, "warning")),
        };
        format!("valid: {} in {files}{warnings}", loaded.revision.summary())
    } else {
        let mut counts = plural(loaded.errors().count(), "error");
        if warnings > 0 {
            counts.push_str(&format!(", {}", plural(warnings, "warning")));
        }
        format!("invalid: {counts} in {files}")
    }
}

/// One GitHub Actions workflow command, on one line: `::error file=…,line=…,col=…,title=…::…`.
/// The title names the resource and field; the message is the finding.
pub fn github_annotation(d: &Diagnostic) -> String {
    let command = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut title = d
        .object
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if !d.field.is_root() {
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(d.field.as_str());
    }
    if title.is_empty() {
        title = "holdfast validate".into();
    }
    format!(
        "::{command} file={},line={},col={},title={}::{}",
        escape_property(&d.location.file),
        d.location.line,
        d.location.column,
        escape_property(&title),
        escape_data(&d.message)
    )
}

/// The message of a workflow command, escaped as the runner unescapes it: `%`, CR and LF.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value of a workflow command: also `:` and `,`, which end it.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// What `holdfast validate --format json` prints: see the user guide, §12.
#[derive(Serialize)]
struct ValidationJson<'a> {
    valid: bool,
    summary: &'a str,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<DiagnosticJson<'a>>,
}

#[derive(Serialize)]
struct DiagnosticJson<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    severity: &'static str,
    /// `Kind/name` or `Kind/namespace/name`, when the document got far enough to name one.
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<ObjectJson<'a>>,
    /// A dotted path such as `spec.cron`; empty for the whole document.
    field: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ObjectJson<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
}

/// The findings and the summary as one pretty-printed JSON document.
pub fn validation_json(loaded: &Loaded, summary: &str) -> Result<String, serde_json::Error> {
    let report = ValidationJson {
        valid: loaded.is_valid(),
        summary,
        errors: loaded.errors().count(),
        warnings: loaded.warnings().count(),
        diagnostics: loaded
            .diagnostics
            .iter()
            .map(|d| DiagnosticJson {
                file: &d.location.file,
                line: d.location.line,
                column: d.location.column,
                severity: match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                object: d.object.as_ref().map(|o| ObjectJson {
                    kind: o.kind.as_str(),
                    namespace: &o.namespace,
                    name: &o.name,
                }),
                field: d.field.as_str(),
                message: &d.message,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::{FieldPath, FilePosition};
    use crate::resources::{Kind, ObjectKey};

    fn diagnostic(file: &str, message: &str) -> Diagnostic {
        Diagnostic {
            location: FilePosition {
                file: file.into(),
                line: 7,
                column: 3,
            },
            severity: Severity::Error,
            object: Some(ObjectKey::new(Kind::Schedule, "prod", "nightly")),
            field: FieldPath::parse("spec.cron"),
            message: message.into(),
        }
    }

    #[test]
    fn an_annotation_is_one_line_with_newlines_and_percent_escaped() {
        let d = diagnostic("fleet/a,b:c.yaml", "first\nsecond 100%\r\n");
        let line = github_annotation(&d);
        assert!(!line.contains(['\n', '\r']), "{line}");
        assert_eq!(
            line,
            "::error file=fleet/a%2Cb%3Ac.yaml,line=7,col=3,title=Schedule/prod/nightly spec.cron::first%0Asecond 100%25%0D%0A"
        );
    }

    #[test]
    fn warnings_and_unnamed_documents_get_their_own_command_and_title() {
        let d = Diagnostic {
            severity: Severity::Warning,
            object: None,
            field: FieldPath::root(),
            ..diagnostic("f.yaml", "m")
        };
        assert_eq!(
            github_annotation(&d),
            "::warning file=f.yaml,line=7,col=3,title=holdfast validate::m"
        );
    }
}
