//! TLS through rustls (ring provider, TLS 1.2 and 1.3): server configurations loaded from
//! PEM files and swappable on SIGHUP, the client certificate's subject, and [`TlsSock`], a
//! TLS session over a TCP socket with the same readiness-based calls as a plain socket so
//! that the connection loop stays the same for both.
//!
//! The handshake runs in the connection's own task (tokio-rustls), under the deadline of an
//! unauthenticated connection; once it is done the session is taken out of tokio-rustls
//! and driven directly here.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::{Buf, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;

/// The PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates must be signed by one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Builds a server configuration from the files (read now).
pub(crate) fn server_config(f: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(&f.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&f.key).map_err(|e| format!("{}: {e}", f.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &f.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} / {}: {e}", f.cert.display(), f.key.display()))?;
    Ok(Arc::new(cfg))
}

/// A listener's TLS configuration: what new handshakes use, replaced whole on SIGHUP
/// (handshakes already under way keep the one they started with).
pub(crate) struct TlsSlot {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSlot {
    pub(crate) fn load(files: &TlsFiles) -> Result<TlsSlot, String> {
        Ok(TlsSlot {
            current: RwLock::new(server_config(files)?),
        })
    }

    pub(crate) fn get(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new configuration (for new handshakes).
    pub(crate) fn set(&self, cfg: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = cfg;
    }
}

/// The subject of a DER certificate as (attribute, value) pairs in certificate order
/// (`CN`, `O`, ... for the common attributes; the dotted OID otherwise). None if the
/// certificate cannot be read.
pub(crate) fn subject(cert: &[u8]) -> Option<Vec<(String, String)>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber, signature, issuer, validity, subject, ... }, ... }
    let (tag, cert_body, _) = der(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der(cert_body)?;
    if tag != 0x30 {
        return None;
    }
    let mut fields = Vec::new();
    while !tbs.is_empty() && fields.len() < 6 {
        let (tag, body, rest) = der(tbs)?;
        fields.push((tag, body));
        tbs = rest;
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (tag, mut name) = *fields.get(skip + 4)?;
    if tag != 0x30 {
        return None;
    }
    let mut out = Vec::new();
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
    while !name.is_empty() {
        let (tag, mut rdn, rest) = der(name)?;
        if tag != 0x31 {
            return None;
        }
        name = rest;
        while !rdn.is_empty() {
            let (tag, atv, rest) = der(rdn)?;
            if tag != 0x30 {
                return None;
            }
            rdn = rest;
            let (tag, oid, value) = der(atv)?;
            if tag != 0x06 {
                return None;
            }
            let (_, v, _) = der(value)?;
            out.push((attr_name(oid), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Some(out)
}

/// One DER element: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[head..end], &b[end..]))
}

fn attr_name(oid: &[u8]) -> String {
    // 2.5.4.x
    if let [0x55, 0x04, x] = oid {
        let n = match x {
            3 => "CN",
            4 => "SN",
            5 => "serialNumber",
            6 => "C",
            7 => "L",
            8 => "ST",
            9 => "street",
            10 => "O",
            11 => "OU",
            12 => "title",
            42 => "GN",
            _ => "",
        };
        if !n.is_empty() {
            return n.to_string();
        }
    }
    match oid {
        // 1.2.840.113549.1.9.1
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        // 0.9.2342.19200300.100.1.25 / .1
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut v: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < 8 {
                let first = (v / 40).min(2);
                parts.push(first);
                parts.push(v - first * 40);
            } else {
                parts.push(v);
            }
            v = 0;
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Parses a configured subject such as `CN=mailer,O=Example` into (attribute, value)
/// pairs (`\,` escapes a comma in a value; spaces around `,` and `=` are ignored).
pub(crate) fn parse_subject(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next().unwrap_or('\\')),
            ',' | '+' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("`{p}` is not ATTRIBUTE=VALUE"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("`{p}` has no attribute"));
            }
            Ok((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Whether a certificate's subject is the configured one: the same attributes with the
/// same values, listed in certificate order or in RFC 4514 (reversed) order; attribute
/// names compare without regard to case.
pub(crate) fn subject_matches(cert: &[(String, String)], want: &[(String, String)]) -> bool {
    let eq =
        |a: &(String, String), b: &(String, String)| a.0.eq_ignore_ascii_case(&b.0) && a.1 == b.1;
    cert.len() == want.len()
        && (cert.iter().zip(want).all(|(a, b)| eq(a, b))
            || cert.iter().rev().zip(want).all(|(a, b)| eq(a, b)))
}

/// A TLS session over a TCP socket, with the readiness-based calls of a plain socket.
/// The session sits behind a mutex only to be shared by `&self` calls: one task uses it
/// and the lock is never held across an await, so it is never contended.
pub(crate) struct TlsSock {
    tcp: TcpStream,
    tls: Mutex<ServerConnection>,
}

/// Plaintext taken out of the session per read call at most.
const PLAIN_CHUNK: usize = 64 * 1024;

struct Raw<'a>(&'a TcpStream);

impl io::Read for Raw<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(b)
    }
}

impl io::Write for Raw<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.try_write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsSock {
    /// A session whose handshake is complete.
    pub(crate) fn new(tcp: TcpStream, tls: ServerConnection) -> TlsSock {
        TlsSock {
            tcp,
            tls: Mutex::new(tls),
        }
    }

    /// The subject of the client's certificate (mTLS), if it sent one.
    pub(crate) fn peer_subject(&self) -> Option<Vec<(String, String)>> {
        let t = self.tls();
        let cert = t.peer_certificates()?.first()?;
        subject(cert.as_ref())
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn tls(&self) -> MutexGuard<'_, ServerConnection> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a read may make progress: at once if the session holds plaintext (or
    /// has seen the end), else when the socket is readable. Writable: the socket's.
    pub(crate) async fn ready(&self, i: Interest) -> io::Result<Ready> {
        if i.is_readable() {
            let buffered = {
                let mut t = self.tls();
                match t.process_new_packets() {
                    Ok(st) => st.plaintext_bytes_to_read() > 0 || st.peer_has_closed(),
                    Err(_) => true,
                }
            };
            if buffered {
                return Ok(Ready::READABLE);
            }
        }
        self.tcp.ready(i).await
    }

    /// Reads plaintext into `buf`'s spare room: Ok(0) at the end of the stream,
    /// WouldBlock when nothing is there yet (the socket's readiness is then cleared).
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut t = self.tls();
        // A session that failed stays failed: say so rather than wait on the socket.
        if let Err(e) = t.process_new_packets() {
            return Err(tls_error(e));
        }
        loop {
            let room = (buf.capacity() - buf.len()).clamp(1, PLAIN_CHUNK);
            let len = buf.len();
            buf.resize(len + room, 0);
            let r = t.reader().read(&mut buf[len..]);
            match r {
                Ok(n) => {
                    buf.truncate(len + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.truncate(len),
                // The peer closed the socket without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    buf.truncate(len);
                    return Ok(0);
                }
                Err(e) => {
                    buf.truncate(len);
                    return Err(e);
                }
            }
            // No plaintext buffered: read more records from the socket.
            match t.read_tls(&mut Raw(&self.tcp)) {
                Ok(0) => {
                    // End of the socket: whatever the session still decodes, then the end.
                    if let Err(e) = t.process_new_packets() {
                        return Err(tls_error(e));
                    }
                    let room = (buf.capacity() - buf.len()).clamp(1, PLAIN_CHUNK);
                    let len = buf.len();
                    buf.resize(len + room, 0);
                    let n = t.reader().read(&mut buf[len..]).unwrap_or(0);
                    buf.truncate(len + n);
                    return Ok(n);
                }
                Ok(_) => {
                    if let Err(e) = t.process_new_packets() {
                        // Send the alert if we can, then fail.
                        let _ = t.write_tls(&mut Raw(&self.tcp));
                        return Err(tls_error(e));
                    }
                    // Answers the session owes (key updates): best effort, the next write
                    // sends what is left.
                    while t.wants_write() {
                        if t.write_tls(&mut Raw(&self.tcp)).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts and sends all of `out` (it is empty afterwards).
    pub(crate) async fn write_all(&self, out: &mut BytesMut) -> io::Result<()> {
        loop {
            {
                let mut t = self.tls();
                while !out.is_empty() {
                    let n = t.writer().write(out)?;
                    if n == 0 {
                        break;
                    }
                    out.advance(n);
                }
                let mut blocked = false;
                while t.wants_write() {
                    match t.write_tls(&mut Raw(&self.tcp)) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !blocked && out.is_empty() {
                    return Ok(());
                }
            }
            self.tcp.ready(Interest::WRITABLE).await?;
        }
    }

    /// Sends close_notify (best effort, without waiting).
    pub(crate) fn close(&self) {
        let mut t = self.tls();
        t.send_close_notify();
        while t.wants_write() {
            if t.write_tls(&mut Raw(&self.tcp)).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_subjects() {
        assert_eq!(
            parse_subject("CN=mailer").unwrap(),
            vec![("CN".to_string(), "mailer".to_string())]
        );
        assert_eq!(
            parse_subject("CN = a\\,b , O=Example").unwrap(),
            vec![
                ("CN".to_string(), "a,b".to_string()),
                ("O".to_string(), "Example".to_string())
            ]
        );
        assert!(parse_subject("mailer").is_err());
        let cert = vec![
            ("O".to_string(), "Example".to_string()),
            ("CN".to_string(), "mailer".to_string()),
        ];
        assert!(subject_matches(
            &cert,
            &parse_subject("O=Example,CN=mailer").unwrap()
        ));
        assert!(subject_matches(
            &cert,
            &parse_subject("cn=mailer,o=Example").unwrap()
        ));
        assert!(!subject_matches(
            &cert,
            &parse_subject("CN=mailer").unwrap()
        ));
        assert!(!subject_matches(
            &cert,
            &parse_subject("CN=Mailer,O=Example").unwrap()
        ));
    }

    #[test]
    fn oids() {
        assert_eq!(attr_name(&[0x55, 0x04, 0x03]), "CN");
        assert_eq!(
            dotted(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37]),
            "1.3.6.1.4.1.311"
        );
    }
}
