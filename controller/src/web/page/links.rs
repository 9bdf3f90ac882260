use super::*;
use std::sync::Arc;

pub(super) fn host_url(namespace: &str, name: &str) -> String {
    format!("/hosts/{namespace}/{name}")
}

pub(super) fn run_url(namespace: &str, name: &str) -> String {
    format!("/runs/{namespace}/{name}")
}

/// `name`, or `namespace/name` outside the default namespace.
pub(super) fn qualified(namespace: &str, name: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

pub(super) fn short_commit(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

pub(super) fn schedule_url(namespace: &str, name: &str) -> String {
    format!("/schedules/{namespace}/{name}")
}

pub(super) fn repo_url(namespace: &str, name: &str) -> String {
    format!("/repos/{namespace}/{name}")
}

/// The hosts, schedules and repos in force: a name links to its page only when there is one,
/// so a run of a schedule since removed names it without a link that would answer 404.
pub(super) struct Declared<'a> {
    hosts: HashSet<(&'a str, &'a str)>,
    schedules: HashSet<(&'a str, &'a str)>,
    repos: HashSet<(&'a str, &'a str)>,
}

fn keys<K: kube::ResourceExt>(objects: &[Arc<K>]) -> HashSet<(&str, &str)> {
    objects
        .iter()
        .map(|o| (namespace_of(o.as_ref()), name_of(o.as_ref())))
        .collect()
}

impl<'a> Declared<'a> {
    pub(super) fn new(
        hosts: &'a [Arc<Host>],
        schedules: &'a [Arc<Schedule>],
        repos: &'a [Arc<Repo>],
    ) -> Declared<'a> {
        Declared {
            hosts: keys(hosts),
            schedules: keys(schedules),
            repos: keys(repos),
        }
    }

    /// The host's name, linked to its page when it is declared.
    pub(super) fn host(&self, namespace: &str, name: &str) -> Markup {
        self.host_as(namespace, name, html! { (name) })
    }

    pub(super) fn host_as(&self, namespace: &str, name: &str, shown: Markup) -> Markup {
        linked(
            self.hosts.contains(&(namespace, name)),
            host_url(namespace, name),
            shown,
        )
    }

    /// The schedule's name, linked to its page when it is declared.
    pub(super) fn schedule(&self, namespace: &str, name: &str) -> Markup {
        self.schedule_as(namespace, name, html! { (name) })
    }

    /// The repo's name, linked to its page when it is declared.
    pub(super) fn repo(&self, namespace: &str, name: &str) -> Markup {
        self.repo_as(namespace, name, html! { (name) })
    }

    pub(super) fn schedule_as(&self, namespace: &str, name: &str, shown: Markup) -> Markup {
        linked(
            self.schedules.contains(&(namespace, name)),
            schedule_url(namespace, name),
            shown,
        )
    }

    pub(super) fn repo_as(&self, namespace: &str, name: &str, shown: Markup) -> Markup {
        linked(
            self.repos.contains(&(namespace, name)),
            repo_url(namespace, name),
            shown,
        )
    }
}

fn linked(link: bool, url: String, shown: Markup) -> Markup {
    html! {
        @if link { a href=(url) { (shown) } } @else { (shown) }
    }
}

/// `Hosts 101–200 of 250 · ← Previous · Next →`: where page `page` of `pages` (of `per_page`
/// rows, `shown` of them on it, `total` in all) stands, with links made by `url`.
pub(super) fn pager(
    (page, pages): (usize, usize),
    (per_page, shown, total): (usize, usize, usize),
    url: &dyn Fn(usize) -> String,
) -> Markup {
    html! {
        nav.pager aria-label="Host pages" {
            span {
                "Hosts " (count(((page - 1) * per_page + 1) as u64)) "–"
                (count(((page - 1) * per_page + shown) as u64))
                " of " (count(total as u64))
            }
            @if page > 1 { a href=(url(page - 1)) rel="prev" { "← Previous" } }
            @if page < pages { a href=(url(page + 1)) rel="next" { "Next →" } }
        }
    }
}
