//! What validation says about desired state: findings (pure, mode-independent) and diagnostics
//! (a finding or a parse error placed at a file, line and column).

use std::fmt;

use crate::resources::ObjectKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The revision cannot be applied.
    Error,
    /// Worth a look; the revision still applies.
    Warning,
}

/// A path to a field inside a resource, as people write it: `spec.hosts[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// A path from dotted text such as `spec.cron`.
    pub fn parse(text: &str) -> Self {
        FieldPath(text.to_string())
    }

    pub fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(key.to_string())
        } else {
            FieldPath(format!("{}.{key}", self.0))
        }
    }

    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The enclosing field, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            return None;
        }
        let cut = self.0.rfind(['.', '[']).unwrap_or(0);
        Some(FieldPath(self.0[..cut].to_string()))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something validation found in one resource, before anyone knows which file it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub severity: Severity,
    pub object: ObjectKey,
    pub field: FieldPath,
    pub message: String,
}

/// A place in a file; line and column count from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FilePosition {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for FilePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A finding or a parse error at its place in a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub location: FilePosition,
    pub severity: Severity,
    /// The resource, when the document got far enough to name one.
    pub object: Option<ObjectKey>,
    pub field: FieldPath,
    pub message: String,
}

/// `path:line:column: Kind/name: field: message`, with `warning: ` after the location for
/// warnings: one line, the form editors and CI annotations understand.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if !self.field.is_root() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    #[test]
    fn field_paths_read_like_yaml() {
        let p = FieldPath::root().key("spec").key("hosts").index(2);
        assert_eq!(p.to_string(), "spec.hosts[2]");
        assert_eq!(p.parent().unwrap().to_string(), "spec.hosts");
        assert_eq!(p.parent().unwrap().parent().unwrap().to_string(), "spec");
        assert!(FieldPath::parse("spec").parent().unwrap().is_root());
        assert_eq!(FieldPath::root().parent(), None);
    }

    #[test]
    fn diagnostics_print_on_one_line() {
        let d = Diagnostic {
            location: FilePosition {
                file: "fleet/s.yaml".into(),
                line: 4,
                column: 3,
            },
            severity: Severity::Error,
            object: Some(ObjectKey::new(Kind::Schedule, "default", "nightly")),
            field: FieldPath::parse("spec.cron"),
            message: "bad".into(),
        };
        assert_eq!(
            d.to_string(),
            "fleet/s.yaml:4:3: Schedule/nightly: spec.cron: bad"
        );
        let w = Diagnostic {
            severity: Severity::Warning,
            object: Some(ObjectKey::new(Kind::Host, "prod", "db")),
            field: FieldPath::root(),
            ..d
        };
        assert_eq!(
            w.to_string(),
            "fleet/s.yaml:4:3: warning: Host/prod/db: bad"
        );
    }
}
