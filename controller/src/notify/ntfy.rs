//! The `ntfy` receiver: the message as the body of a POST to the topic's URL, its title,
//! priority and tags in ntfy's headers, and a link to click.

use super::Outgoing;
use super::http::{Client, HttpError};
use crate::alerts::Severity;
use crate::notices::{self, State};

/// ntfy's headers for a message: `Title`, `Priority` (5 urgent for a critical alert firing, 4
/// high for a warning, 3 default once resolved), `Tags` (shown as emoji) and `Click`.
pub fn headers(m: &Outgoing) -> Vec<(&'static str, String)> {
    let (priority, tag) = match (m.state, m.alert.severity()) {
        (State::Resolved, _) => ("3", "white_check_mark"),
        (State::Firing, Severity::Critical) => ("5", "rotating_light"),
        (State::Firing, Severity::Warning) => ("4", "warning"),
    };
    let mut headers = vec![
        ("title", notices::title(m.alert, m.state)),
        ("priority", priority.to_string()),
        ("tags", format!("{tag},holdfast,{}", m.alert.event)),
    ];
    if let Some(link) = &m.link {
        headers.push(("click", link.clone()));
    }
    headers
}

pub async fn send(
    client: &Client,
    url: &str,
    token: Option<&str>,
    m: &Outgoing<'_>,
) -> Result<(), HttpError> {
    let mut headers = headers(m);
    headers.push(("content-type", "text/plain; charset=utf-8".into()));
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    let body = notices::summary(m.alert).into_bytes();
    client.post(url, &headers, body).await
}
