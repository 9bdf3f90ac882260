//! `labelSelector` and `fieldSelector` query parameters, in Kubernetes' text syntax.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};

/// Why a `labelSelector` or `fieldSelector` cannot be read; it quotes the requirement.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement {0:?}: a label key is required")]
    NoLabelKey(String),
    #[error("unable to parse requirement {0:?}: the operators < and > are not supported here")]
    Comparison(String),
    #[error("unable to parse requirement {0:?}: expected `in (...)` or `notin (...)`")]
    NoSet(String),
    #[error("unable to parse requirement {0:?}: a set must end with `)`")]
    UnclosedSet(String),
    #[error(
        "unable to parse requirement {requirement:?}: unknown operator {operator:?}; use in or notin"
    )]
    UnknownSetOperator {
        requirement: String,
        operator: String,
    },
    #[error(
        "unable to parse requirement {requirement:?}: invalid label key {key:?}: a name of at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, optionally after a DNS prefix and `/`"
    )]
    LabelKey { requirement: String, key: String },
    #[error(
        "unable to parse requirement {requirement:?}: invalid label value {value:?}: at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
    )]
    LabelValue { requirement: String, value: String },
    #[error("invalid field selector {0:?}: expected field=value")]
    NoFieldValue(String),
    #[error("field label not supported: {field} (supported: {supported})")]
    UnsupportedField { field: String, supported: String },
}

/// Parses `app=web,tier!=db,env in (a,b),!legacy,owner` into a selector; empty text selects
/// all. Errors name the requirement that cannot be read.
pub fn labels(text: &str) -> Result<Selector, SelectorError> {
    let mut expressions = Vec::new();
    for requirement in split_top_level(text) {
        let r = requirement.trim();
        if r.is_empty() {
            continue;
        }
        expressions.push(requirement_of(r)?);
    }
    Ok(Selector::from_iter(expressions))
}

pub fn matches(selector: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    selector.matches(labels.unwrap_or(&empty))
}

/// Commas separate requirements, except inside a set's parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement_of(r: &str) -> Result<Expression, SelectorError> {
    let key = |k: &str| -> Result<String, SelectorError> {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(SelectorError::NoLabelKey(r.to_string()))
        } else if !is_label_key(k) {
            Err(SelectorError::LabelKey {
                requirement: r.to_string(),
                key: k.to_string(),
            })
        } else {
            Ok(k.to_string())
        }
    };
    let value = |v: &str| -> Result<String, SelectorError> {
        let v = v.trim();
        if v.is_empty() || is_label_name(v) {
            Ok(v.to_string())
        } else {
            Err(SelectorError::LabelValue {
                requirement: r.to_string(),
                value: v.to_string(),
            })
        }
    };
    if let Some(rest) = r.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(rest)?));
    }
    for (op, not) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = r.split_once(op) {
            let (k, v) = (key(k)?, value(v)?);
            return Ok(if not {
                Expression::NotEqual(k, v)
            } else {
                Expression::Equal(k, v)
            });
        }
    }
    if r.contains(['<', '>']) {
        return Err(SelectorError::Comparison(r.to_string()));
    }
    let mut words = r.splitn(2, char::is_whitespace);
    let k = key(words.next().unwrap_or_default())?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Expression::Exists(k));
    };
    let (set_op, values) = rest
        .split_once('(')
        .ok_or_else(|| SelectorError::NoSet(r.to_string()))?;
    let values = values
        .strip_suffix(')')
        .ok_or_else(|| SelectorError::UnclosedSet(r.to_string()))?;
    let values: BTreeSet<String> = values
        .split(',')
        .map(value)
        .filter(|v| !matches!(v, Ok(v) if v.is_empty()))
        .collect::<Result<_, _>>()?;
    match set_op.trim() {
        "in" => Ok(Expression::In(k, values)),
        "notin" => Ok(Expression::NotIn(k, values)),
        other => Err(SelectorError::UnknownSetOperator {
            requirement: r.to_string(),
            operator: other.to_string(),
        }),
    }
}

/// A label key as Kubernetes accepts it: a name, optionally after a DNS subdomain and `/`.
fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part.len() <= 63
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
                && is_label_name(name)
        }
        None => is_label_name(key),
    }
}

/// A label name or non-empty value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_name(text: &str) -> bool {
    let alnum = |c: Option<u8>| c.is_some_and(|b| b.is_ascii_alphanumeric());
    text.len() <= 63
        && alnum(text.bytes().next())
        && alnum(text.bytes().last())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A `fieldSelector`: requirements on named fields, with `=`, `==` or `!=`; each kind
/// supports its own fields, as the API server does (for custom resources only
/// `metadata.name` and `metadata.namespace`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<FieldRequirement>);

#[derive(Debug, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    equal: bool,
    value: String,
}

/// The fields every kind supports.
pub const NAME_AND_NAMESPACE: &[&str] = &["metadata.name", "metadata.namespace"];

/// Parses `text` into requirements on the fields in `supported`.
pub fn fields(text: &str, supported: &[&str]) -> Result<Fields, SelectorError> {
    let mut out = Vec::new();
    for r in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (field, equal, value) = if let Some((f, v)) = r.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = r.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = r.split_once('=') {
            (f, true, v)
        } else {
            return Err(SelectorError::NoFieldValue(r.to_string()));
        };
        let field = field.trim();
        if !supported.contains(&field) {
            return Err(SelectorError::UnsupportedField {
                field: field.to_string(),
                supported: supported.join(", "),
            });
        }
        out.push(FieldRequirement {
            field: field.to_string(),
            equal,
            value: value.trim().to_string(),
        });
    }
    Ok(Fields(out))
}

impl Fields {
    /// Whether no field is asked for.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object whose fields `value_of` gives (empty when it has none) matches.
    pub fn matches_with(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.0
            .iter()
            .all(|r| (value_of(&r.field) == r.value) == r.equal)
    }

    /// Takes out the requirements on fields that objects also carry as labels (`label_of`), as
    /// label requirements: `!=` matches an object without the label, as it matches one without
    /// the field.
    pub fn take_labelled(
        &mut self,
        label_of: impl Fn(&str) -> Option<&'static str>,
    ) -> Vec<Expression> {
        let mut labelled = Vec::new();
        self.0.retain(|r| match label_of(&r.field) {
            Some(label) => {
                let (key, value) = (label.to_string(), r.value.clone());
                labelled.push(match r.equal {
                    true => Expression::Equal(key, value),
                    false => Expression::NotEqual(key, value),
                });
                false
            }
            None => true,
        });
        labelled
    }

    /// [`Fields::matches_with`] for the name and namespace alone.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.matches_with(|field| match field {
            "metadata.name" => name.to_string(),
            "metadata.namespace" => namespace.to_string(),
            _ => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let web = labelled(&[("role", "web"), ("site", "ams")]);
        let db = labelled(&[("role", "db"), ("legacy", "yes")]);
        let cases = [
            ("", true, true),
            ("role=web", true, false),
            ("role==web", true, false),
            ("role!=web", false, true),
            ("role in (web, db),site", true, false),
            ("role notin (web)", false, true),
            ("!legacy", true, false),
            ("legacy", false, true),
            ("role in (db),legacy", false, true),
            (" role = web , site = ams ", true, false),
        ];
        for (text, on_web, on_db) in cases {
            let s = labels(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(matches(&s, Some(&web)), on_web, "{text:?} on web");
            assert_eq!(matches(&s, Some(&db)), on_db, "{text:?} on db");
        }
        assert!(matches(&labels("!role").expect("parses"), None));
    }

    #[test]
    fn label_keys_and_values_take_the_kubernetes_syntax() {
        for ok in [
            "app=web",
            "holdfast.dev/host=web-1",
            "a.b_c-d=E.f_9",
            "app=",
            "app in (web, db)",
        ] {
            assert!(labels(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(64);
        assert!(labels(&format!("app={long}")).is_err());
        assert!(labels(&format!("{long}=1")).is_err());
    }

    #[test]
    fn bad_label_selectors_say_what_is_wrong() {
        for (text, says) in [
            ("=web", "label key"),
            ("role in web", "in (...)"),
            ("role in (web", "end with `)`"),
            ("role inn (web)", "unknown operator"),
            ("replicas>3", "not supported"),
            ("bad===", "invalid label value \"=\""),
            ("a b=c", "label key"),
            ("-x=1", "invalid label key \"-x\""),
            ("role in (web,-db)", "invalid label value \"-db\""),
            ("role=web!", "invalid label value"),
        ] {
            let e = labels(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn field_selectors_take_name_and_namespace() {
        let fields = |text: &str| fields(text, NAME_AND_NAMESPACE);
        let f = fields("metadata.name=web-1").expect("parses");
        assert!(f.matches("default", "web-1"));
        assert!(!f.matches("default", "web-2"));
        let f = fields("metadata.namespace==prod,metadata.name!=web-1").expect("parses");
        assert!(f.matches("prod", "web-2"));
        assert!(!f.matches("prod", "web-1"));
        assert!(!f.matches("default", "web-2"));
        assert!(fields("").expect("parses").matches("any", "thing"));
        let e = fields("status.phase=Failed")
            .expect_err("unsupported")
            .to_string();
        assert!(e.contains("status.phase"), "{e}");
        assert!(fields("metadata.name").is_err());
    }
}
