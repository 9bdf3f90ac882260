//! Files mode: a directory tree of YAML files (a git checkout) read into one revision.
//!
//! Every `.yaml`/`.yml` file below the directory is read, every document in it dispatched on
//! `apiVersion`/`kind`. Hidden files and directories (`.git`) are skipped, and so are symlinked
//! directories. Anything that does not
//! parse or validate is a diagnostic with its file, line and column; a revision with any error
//! diagnostic is not to be applied.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::diagnostics::{Diagnostic, FieldPath, FilePosition, Finding, Severity};
use crate::resources::{
    API_VERSION, Backup, DEFAULT_NAMESPACE, Host, Kind, Notifier, ObjectKey, Repo, Restore,
    Schedule,
};
use crate::revision::Revision;
use crate::source::position::PositionIndex;
use crate::suggest::unknown_name_message;
use crate::validate::{self, Mode};

/// A revision read from a directory, with everything worth saying about it.
pub struct Loaded {
    pub revision: Revision,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// How many YAML files were read.
    pub files: usize,
}

impl Loaded {
    /// Whether the revision may be applied: no error, warnings allowed.
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

/// Reads, parses and validates every YAML file below `dir`, for files mode.
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    load_dir_as(dir, Mode::Files)
}

/// Reads, parses and validates every YAML file below `dir` as `mode` will use it. For
/// Kubernetes mode, documents of other API groups (a Namespace, a Secret) are left out: they
/// sit beside the fleet in the same manifests.
pub fn load_dir_as(dir: &Path, mode: Mode) -> Result<Loaded, LoadError> {
    DirReader::new(mode).load(dir)
}

/// Reads a directory again and again, parsing only the files whose text changed since the
/// last read: editing one Schedule beside a file of 10,000 Hosts parses the one file. Every
/// read still checks the whole revision, so what it returns is what a fresh read returns.
pub struct DirReader {
    mode: Mode,
    /// Each file's text and documents as last read, by path.
    files: HashMap<PathBuf, (Arc<SourceFile>, Arc<ReadFile>)>,
}

impl DirReader {
    pub fn new(mode: Mode) -> Self {
        DirReader {
            mode,
            files: HashMap::new(),
        }
    }

    /// Reads, parses and validates every YAML file below `dir`.
    pub fn load(&mut self, dir: &Path) -> Result<Loaded, LoadError> {
        let mut paths = Vec::new();
        collect_yaml_files(dir, &mut paths)?;
        paths.sort();
        let skip_other_groups = self.mode == Mode::Kubernetes;
        let mut kept = HashMap::with_capacity(paths.len());
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let source = read_source(&path);
            let read = match self.files.remove(&path) {
                Some((before, read))
                    if before.text == source.text && source.unreadable.is_none() =>
                {
                    read
                }
                _ => Arc::new(ReadFile::parse(&source.text, skip_other_groups)),
            };
            let source = Arc::new(source);
            files.push((source.clone(), read.clone()));
            kept.insert(path, (source, read));
        }
        // Files gone from the directory are forgotten with the rest of the last read.
        self.files = kept;
        Ok(check(files, self.mode))
    }
}

fn read_source(path: &Path) -> SourceFile {
    let display = path.to_string_lossy().into_owned();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => SourceFile::new(display, text),
            Err(_) => SourceFile::unreadable(display, "the file is not UTF-8 text"),
        },
        Err(e) => SourceFile::unreadable(display, &format!("cannot read the file: {e}")),
    }
}

/// One file's text, and what could not be read of it.
pub struct SourceFile {
    display: String,
    text: String,
    unreadable: Option<String>,
}

impl SourceFile {
    /// `display` is how messages name the file.
    pub fn new(display: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            display: display.into(),
            text: text.into(),
            unreadable: None,
        }
    }

    /// How messages name the file.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn unreadable(display: String, why: &str) -> Self {
        SourceFile {
            display,
            text: String::new(),
            unreadable: Some(why.to_string()),
        }
    }
}

/// Parses and validates files already in memory, in the order given, for files mode.
pub fn load_sources(sources: Vec<SourceFile>) -> Loaded {
    load_sources_as(sources, Mode::Files)
}

/// Parses and validates files already in memory, in the order given, as `mode` will use them.
pub fn load_sources_as(sources: Vec<SourceFile>, mode: Mode) -> Loaded {
    let skip_other_groups = mode == Mode::Kubernetes;
    let files = sources
        .into_iter()
        .map(|source| {
            let read = ReadFile::parse(&source.text, skip_other_groups);
            (Arc::new(source), Arc::new(read))
        })
        .collect();
    check(files, mode)
}

/// Puts the files' documents together, in the order given, into one revision and validates it.
fn check(files: Vec<(Arc<SourceFile>, Arc<ReadFile>)>, mode: Mode) -> Loaded {
    let mut loader = Loader::default();
    let file_count = files.len();
    for (source, read) in files {
        loader.add_file(source, &read);
    }
    let findings = validate::validate(&loader.revision, mode);
    for finding in findings {
        loader.place_finding(finding);
    }
    loader.diagnostics.sort();
    Loaded {
        revision: loader.revision,
        diagnostics: loader.diagnostics,
        files: file_count,
    }
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Directory {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        // A symlinked directory is not followed: it could loop, or lead out of the checkout.
        let is_real_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_real_dir {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Where a resource was declared, so that findings about it can name a line.
struct Origin {
    file: Arc<SourceFile>,
    doc: usize,
}

#[derive(Default)]
struct Loader {
    revision: Revision,
    diagnostics: Vec<Diagnostic>,
    origins: HashMap<ObjectKey, Origin>,
    /// Built on first use: only files with something to report pay for positions.
    positions: HashMap<String, Arc<PositionIndex>>,
}

/// What a file's document declares, before it is typed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document<S> {
    // Checked before typing; declared so that they are known fields.
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    metadata: Metadata,
    spec: S,
}

/// The part of `metadata` a file may declare; the rest is the controller's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A problem in one document: the field and what is wrong with it.
#[derive(Clone)]
struct DocError {
    object: Option<ObjectKey>,
    field: FieldPath,
    message: String,
}

impl DocError {
    fn at(field: FieldPath, message: impl Into<String>) -> Self {
        DocError {
            object: None,
            field,
            message: message.into(),
        }
    }
}

/// A resource a document declares, typed.
#[derive(Clone)]
enum Resource {
    Repo(Repo),
    Host(Host),
    Schedule(Schedule),
    Backup(Backup),
    Restore(Restore),
    /// Boxed: the largest by far, and the rarest.
    Notifier(Box<Notifier>),
}

/// One document as read on its own: what it declares, when it could be typed, and what is wrong
/// in it.
struct ReadDoc {
    doc: usize,
    resource: Option<(ObjectKey, Resource)>,
    errors: Vec<DocError>,
}

/// One file's documents, each read on its own; nothing in it depends on other files, so a file
/// whose text did not change reads the same again.
pub struct ReadFile {
    docs: Vec<ReadDoc>,
    /// A YAML syntax error ends the file: its line, column and message.
    syntax: Option<(usize, usize, String)>,
}

impl ReadFile {
    /// Parses and types every document of `text`. With `skip_other_groups` (Kubernetes mode),
    /// documents of other API groups are not Holdfast's to check.
    fn parse(text: &str, skip_other_groups: bool) -> ReadFile {
        let mut read = ReadFile {
            docs: Vec::new(),
            syntax: None,
        };
        for (doc, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = match serde_yaml::Value::deserialize(document) {
                Ok(value) => value,
                Err(e) => {
                    // A syntax error ends the file: what follows cannot be trusted.
                    let (line, column) = e
                        .location()
                        .map(|l| within(text, l.line(), l.column()))
                        .unwrap_or((1, 1));
                    let message = format!("YAML syntax error: {}", strip_location(&e.to_string()));
                    read.syntax = Some((line, column, message));
                    return read;
                }
            };
            let mut errors = Vec::new();
            let resource = match read_document(value, skip_other_groups, &mut errors) {
                Ok(resource) => resource,
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            read.docs.push(ReadDoc {
                doc,
                resource,
                errors,
            });
        }
        read
    }
}

/// The resource a document declares (`None` for an empty document or another API group's).
/// An error that leaves no resource is returned; unknown fields, which do not stop the rest
/// from being read and validated, are pushed onto `errors`.
fn read_document(
    value: serde_yaml::Value,
    skip_other_groups: bool,
    errors: &mut Vec<DocError>,
) -> Result<Option<(ObjectKey, Resource)>, DocError> {
    let map = match &value {
        serde_yaml::Value::Null => return Ok(None), // an empty document, such as a trailing `---`
        serde_yaml::Value::Mapping(map) => map,
        _ => {
            return Err(DocError::at(
                FieldPath::root(),
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            ));
        }
    };
    match map.get("apiVersion") {
        Some(serde_yaml::Value::String(v)) if v == API_VERSION => {}
        Some(serde_yaml::Value::String(v))
            if skip_other_groups && !v.starts_with("holdfast.dev/") =>
        {
            return Ok(None);
        }
        Some(serde_yaml::Value::String(v)) => {
            return Err(DocError::at(
                FieldPath::parse("apiVersion"),
                format!("unsupported apiVersion `{v}`; expected `{API_VERSION}`"),
            ));
        }
        _ => {
            return Err(DocError::at(
                FieldPath::parse("apiVersion"),
                format!("missing apiVersion; expected `{API_VERSION}`"),
            ));
        }
    }
    let kind = match map.get("kind") {
        Some(serde_yaml::Value::String(k)) => match Kind::from_name(k) {
            Some(Kind::Snapshot) => {
                return Err(DocError::at(
                    FieldPath::parse("kind"),
                    "Snapshot is read-only: the controller makes them from what agents report",
                ));
            }
            Some(kind) => kind,
            None => {
                let names = Kind::ALL
                    .into_iter()
                    .filter(|k| *k != Kind::Snapshot)
                    .map(Kind::as_str)
                    .collect::<Vec<_>>();
                return Err(DocError::at(
                    FieldPath::parse("kind"),
                    unknown_name_message("kind", k, &names),
                ));
            }
        },
        _ => {
            return Err(DocError::at(
                FieldPath::parse("kind"),
                "missing kind; expected one of Repo, Host, Schedule, Backup, Restore, Notifier",
            ));
        }
    };
    if map.contains_key("status") {
        return Err(DocError::at(
            FieldPath::parse("status"),
            "status is written by the controller; a file declares only metadata and spec",
        ));
    }
    // Types the document as `$kind`, wrapped by `$wrap` (a Box for the largest).
    macro_rules! typed {
        ($kind:ident) => {
            typed!($kind, std::convert::identity)
        };
        ($kind:ident, $wrap:expr) => {{
            let (metadata, spec) = typed(kind, value, errors)?;
            let object = key(kind, &metadata);
            let resource = $kind {
                metadata,
                spec,
                status: None,
            };
            (object, Resource::$kind($wrap(resource)))
        }};
    }
    Ok(Some(match kind {
        Kind::Repo => typed!(Repo),
        Kind::Host => typed!(Host),
        Kind::Schedule => typed!(Schedule),
        Kind::Backup => typed!(Backup),
        Kind::Restore => typed!(Restore),
        Kind::Notifier => typed!(Notifier, Box::new),
        // Refused above.
        Kind::Snapshot => return Ok(None),
    }))
}

impl Loader {
    /// Adds a file's documents to the revision, each unless its name is taken, and reports
    /// what is wrong in them.
    fn add_file(&mut self, file: Arc<SourceFile>, read: &ReadFile) {
        if let Some(why) = &file.unreadable {
            self.diagnostics.push(Diagnostic {
                location: FilePosition {
                    file: file.display.clone(),
                    line: 1,
                    column: 1,
                },
                severity: Severity::Error,
                object: None,
                field: FieldPath::root(),
                message: why.clone(),
            });
            return;
        }
        for doc in &read.docs {
            let mut errors = doc.errors.clone();
            if let Some((object, resource)) = &doc.resource {
                match self.claim(object.clone(), &file, doc.doc) {
                    Ok(()) => self.add(resource.clone()),
                    Err(e) => errors.push(e),
                }
            }
            for e in errors {
                self.report(
                    &file,
                    doc.doc,
                    Severity::Error,
                    e.object,
                    e.field,
                    e.message,
                );
            }
        }
        if let Some((line, column, message)) = &read.syntax {
            self.diagnostics.push(Diagnostic {
                location: FilePosition {
                    file: file.display.clone(),
                    line: *line,
                    column: *column,
                },
                severity: Severity::Error,
                object: None,
                field: FieldPath::root(),
                message: message.clone(),
            });
        }
    }

    fn add(&mut self, resource: Resource) {
        let revision = &mut self.revision;
        match resource {
            Resource::Repo(r) => revision.repos.push(r),
            Resource::Host(h) => revision.hosts.push(h),
            Resource::Schedule(s) => revision.schedules.push(s),
            Resource::Backup(b) => revision.backups.push(b),
            Resource::Restore(r) => revision.restores.push(r),
            Resource::Notifier(n) => revision.notifiers.push(*n),
        }
    }

    /// Records where `object` was declared, or refuses it when its kind, namespace and name were
    /// declared before.
    fn claim(
        &mut self,
        object: ObjectKey,
        file: &Arc<SourceFile>,
        doc: usize,
    ) -> Result<(), DocError> {
        if let Some(first) = self.origins.get(&object) {
            let (first_file, first_doc) = (first.file.clone(), first.doc);
            let first_at = self.locate(&first_file, first_doc, &FieldPath::parse("metadata.name"));
            return Err(DocError {
                object: Some(object),
                field: FieldPath::parse("metadata.name"),
                message: format!("duplicate: already declared at {first_at}"),
            });
        }
        let origin = Origin {
            file: file.clone(),
            doc,
        };
        self.origins.insert(object, origin);
        Ok(())
    }

    fn place_finding(&mut self, finding: Finding) {
        let Some(origin) = self.origins.get(&finding.object) else {
            // Every finding is about a resource this loader read; keep it visible regardless.
            self.diagnostics.push(Diagnostic {
                location: FilePosition {
                    file: "<unknown>".into(),
                    line: 1,
                    column: 1,
                },
                severity: finding.severity,
                object: Some(finding.object),
                field: finding.field,
                message: finding.message,
            });
            return;
        };
        let (file, doc) = (origin.file.clone(), origin.doc);
        self.report(
            &file,
            doc,
            finding.severity,
            Some(finding.object),
            finding.field,
            finding.message,
        );
    }

    fn report(
        &mut self,
        file: &Arc<SourceFile>,
        doc: usize,
        severity: Severity,
        object: Option<ObjectKey>,
        field: FieldPath,
        message: String,
    ) {
        let location = self.locate(file, doc, &field);
        self.diagnostics.push(Diagnostic {
            location,
            severity,
            object,
            field,
            message,
        });
    }

    fn locate(&mut self, file: &Arc<SourceFile>, doc: usize, field: &FieldPath) -> FilePosition {
        let index = self
            .positions
            .entry(file.display.clone())
            .or_insert_with(|| Arc::new(PositionIndex::build(&file.text)));
        let pos = index.locate(doc, field);
        FilePosition {
            file: file.display.clone(),
            line: pos.line,
            column: pos.column,
        }
    }
}

fn key(kind: Kind, metadata: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        kind,
        metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Types a document as a resource of `kind`, with its metadata in Kubernetes form. Each unknown
/// field is pushed onto `unknown` and taken out, and typing tried again, so that one misspelt
/// field does not hide the object's other errors.
fn typed<S: DeserializeOwned>(
    kind: Kind,
    mut value: serde_yaml::Value,
    unknown: &mut Vec<DocError>,
) -> Result<(ObjectMeta, S), DocError> {
    // The name, when there is one, makes errors about the rest of the document clearer.
    let object = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .map(|name| {
            let namespace = value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(|n| n.as_str())
                .unwrap_or(DEFAULT_NAMESPACE);
            ObjectKey::new(kind, namespace, name)
        });
    let document: Document<S> = loop {
        let e = match serde_path_to_error::deserialize(value.clone()) {
            Ok(document) => break document,
            Err(e) => e,
        };
        let mut field = FieldPath::root();
        let mut segments = Vec::new();
        for segment in e.path().iter() {
            field = match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    segments.push(serde_yaml::Value::from(*index));
                    field.index(*index)
                }
                serde_path_to_error::Segment::Map { key } => {
                    segments.push(serde_yaml::Value::from(key.as_str()));
                    field.key(key)
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => field,
            };
        }
        let inner = e.inner().to_string();
        let (field, message) = describe_serde_error(field, &inner);
        let error = DocError {
            object: object.clone(),
            field,
            message,
        };
        match unknown_field_name(&inner) {
            Some(name) if remove_field(&mut value, &segments, name) => unknown.push(error),
            _ => return Err(error),
        }
    };
    let Document { metadata, spec, .. } = document;
    let metadata = ObjectMeta {
        name: Some(metadata.name),
        namespace: Some(
            metadata
                .namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        ),
        labels: (!metadata.labels.is_empty()).then_some(metadata.labels),
        annotations: (!metadata.annotations.is_empty()).then_some(metadata.annotations),
        ..ObjectMeta::default()
    };
    Ok((metadata, spec))
}

/// The name in serde's `unknown field `name`, expected …`.
fn unknown_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(name, _)| name)
}

/// Removes the key `name` from the mapping at `path` (or at its parent, when serde's path ends
/// at the key itself); whether there was one to remove.
fn remove_field(value: &mut serde_yaml::Value, path: &[serde_yaml::Value], name: &str) -> bool {
    let name = serde_yaml::Value::from(name);
    let path = match path.split_last() {
        Some((last, parent)) if *last == name => parent,
        _ => path,
    };
    let mut at = value;
    for segment in path {
        let next = match (at, segment) {
            (serde_yaml::Value::Mapping(map), key) => map.get_mut(key),
            (serde_yaml::Value::Sequence(items), serde_yaml::Value::Number(n)) => n
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    match at {
        serde_yaml::Value::Mapping(map) => map.remove(&name).is_some(),
        _ => false,
    }
}

/// Turns serde's wording into Holdfast's: unknown names get the nearest valid one suggested,
/// and an unknown field is reported at the field itself.
fn describe_serde_error(field: FieldPath, message: &str) -> (FieldPath, String) {
    let message = strip_location(message);
    let message = message.as_str();
    for (prefix, what) in [("unknown field `", "field"), ("unknown variant `", "value")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let Some((name, tail)) = rest.split_once('`') else {
                break;
            };
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let field = if what == "field" && field.as_str().rsplit('.').next() != Some(name) {
                field.key(name)
            } else {
                field
            };
            return (field, unknown_name_message(what, name, &expected));
        }
    }
    let message = describe_type_error(message).unwrap_or_else(|| message.to_string());
    (field, message)
}

/// serde's `invalid type: string "ten", expected u32` in words a person uses: `expected a whole
/// number, got `ten``. Other messages are left as they are.
fn describe_type_error(message: &str) -> Option<String> {
    // An invalid value (not type) of an unsigned number is out of its range.
    let (out_of_range, rest) = [("invalid type: ", false), ("invalid value: ", true)]
        .into_iter()
        .find_map(|(prefix, range)| Some((range, message.strip_prefix(prefix)?)))?;
    let (got, expected) = rest.rsplit_once(", expected ")?;
    let got = if let Some(text) = got.strip_prefix("string \"") {
        format!("`{}`", text.strip_suffix('"').unwrap_or(text))
    } else if let Some((_, value)) = got.split_once(" `") {
        // `integer `5``, `floating point `1.5``, `boolean `true``.
        format!("`{value}")
    } else {
        match got {
            "sequence" => "a list".to_string(),
            "map" => "a mapping".to_string(),
            "unit value" | "null" => "nothing".to_string(),
            other => other.to_string(),
        }
    };
    let range = |max: u64| format!("a whole number from 0 to {max}");
    let expected = match expected {
        "u8" if out_of_range => range(u8::MAX.into()),
        "u16" if out_of_range => range(u16::MAX.into()),
        "u32" if out_of_range => range(u32::MAX.into()),
        "u64" | "usize" if out_of_range => range(u64::MAX),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "a whole number".to_string()
        }
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "`true` or `false`".to_string(),
        "a string" | "a borrowed string" | "a character" => "text".to_string(),
        "a sequence" => "a list".to_string(),
        other if other.starts_with("struct ") || other == "a map" => "a mapping".to_string(),
        other => other.to_string(),
    };
    Some(format!("expected {expected}, got {got}"))
}

/// `line` and `column` moved inside `text`. libyaml reports the end of a file that does not end
/// in a line break on the line after its last one; that line is not in the file, its end is.
fn within(text: &str, line: usize, column: usize) -> (usize, usize) {
    // Line breaks as YAML counts them: CR LF, CR, LF, NEL, LS and PS.
    let mut last = 1;
    let mut last_start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
            continue;
        }
        if matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            last += 1;
            last_start = i + c.len_utf8();
        }
    }
    if line > last {
        return (last, text[last_start..].chars().count() + 1);
    }
    (line.max(1), column.max(1))
}

/// serde_yaml writes ` at line L column C` into its messages, sometimes twice; diagnostics carry
/// the position already.
fn strip_location(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        // Skip `L column C`: digits, ` column `, digits.
        let after_line = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        let after = after_line
            .strip_prefix(" column ")
            .map(|t| t.trim_start_matches(|c: char| c.is_ascii_digit()))
            .unwrap_or(after_line);
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a read gives, comparable: the revision as JSON and every diagnostic.
    fn outcome(loaded: &Loaded) -> (serde_json::Value, Vec<Diagnostic>) {
        let revision = serde_json::to_value(&loaded.revision).expect("a revision serialises");
        (revision, loaded.diagnostics.clone())
    }

    #[test]
    fn a_reread_parses_only_changed_files_and_reads_what_a_fresh_read_does() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let host = |name: &str| {
            format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  defaultRepo: nas\n"
            )
        };
        write(
            "a-repos.yaml",
            "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: nas\nspec:\n  url: /srv/restic\n  password:\n    hostFile: /p\n",
        );
        write(
            "b-hosts.yaml",
            &[host("web-1"), host("web-2")].join("---\n"),
        );
        let mut reader = DirReader::new(Mode::Files);
        let first = reader.load(dir.path()).expect("read");
        assert!(first.is_valid(), "{:?}", first.diagnostics);
        assert_eq!(outcome(&first), outcome(&load_dir(dir.path()).unwrap()));
        let hosts_path = dir.path().join("b-hosts.yaml");
        let hosts_read = reader.files[&hosts_path].1.clone();

        // Each step: one file written or removed; the reader parses that file only, and reads
        // what a fresh read does (a name declared twice is refused where a fresh read would).
        let steps: [(&str, Option<String>, bool); 4] = [
            ("c-more.yaml", Some(host("web-3")), true),
            ("c-more.yaml", Some(host("web-2")), false),
            ("c-more.yaml", Some("kind: [".to_string()), false),
            ("c-more.yaml", None, true),
        ];
        for (name, text, valid) in steps {
            match &text {
                Some(text) => write(name, text),
                None => std::fs::remove_file(dir.path().join(name)).unwrap(),
            }
            let again = reader.load(dir.path()).expect("read");
            assert_eq!(
                outcome(&again),
                outcome(&load_dir(dir.path()).unwrap()),
                "after writing {name}: {text:?}"
            );
            assert_eq!(again.is_valid(), valid, "{:?}", again.diagnostics);
            assert!(
                Arc::ptr_eq(&reader.files[&hosts_path].1, &hosts_read),
                "the unchanged file is not parsed again"
            );
        }
        assert_eq!(reader.files.len(), 2, "a removed file is forgotten");

        write("b-hosts.yaml", &host("web-1"));
        let edited = reader.load(dir.path()).expect("read");
        assert!(!Arc::ptr_eq(&reader.files[&hosts_path].1, &hosts_read));
        assert_eq!(edited.revision.hosts.len(), 1, "the edit is read");
    }

    #[test]
    fn serde_unknown_names_get_suggestions() {
        let (field, msg) = describe_serde_error(
            FieldPath::parse("spec"),
            "unknown field `pathz`, expected one of `operation`, `paths`, `cron`",
        );
        assert_eq!(field.as_str(), "spec.pathz");
        assert_eq!(msg, "unknown field `pathz`; did you mean `paths`?");
        let (field, msg) = describe_serde_error(
            FieldPath::parse("spec.operation"),
            "unknown variant `Backup`, expected one of `backup`, `forget`, `prune`, `check`",
        );
        assert_eq!(field.as_str(), "spec.operation");
        assert_eq!(msg, "unknown value `Backup`; did you mean `backup`?");
    }

    #[test]
    fn type_errors_say_what_was_expected_in_words() {
        for (serde, words) in [
            (
                "invalid type: string \"ten\", expected u32",
                "expected a whole number, got `ten`",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "expected a whole number from 0 to 4294967295, got `-1`",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "expected a whole number, got `1.5`",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "expected `true` or `false`, got `yes`",
            ),
            (
                "invalid type: sequence, expected a string",
                "expected text, got a list",
            ),
            (
                "invalid type: string \"x\", expected struct Retention",
                "expected a mapping, got `x`",
            ),
        ] {
            let (_, message) = describe_serde_error(FieldPath::parse("spec.x"), serde);
            assert_eq!(message, words, "{serde}");
        }
    }

    #[test]
    fn a_wrongly_typed_field_is_reported_at_its_line_in_words() {
        let loaded = load_sources(vec![SourceFile::new(
            "fleet/schedules/weekly.yaml",
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: weekly\nspec:\n  operation: forget\n  cron: \"0 5 * * 0\"\n  hosts: [web-1]\n  retention:\n    keepLast: ten\n",
        )]);
        let errors: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("fleet/schedules/weekly.yaml:10:"),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("spec.retention.keepLast: expected a whole number, got `ten`"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_snapshot_in_a_file_is_refused_as_read_only() {
        let loaded = load_sources(vec![SourceFile::new(
            "fleet/snapshot.yaml",
            "apiVersion: holdfast.dev/v1alpha1\nkind: Snapshot\nmetadata:\n  name: web-1-nas-1a2b3c4d\nspec: {}\n",
        )]);
        let errors: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        assert_eq!(
            errors,
            [
                "fleet/snapshot.yaml:2:1: kind: Snapshot is read-only: the controller makes them from what agents report"
            ],
        );
        // Nor is it offered for a kind that is misspelt.
        let loaded = load_sources(vec![SourceFile::new(
            "fleet/x.yaml",
            "apiVersion: holdfast.dev/v1alpha1\nkind: Snapshoot\nmetadata:\n  name: x\n",
        )]);
        let errors: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        assert!(
            errors[0].ends_with("`Backup`, `Restore`, `Notifier`"),
            "{errors:?}"
        );
    }

    #[test]
    fn serde_positions_are_stripped() {
        assert_eq!(
            strip_location("did not find expected key at line 3 column 5"),
            "did not find expected key"
        );
        assert_eq!(
            strip_location(
                "did not find expected key at line 30 column 7, while parsing a block mapping at line 28 column 5"
            ),
            "did not find expected key, while parsing a block mapping"
        );
    }
}
