//! Connecting: TCP or a unix socket, TLS (rustls, ring provider), `auth`.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::{Client, Error, Result};

/// The port used when an address has none (beanstalkd's).
pub const DEFAULT_PORT: u16 = 11300;
/// The longest token [`Connector::token`] accepts.
pub const MAX_TOKEN: usize = 1024;
/// How long connecting may take unless [`Connector::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to connect with TLS: the trusted roots, a client certificate (for listeners that
/// require one), the name to verify. Built with [`Tls::builder`], or from a rustls
/// configuration with [`Tls::from_config`].
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

/// Builds a [`Tls`]; see [`Tls::builder`].
pub struct TlsBuilder {
    roots: rustls::RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    name: Option<ServerName<'static>>,
    resumption: bool,
}

impl fmt::Debug for TlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsBuilder")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.identity.is_some())
            .field("name", &self.name)
            .field("resumption", &self.resumption)
            .finish()
    }
}

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn fmt::Display| invalid(format!("{}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no CERTIFICATE in it (PEM expected)"));
    }
    Ok(certs)
}

fn name(n: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(n.to_string())
        .map_err(|_| invalid(format!("{n:?}: not a DNS name or IP address")))
}

impl Tls {
    /// A builder that trusts the Mozilla roots (webpki-roots), sends no client
    /// certificate, verifies the host of the address, and resumes sessions.
    pub fn builder() -> TlsBuilder {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TlsBuilder {
            roots,
            identity: None,
            name: None,
            resumption: true,
        }
    }

    /// TLS with a configuration made elsewhere (its crypto provider, roots, client
    /// certificate are used as they are).
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Tls {
        Tls { config, name: None }
    }

    /// The name the server's certificate must carry, instead of the host of the address
    /// (needed for a unix socket). An error if `n` is neither a DNS name nor an IP address.
    pub fn with_server_name(mut self, n: &str) -> Result<Tls> {
        self.name = Some(name(n)?);
        Ok(self)
    }
}

impl Tls {
    /// This configuration without session resumption: every connection makes a full
    /// handshake.
    pub fn without_resumption(&self) -> Tls {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Tls {
            config: Arc::new(config),
            name: self.name.clone(),
        }
    }
}

impl TlsBuilder {
    /// Trusts only the CA certificates in this PEM file. The error's message starts with
    /// the path.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<TlsBuilder> {
        let path = path.as_ref();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
        if added == 0 {
            return Err(invalid(format!(
                "{}: no usable CA certificate in it",
                path.display()
            )));
        }
        self.roots = roots;
        Ok(self)
    }

    /// Presents this client certificate chain and key (PEM files), for listeners that
    /// require one (mTLS). The error's message starts with the path at fault.
    pub fn client_cert_files(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsBuilder> {
        let chain = read_certs(cert.as_ref())?;
        let k = key.as_ref();
        let key = PrivateKeyDer::from_pem_file(k)
            .map_err(|e| invalid(format!("{}: {e}", k.display())))?;
        self.identity = Some((chain, key));
        Ok(self)
    }

    /// The name the server's certificate must carry (default: the host of the address).
    pub fn server_name(mut self, n: &str) -> Result<TlsBuilder> {
        self.name = Some(name(n)?);
        Ok(self)
    }

    /// Whether sessions are resumed (default: yes). Without, every connection makes a
    /// full handshake.
    pub fn resumption(mut self, on: bool) -> TlsBuilder {
        self.resumption = on;
        self
    }

    /// The configuration: rustls with the ring provider, TLS 1.2 and 1.3.
    pub fn build(self) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS setup: {e}")))?
            .with_root_certificates(self.roots);
        let mut config = match self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        if !self.resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Tls {
            config: Arc::new(config),
            name: self.name,
        })
    }
}

/// Checks a token the way it is sent on the `auth` line: 1 to [`MAX_TOKEN`] visible ASCII
/// characters, no spaces.
pub fn check_token(t: &str) -> Result<()> {
    if t.is_empty() || t.len() > MAX_TOKEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "a token is 1 to {MAX_TOKEN} visible ASCII characters, no spaces"
        )));
    }
    Ok(())
}

/// `[v6]:port` → v6; `host:port` → host; `host` → host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((h, _)) = rest.split_once(']') {
            return h;
        }
    }
    match addr.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => addr,
    }
}

/// The host part of an address, as the name the server's certificate must carry.
fn server_name(addr: &str) -> Result<ServerName<'static>> {
    if addr.starts_with("unix:") {
        return Err(invalid(format!(
            "{addr}: TLS over a unix socket needs a server name (the name in the server's \
             certificate)"
        )));
    }
    let host = host_of(addr);
    ServerName::try_from(host.to_string()).map_err(|_| {
        invalid(format!(
            "{addr}: {host:?} is not a DNS name or IP address to verify the server by"
        ))
    })
}

/// Where and how to connect: the address, TLS or not, a token, a time limit.
///
/// Addresses are `HOST:PORT`, `HOST` (port 11300), `[V6]:PORT`, or `unix:/path`.
///
/// ```no_run
/// use sprout_client::{Connector, Tls};
///
/// # async fn run() -> Result<(), sprout_client::Error> {
/// let tls = Tls::builder()
///     .ca_file("/etc/sprout/ca.pem")?
///     .client_cert_files("client.pem", "client.key")?
///     .build()?;
/// let mut c = Connector::new("queue.example.com:11400")
///     .tls(tls)
///     .token("s3cret-token")?
///     .connect()
///     .await?;
/// println!("{}", c.list_tube_used().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connector {
    addr: String,
    tls: Option<Tls>,
    token: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Connector {
    /// A plain connection to `addr`, no token, [`DEFAULT_TIMEOUT`].
    pub fn new(addr: &str) -> Connector {
        Connector {
            addr: addr.to_string(),
            tls: None,
            token: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Connects with TLS.
    pub fn tls(mut self, tls: Tls) -> Connector {
        self.tls = Some(tls);
        self
    }

    /// Sends `auth TOKEN` right after connecting (sproutd's token listeners). An error
    /// if the token is not one word (see [`check_token`]).
    pub fn token(mut self, token: &str) -> Result<Connector> {
        check_token(token)?;
        self.token = Some(token.to_string());
        Ok(self)
    }

    /// How long connecting may take: each resolved address, then the TLS handshake and
    /// `auth` together.
    pub fn timeout(mut self, t: Duration) -> Connector {
        self.timeout = t;
        self
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks that TLS can verify the server: a name is given, or the address has a host
    /// to check. (Connecting checks it too.)
    pub fn check(&self) -> Result<()> {
        match &self.tls {
            Some(Tls { name: None, .. }) => server_name(&self.addr).map(drop),
            _ => Ok(()),
        }
    }

    /// Connects: the socket, the TLS handshake, `auth`. A refused token is
    /// `Error::Server(ServerError::Unauthorized)`; a listener that takes no tokens
    /// answers `Error::Server(ServerError::UnknownCommand)`.
    pub async fn connect(&self) -> Result<Client> {
        let s = open(&self.addr, self.timeout).await?;
        if self.tls.is_none() && self.token.is_none() {
            return Ok(Client::new(s));
        }
        self.secure(s).await
    }

    /// The TLS handshake and `auth`, each within the time limit.
    async fn secure(&self, s: Stream) -> Result<Client> {
        let timed_out = |what: &str| {
            Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} within {:?}", self.timeout),
            ))
        };
        let s = match &self.tls {
            None => s,
            Some(tls) => {
                let name = match &tls.name {
                    Some(n) => n.clone(),
                    None => server_name(&self.addr)?,
                };
                let c = tokio_rustls::TlsConnector::from(tls.config.clone());
                let s = tokio::time::timeout(self.timeout, c.connect(name, s))
                    .await
                    .map_err(|_| {
                        timed_out(
                            "TLS handshake failed: the server did not answer (is this a TLS \
                             listener?)",
                        )
                    })?
                    .map_err(|e| {
                        Error::Io(io::Error::new(
                            e.kind(),
                            format!("TLS handshake failed: {e}"),
                        ))
                    })?;
                Stream::Tls(Box::new(s))
            }
        };
        let mut c = Client::new(s);
        if let Some(token) = &self.token {
            tokio::time::timeout(self.timeout, c.auth(token))
                .await
                .map_err(|_| timed_out("no reply to auth"))??;
        }
        Ok(c)
    }
}

/// Opens the socket; each resolved address gets `timeout`.
async fn open(addr: &str, timeout: Duration) -> Result<Stream> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return Ok(Stream::Unix(UnixStream::connect(path).await?));
    }
    let addrs: Vec<_> = if addr.contains(':') {
        tokio::net::lookup_host(addr).await?.collect()
    } else {
        tokio::net::lookup_host((addr, DEFAULT_PORT))
            .await?
            .collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                return Ok(Stream::Tcp(s));
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(Error::Io(last))
}

/// A connection: the socket, or TLS over it.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<Stream>>),
}

/// Calls `$f` on whichever stream `$s` is.
macro_rules! each {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            Stream::Tcp($x) => $e,
            Stream::Unix($x) => $e,
            Stream::Tls($x) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, b))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The reading half of a connection: a plain socket's own half, or TLS's shared one.
pub(crate) enum ReadHalf {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    Unix(tokio::net::unix::OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Stream>),
}

/// The writing half of a connection.
pub(crate) enum WriteHalf {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Unix(tokio::net::unix::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Stream>),
}

impl Stream {
    /// The halves: a plain socket's own (no lock), TLS through `tokio::io::split`.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            tls @ Stream::Tls(_) => {
                let (r, w) = tokio::io::split(tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// Calls `$f` on whichever half `$s` is.
macro_rules! each_w {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            WriteHalf::Tcp($x) => $e,
            WriteHalf::Unix($x) => $e,
            WriteHalf::Tls($x) => $e,
        }
    };
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        each_w!(self.get_mut(), s => Pin::new(s).poll_write(cx, b))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_w!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_w!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("example.com:11300"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:11300"), "::1");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:11300"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:11300"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("queue.example.com:11400"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("unix:/run/sprout.sock").is_err());
    }

    #[test]
    fn tokens_must_be_one_word() {
        assert!(check_token("abc123-_.~").is_ok());
        for bad in ["", "a b", "a\r\ndelete 1", "é", &"x".repeat(MAX_TOKEN + 1)] {
            assert!(
                matches!(check_token(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Connector::new("127.0.0.1:1").token("s3cret").unwrap();
        assert!(c.has_token() && !c.is_tls());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn tls_settings() {
        let tls = Tls::builder().build().unwrap();
        let c = Connector::new("unix:/x").tls(tls.clone());
        assert!(c.is_tls() && c.check().is_err());
        let named = tls.with_server_name("queue.internal").unwrap();
        assert!(Connector::new("unix:/x").tls(named).check().is_ok());
        let e = Tls::builder().ca_file("/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/ca.pem"), "{e}");
        assert!(Tls::builder().server_name("not a name").is_err());
    }
}
