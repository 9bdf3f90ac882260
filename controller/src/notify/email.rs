//! The `email` receiver: a plain-text mail through SMTP (lettre), over STARTTLS, implicit TLS,
//! or plain text for a server on the same machine, logging in when the Notifier names a user.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Outgoing;
use crate::notices;
use crate::resources::{EmailReceiver, SmtpTls};

/// Why a mail was not sent. Names the server and addresses, never the password.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("`{address}` is not a mail address: {source}")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("cannot build the mail: {0}")]
    Build(#[source] lettre::error::Error),
    #[error("SMTP server {server}: {source}")]
    Smtp {
        server: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// The mail of one message.
pub fn mail(receiver: &EmailReceiver, m: &Outgoing) -> Result<Message, MailError> {
    let parse = |text: &str| {
        text.parse().map_err(|source| MailError::Address {
            address: text.to_string(),
            source,
        })
    };
    let mut builder = Message::builder()
        .from(parse(&receiver.from)?)
        .subject(notices::title(m.alert, m.state))
        .header(ContentType::TEXT_PLAIN);
    for to in &receiver.to {
        builder = builder.to(parse(to)?);
    }
    builder
        .body(notices::body(m.alert, m.state, m.at, m.link.as_deref()))
        .map_err(MailError::Build)
}

pub async fn send(
    receiver: &EmailReceiver,
    password: Option<String>,
    m: &Outgoing<'_>,
    timeout: Duration,
) -> Result<(), MailError> {
    let mail = mail(receiver, m)?;
    let port = receiver.port.unwrap_or(receiver.tls.default_port());
    let server = format!("{}:{port}", receiver.host);
    let smtp = |source| MailError::Smtp {
        server: server.clone(),
        source,
    };
    let builder = match receiver.tls {
        SmtpTls::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&receiver.host).map_err(smtp)?
        }
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&receiver.host).map_err(smtp)?
        }
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&receiver.host),
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&receiver.username, password) {
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder.build().send(mail).await.map_err(smtp)?;
    Ok(())
}
