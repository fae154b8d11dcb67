//! How every subcommand reaches a server: the address, TLS, and the token.
//!
//! A [`Target`] is built once from the global options (`--tls`, `--ca`, `--cert`/`--key`,
//! `--tls-server-name`, `--token`/`SPROUT_TOKEN`) and handed to each subcommand, which
//! connects through [`Target::connector`]: the `sprout-client` crate opens TCP or a unix
//! socket, runs the TLS handshake when TLS is on (rustls, ring provider, TLS 1.2 and 1.3),
//! and sends `auth <token>` when there is a token, so every path behaves alike. This module
//! only turns the options into that crate's settings, with errors that name the options.
//!
//! Trust: with `--ca FILE` the server's certificate must chain to a certificate in FILE
//! and nothing else; without it, to one of the Mozilla roots compiled in (webpki-roots).
//! The name checked is the host of the address (a DNS name or an IP address, which then
//! must be in the certificate's IP SANs), or `--tls-server-name`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sprout_client::{Connector, Tls, MAX_TOKEN};

/// The connection options every subcommand shares (global flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Connect with TLS (implied by --ca, --cert, --key and --tls-server-name).
    #[arg(long = "tls", id = "conn-tls", global = true)]
    pub tls: bool,
    /// Trust only the CA certificate(s) in this PEM file for the server's certificate
    /// (default: the Mozilla roots built into sprout) [env: SPROUT_CA].
    #[arg(
        long = "ca",
        id = "conn-ca",
        value_name = "FILE",
        global = true,
        env = "SPROUT_CA",
        hide_env = true
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for listeners that require one (mTLS); with --key
    /// [env: SPROUT_CERT].
    #[arg(
        long = "cert",
        id = "conn-cert",
        value_name = "FILE",
        global = true,
        env = "SPROUT_CERT",
        hide_env = true
    )]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert [env: SPROUT_KEY].
    #[arg(
        long = "key",
        id = "conn-key",
        value_name = "FILE",
        global = true,
        env = "SPROUT_KEY",
        hide_env = true
    )]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host in the address;
    /// needed for a unix: address).
    #[arg(
        long = "tls-server-name",
        id = "conn-tls-server-name",
        value_name = "NAME",
        global = true
    )]
    pub tls_server_name: Option<String>,
    /// Sent as `auth TOKEN` right after connecting, for token listeners [env:
    /// SPROUT_TOKEN, which keeps it out of the process list].
    #[arg(
        long = "token",
        id = "conn-token",
        value_name = "TOKEN",
        global = true,
        env = "SPROUT_TOKEN",
        hide_env = true
    )]
    pub token: Option<String>,
}

impl ConnArgs {
    /// Whether any option asks for TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls
            || self.ca.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.tls_server_name.is_some()
    }
}

/// Where and how to connect: the address, TLS or not, and the token.
#[derive(Clone)]
pub struct Target {
    /// As given: `HOST:PORT`, `HOST` (port 11300) or `unix:/path`.
    pub addr: String,
    tls: Option<Tls>,
    token: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Target {
    /// A plain connection to `addr`, no token.
    pub fn plain(addr: &str) -> Target {
        Target {
            addr: addr.to_string(),
            tls: None,
            token: None,
        }
    }

    /// The target the options describe. Errors name the option at fault.
    pub fn new(addr: &str, a: &ConnArgs) -> Result<Target, String> {
        if let Some(t) = &a.token {
            sprout_client::check_token(t).map_err(|_| {
                format!(
                    "--token/SPROUT_TOKEN: expected 1 to {MAX_TOKEN} visible ASCII \
                     characters, no spaces"
                )
            })?;
        }
        let tls = if a.wants_tls() {
            Some(tls_settings(addr, a)?)
        } else {
            None
        };
        Ok(Target {
            addr: addr.to_string(),
            tls,
            token: a.token.clone(),
        })
    }

    /// This target with TLS on, trusting the CA certificate(s) in `ca` only and verifying
    /// `name` (for the benchmark's own servers).
    pub fn with_tls(&self, ca: &Path, name: &str) -> Result<Target, String> {
        let tls = Tls::builder()
            .ca_file(ca)
            .and_then(|b| b.server_name(name))
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        Ok(Target {
            tls: Some(tls),
            ..self.clone()
        })
    }

    /// This target without TLS session resumption, so that every connection makes a
    /// full handshake (the handshake benchmark).
    pub fn without_resumption(&self) -> Target {
        Target {
            tls: self.tls.as_ref().map(Tls::without_resumption),
            ..self.clone()
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// How to connect, with `timeout` for the socket and again for the handshake and
    /// `auth`.
    pub fn connector(&self, timeout: Duration) -> Connector {
        let mut c = Connector::new(&self.addr).timeout(timeout);
        if let Some(tls) = &self.tls {
            c = c.tls(tls.clone());
        }
        if let Some(t) = &self.token {
            // Checked in `new`.
            c = c.token(t).expect("a checked token");
        }
        c
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// The TLS settings of the options: roots from --ca (or the Mozilla roots), a client
/// certificate from --cert/--key, the name from --tls-server-name or the address.
fn tls_settings(addr: &str, a: &ConnArgs) -> Result<Tls, String> {
    let mut b = Tls::builder();
    if let Some(ca) = &a.ca {
        b = b.ca_file(ca).map_err(|e| format!("--ca {e}"))?;
    }
    match (&a.cert, &a.key) {
        (Some(c), Some(k)) => {
            b = b
                .client_cert_files(c, k)
                .map_err(|e| format!("--cert/--key {e}"))?
        }
        (None, None) => {}
        (Some(_), None) => return Err("--cert needs --key (the certificate's private key)".into()),
        (None, Some(_)) => return Err("--key needs --cert (the client certificate)".into()),
    }
    if let Some(n) = &a.tls_server_name {
        b = b
            .server_name(n)
            .map_err(|_| format!("--tls-server-name {n:?}: not a DNS name or IP"))?;
    }
    let tls = b.build().map_err(|e| e.to_string())?;
    // The address must name what to verify, unless --tls-server-name does.
    Connector::new(addr)
        .tls(tls.clone())
        .check()
        .map_err(|e| format!("{e} (--tls-server-name)"))?;
    Ok(tls)
}

/// Why connecting failed, for the message and the exit status: the token refused
/// (`UNAUTHORIZED`), the token not taken (`UNKNOWN_COMMAND`: this listener has no
/// tokens), or anything else.
pub fn auth_failure(e: &sprout_client::Error) -> Option<AuthError> {
    use sprout_client::ServerError;
    match e.server()? {
        ServerError::Unauthorized => Some(AuthError::Refused),
        other => Some(AuthError::NotTaken(other.to_string())),
    }
}

/// Why `auth` did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// `UNAUTHORIZED`: the token is wrong (or revoked).
    Refused,
    /// Another reply (`UNKNOWN_COMMAND`: this listener takes no tokens).
    NotTaken(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Refused => f.write_str("the server refused the token (UNAUTHORIZED)"),
            AuthError::NotTaken(r) => write!(
                f,
                "the server does not take tokens on this listener (it replied {r} to auth): \
                 leave out --token and SPROUT_TOKEN"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_one_word() {
        let t = |tok: &str| {
            let a = ConnArgs {
                token: Some(tok.into()),
                ..Default::default()
            };
            Target::new("h:1", &a)
        };
        assert!(t("abc123-_.~").is_ok());
        for bad in ["", "a b", "a\r\ndelete 1", "é"] {
            assert!(t(bad).unwrap_err().contains("--token"), "{bad:?}");
        }
    }

    #[test]
    fn auth_failures() {
        use sprout_client::{Error, ServerError};
        let f = |e| auth_failure(&Error::Server(e));
        assert_eq!(f(ServerError::Unauthorized), Some(AuthError::Refused));
        assert_eq!(
            f(ServerError::UnknownCommand),
            Some(AuthError::NotTaken("UNKNOWN_COMMAND".into()))
        );
        let io = Error::Io(std::io::Error::other("x"));
        assert!(auth_failure(&io).is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let a = ConnArgs {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        let t = Target::new("127.0.0.1:1", &a).unwrap();
        assert!(t.has_token() && !t.is_tls());
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn tls_options() {
        let a = ConnArgs {
            tls: true,
            ..Default::default()
        };
        assert!(Target::new("localhost:11400", &a).unwrap().is_tls());
        assert!(Target::new("127.0.0.1:11400", &a).unwrap().is_tls());
        assert!(Target::new("unix:/x", &a)
            .unwrap_err()
            .contains("--tls-server-name"));
        let named = ConnArgs {
            tls_server_name: Some("queue.internal".into()),
            ..Default::default()
        };
        assert!(Target::new("unix:/x", &named).unwrap().is_tls());
        let half = ConnArgs {
            cert: Some("/nonexistent.pem".into()),
            ..Default::default()
        };
        assert!(Target::new("h:1", &half).is_err());
        let missing_ca = ConnArgs {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(Target::new("h:1", &missing_ca)
            .unwrap_err()
            .contains("--ca /nonexistent/ca.pem"));
    }
}
