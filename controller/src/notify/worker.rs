//! One Notifier's delivery task: the oldest message of its outbox to its receiver, again with
//! backoff while that fails, then the next. The store is read and written on the blocking
//! pool; a request never takes longer than [`TIMEOUT`]; the task ends when its handle is
//! dropped (the Notifier changed or went, or this replica stopped leading).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::secrets::{self, SecretError};
use super::{Outgoing, SentLabels, Shared, alertmanager, email, labels_of, ntfy, webhook};
use crate::notices::{self, State};
use crate::resources::{NotifierSpec, SecretSource};
use crate::store::{NotifierId, Queued, StoreError};

/// The longest a delivery may take, connection and answer included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts of a message.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long the task waits when the store cannot be read.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// How long an idle task sleeps before it looks at its outbox again anyway.
const IDLE: Duration = Duration::from_secs(300);

/// A running task; dropping it ends the task.
pub struct Handle {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Something was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the task of a Notifier; `None` outside a tokio runtime (nothing is delivered then,
/// and messages stay queued).
pub fn spawn(shared: Arc<Shared>, id: &NotifierId, spec: &NotifierSpec) -> Option<Handle> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let wake = Arc::new(Notify::new());
    let task = runtime.spawn(run(shared, id.clone(), spec.clone(), wake.clone()));
    Some(Handle { wake, task })
}

/// Why a delivery failed. Its text goes to the log and the Notifier's status: it names the
/// receiver and the secret's source, never a secret.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("no answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Http(#[from] super::http::HttpError),
    #[error(transparent)]
    Mail(#[from] email::MailError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the Notifier names no receiver")]
    NoReceiver,
    #[error("reading the secret stopped: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Runs `work` on the store, on the blocking pool.
async fn with_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&mut crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let shared = shared.clone();
    match tokio::task::spawn_blocking(move || work(&mut shared.store())).await {
        Ok(done) => done,
        Err(e) => Err(StoreError::Other {
            path: "notifications".into(),
            message: format!("the store's task failed: {e}"),
        }),
    }
}

async fn run(shared: Arc<Shared>, id: NotifierId, spec: NotifierSpec, wake: Arc<Notify>) {
    let label = format!("{}/{}", id.0, id.1);
    let mut refreshed = tokio::time::Instant::now();
    let mut refresh_failing = false;
    loop {
        let head = {
            let id = id.clone();
            with_store(&shared, move |s| s.next_message(&id)).await
        };
        let now = Utc::now();
        let wait = match head {
            Err(e) => {
                tracing::error!(notifier = %label, "cannot read the outbox: {e}");
                STORE_RETRY
            }
            Ok(Some(message)) if message.next_attempt <= now => {
                attempt(&shared, &id, &spec, &message).await;
                continue;
            }
            Ok(Some(message)) => (message.next_attempt - now).to_std().unwrap_or_default(),
            Ok(None) => match &spec.alertmanager {
                // Nothing queued: the alerts still firing are due to be sent again.
                Some(receiver) => {
                    let due = refreshed + alertmanager::REFRESH;
                    if tokio::time::Instant::now() >= due {
                        refresh(&shared, &id, receiver, &mut refresh_failing).await;
                        refreshed = tokio::time::Instant::now();
                        continue;
                    }
                    due - tokio::time::Instant::now()
                }
                None => IDLE,
            },
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One attempt of the message at the head of the outbox, and what came of it stored.
async fn attempt(shared: &Arc<Shared>, id: &NotifierId, spec: &NotifierSpec, message: &Queued) {
    let label = format!("{}/{}", id.0, id.1);
    let title = notices::title(&message.alert, message.state);
    let outcome = tokio::time::timeout(TIMEOUT, deliver(shared, id, spec, message))
        .await
        .unwrap_or(Err(DeliveryError::Timeout));
    let now = Utc::now();
    let stored = match outcome {
        Ok(()) => {
            tracing::info!(notifier = %label, "sent {title}");
            shared
                .counters
                .sent
                .get_or_create(&SentLabels {
                    namespace: id.0.clone(),
                    notifier: id.1.clone(),
                    status: message.state.as_str().into(),
                })
                .inc();
            let (id, message_id) = (id.clone(), message.id);
            with_store(shared, move |s| {
                s.delivered(&id, Some(message_id), now, &title)
            })
            .await
        }
        Err(e) => {
            let attempts = message.attempts + 1;
            let backoff = Duration::from_secs(1 << attempts.min(6)).min(MAX_BACKOFF);
            tracing::warn!(
                notifier = %label,
                attempts,
                "cannot send {title}: {e}; trying again in {}s",
                backoff.as_secs()
            );
            shared.counters.failed.get_or_create(&labels_of(id)).inc();
            let next = now + backoff;
            let (id, message_id, error) = (id.clone(), message.id, e.to_string());
            with_store(shared, move |s| {
                s.failed(&id, Some(message_id), now, &error, next)
            })
            .await
        }
    };
    if let Err(e) = stored {
        tracing::error!(notifier = %label, "cannot record a delivery: {e}");
        tokio::time::sleep(STORE_RETRY).await;
    }
    shared.changed();
}

/// A secret of the receiver, read on the blocking pool (it may be a file).
async fn secret(
    shared: &Arc<Shared>,
    namespace: &str,
    source: &Option<SecretSource>,
) -> Result<Option<String>, DeliveryError> {
    let Some(source) = source.clone() else {
        return Ok(None);
    };
    let (keys, namespace) = (shared.keys.clone(), namespace.to_string());
    let read = tokio::task::spawn_blocking(move || secrets::read(&keys, &namespace, &source))
        .await
        .map_err(DeliveryError::Task)?;
    Ok(Some(read?))
}

async fn deliver(
    shared: &Arc<Shared>,
    id: &NotifierId,
    spec: &NotifierSpec,
    message: &Queued,
) -> Result<(), DeliveryError> {
    let link = shared
        .external_url
        .as_deref()
        .map(|base| notices::link(&message.alert, base));
    let out = Outgoing {
        id: message.id,
        notifier: id,
        state: message.state,
        alert: &message.alert,
        at: message.at,
        link,
    };
    let client = &shared.client;
    if let Some(r) = &spec.webhook {
        let key = secret(shared, &id.0, &r.signing_secret).await?;
        webhook::send(client, &r.url, key.as_deref(), &out).await?;
    } else if let Some(r) = &spec.ntfy {
        let token = secret(shared, &id.0, &r.token).await?;
        ntfy::send(client, &r.url, token.as_deref(), &out).await?;
    } else if let Some(r) = &spec.email {
        let password = secret(shared, &id.0, &r.password).await?;
        email::send(r, password, &out, TIMEOUT).await?;
    } else if let Some(r) = &spec.alertmanager {
        let token = secret(shared, &id.0, &r.token).await?;
        // A firing alert ends a while after it was sent, unless sent again.
        let at = match message.state {
            State::Firing => Utc::now(),
            State::Resolved => message.at,
        };
        let alert = alertmanager::alert(
            &message.alert,
            message.state,
            at,
            out.link.as_deref(),
            &id.1,
        );
        alertmanager::send(client, &r.url, token.as_deref(), &[alert]).await?;
    } else {
        return Err(DeliveryError::NoReceiver);
    }
    Ok(())
}

/// Sends every alert still firing to Alertmanager again, so that it does not end them.
/// `failing`: whether the last refresh failed, so that the next one that works says so.
async fn refresh(
    shared: &Arc<Shared>,
    id: &NotifierId,
    receiver: &crate::resources::AlertmanagerReceiver,
    failing: &mut bool,
) {
    let fired = {
        let id = id.clone();
        with_store(shared, move |s| s.fired_of(&id)).await
    };
    let fired = match fired {
        Ok(fired) if !fired.is_empty() => fired,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(
                "cannot read the alerts notifier {}/{} fired: {e}",
                id.0,
                id.1
            );
            return;
        }
    };
    let now = Utc::now();
    let alerts: Vec<serde_json::Value> = fired
        .iter()
        .map(|f| {
            let link = shared
                .external_url
                .as_deref()
                .map(|base| notices::link(&f.alert, base));
            alertmanager::alert(&f.alert, State::Firing, now, link.as_deref(), &id.1)
        })
        .collect();
    let sent = async {
        let token = secret(shared, &id.0, &receiver.token).await?;
        alertmanager::send(&shared.client, &receiver.url, token.as_deref(), &alerts).await?;
        Ok::<(), DeliveryError>(())
    };
    let outcome = tokio::time::timeout(TIMEOUT, sent)
        .await
        .unwrap_or(Err(DeliveryError::Timeout));
    let stored = match outcome {
        Ok(()) if *failing => {
            *failing = false;
            let (id, title) = (
                id.clone(),
                format!("{} firing alerts sent again", alerts.len()),
            );
            with_store(shared, move |s| s.delivered(&id, None, now, &title)).await
        }
        Ok(()) => return,
        Err(e) => {
            tracing::warn!(
                "cannot send the firing alerts of {}/{} again: {e}",
                id.0,
                id.1
            );
            *failing = true;
            shared.counters.failed.get_or_create(&labels_of(id)).inc();
            let (id, error) = (id.clone(), e.to_string());
            let next = now + alertmanager::REFRESH;
            with_store(shared, move |s| s.failed(&id, None, now, &error, next)).await
        }
    };
    if let Err(e) = stored {
        tracing::error!("cannot record a delivery: {e}");
    }
    shared.changed();
}
