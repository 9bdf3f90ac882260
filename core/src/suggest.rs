//! "Did you mean …?" for names people mistype.

/// The candidate closest to `name`, when one is close enough to be what was meant.
pub fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `unknown field `pathz`; did you mean `paths`?`, or the list of valid names when none is
/// close.
pub fn unknown_name_message(what: &str, name: &str, valid: &[&str]) -> String {
    match nearest(name, valid) {
        Some(best) => format!("unknown {what} `{name}`; did you mean `{best}`?"),
        None if valid.is_empty() => format!("unknown {what} `{name}`"),
        None => {
            let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
            format!(
                "unknown {what} `{name}`; expected one of {}",
                list.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        assert_eq!(nearest("exclude", &["excludes", "paths"]), Some("excludes"));
        assert_eq!(nearest("Backup", &["backup", "check"]), Some("backup"));
        assert_eq!(nearest("zzz", &["excludes", "paths"]), None);
    }

    #[test]
    fn far_names_list_the_valid_ones() {
        assert_eq!(
            unknown_name_message("kind", "Widget", &["Repo", "Host"]),
            "unknown kind `Widget`; expected one of `Repo`, `Host`"
        );
    }
}
