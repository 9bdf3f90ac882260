use super::*;
use crate::diff::{Names, RevisionChanges};

/// The revisions read at `/revisions`, newest first: each applied or rejected, with its
/// commit, time, errors and what it changed against the revision in force before it.
pub fn revisions(view: &RevisionsView) -> Markup {
    let now = view.now;
    let declared = Declared::new(view.hosts, view.schedules, view.repos);
    let link = |name: &str| object_link(name, &declared);
    layout(
        "Revisions",
        None,
        html! {
            nav.crumbs { a href="/" { "Holdfast" } " / revisions" }
            header.page { h1 { "Revisions" } }
            @if view.entries.is_empty() {
                p.empty {
                    @if view.before.is_some() { "No older revisions." }
                    @else {
                        "No revision has been read from a config directory yet. (In "
                        "Kubernetes mode none is: the cluster's objects are the desired state.)"
                    }
                }
            }
            @for entry in view.entries {
                @let r = &entry.record;
                @let in_force = view.in_force == Some(r.id);
                section.revision-entry id=(format!("revision-{}", r.id))
                    data-state=(if entry.applied { "applied" } else { "rejected" }) {
                    h2 {
                        "Revision " (r.id) " "
                        @if in_force { (badge("in force", "ok")) }
                        @else if entry.applied { (badge("applied", "muted")) }
                        @else { (badge("rejected", "bad")) }
                    }
                    p.revision {
                        "Read " (time_el(now, r.at))
                        @if let Some(commit) = &r.commit { " from " (source_of(r, commit)) }
                        @if !r.summary.is_empty() { " · " (r.summary) }
                    }
                    @if !r.errors.is_empty() {
                        ul.errors { @for error in &r.errors { li { (error) } } }
                    }
                    (changes_list(entry.applied, r.changes.as_ref(), &link))
                }
            }
            nav.pager aria-label="Revision pages" {
                @if view.before.is_some() { a href="/revisions" { "Newest" } }
                @if view.more {
                    @if let Some(last) = view.entries.last() {
                        a href=(format!("/revisions?before={}", last.record.id)) rel="next" {
                            "Older →"
                        }
                    }
                }
            }
        },
    )
}

fn changes_list(
    applied: bool,
    changes: Option<&RevisionChanges>,
    link: &dyn Fn(&str) -> Markup,
) -> Markup {
    let Some(changes) = changes else {
        return html! { p.note { "What it changed was not recorded." } };
    };
    if changes.is_empty() {
        return html! { p.note { "It changed nothing." } };
    }
    let (added, changed, removed) = if applied {
        ("Added", "Changed", "Removed")
    } else {
        ("Would add", "Would change", "Would remove")
    };
    html! {
        dl.facts.changes {
            (names_row(added, &changes.added, link))
            (names_row(changed, &changes.changed, link))
            (names_row(removed, &changes.removed, link))
            (names_row("New schedule version", &changes.new_versions, &|host| {
                link(&format!("Host/{host}"))
            }))
        }
    }
}

fn names_row(label: &str, names: &Names, link: &dyn Fn(&str) -> Markup) -> Markup {
    html! {
        @if !names.is_empty() {
            dt { (label) " (" (count(names.total as u64)) ")" }
            dd {
                @for (i, name) in names.names.iter().enumerate() {
                    @if i > 0 { ", " }
                    (link(name))
                }
                @if names.total > names.names.len() {
                    " and " (count((names.total - names.names.len()) as u64)) " more"
                }
            }
        }
    }
}

/// `Schedule/nightly` or `Host/team-a/web-1`, linked to its page when the object is in force.
fn object_link(name: &str, declared: &Declared) -> Markup {
    let mut parts = name.splitn(3, '/');
    let (kind, first, second) = (parts.next(), parts.next(), parts.next());
    let (namespace, object) = match (first, second) {
        (Some(namespace), Some(object)) => (namespace, object),
        (Some(object), None) => (DEFAULT_NAMESPACE, object),
        _ => return html! { code { (name) } },
    };
    let shown = html! { code { (name) } };
    match kind {
        Some("Host") => declared.host_as(namespace, object, shown),
        Some("Schedule") => declared.schedule_as(namespace, object, shown),
        Some("Repo") => declared.repo_as(namespace, object, shown),
        _ => shown,
    }
}

/// `commit 0123456`, or the edits not committed on top of it: a rejected edit is not the
/// commit checked out, and naming only the commit points at files that are fine.
pub(super) fn source_of(r: &RevisionRecord, commit: &str) -> Markup {
    html! {
        @if r.uncommitted {
            "uncommitted edits on top of commit "
        } @else {
            "commit "
        }
        code title=(commit) { (short_commit(commit)) }
    }
}
