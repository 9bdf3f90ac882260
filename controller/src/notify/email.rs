//! The `email` receiver: a plain-text mail through SMTP (lettre), over STARTTLS, implicit TLS,
//! or plain text for a server on the same machine, logging in when the Notifier names a user.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
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
    #[error("cannot read the certificate authority file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the certificate authority file {path} holds no PEM certificate: {source}")]
    Certificate {
        path: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
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

/// The system's certificate authorities, and the Notifier's `caFile`.
async fn tls(receiver: &EmailReceiver) -> Result<TlsParameters, MailError> {
    let mut params = TlsParameters::builder(receiver.host.clone());
    if let Some(path) = &receiver.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|source| MailError::CaFile {
                path: path.clone(),
                source,
            })?;
        let ca = Certificate::from_pem(&pem).map_err(|source| MailError::Certificate {
            path: path.clone(),
            source,
        })?;
        params = params.add_root_certificate(ca);
    }
    params.build().map_err(|source| MailError::Smtp {
        server: receiver.host.clone(),
        source,
    })
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
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&receiver.host);
    let builder = match receiver.tls {
        SmtpTls::StartTls => builder.tls(Tls::Required(tls(receiver).await?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(receiver).await?)),
        SmtpTls::None => builder,
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&receiver.username, password) {
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder.build().send(mail).await.map_err(smtp)?;
    Ok(())
}
