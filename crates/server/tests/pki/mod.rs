//! Certificates and a TLS-enabled sproutd for tests, shared by the server's security tests,
//! the CLI's TLS tests and the client crate's (the last two include this file by path): a CA, a server certificate for
//! 127.0.0.1 and localhost, a client certificate (CN=tester), a second, unrelated CA and
//! a client certificate it signed, made with rcgen; sproutd with one TLS listener whose
//! user `tester` (token [`TOKEN`], or certificate CN=tester) may do everything.
//!
//! The including test crate must have the server tests' `common` module at its root.

#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::common::{free_port, wait_until, Server, TempDir};

/// The token the tests' user authenticates with.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The files of one test's certificates.
pub struct Pki {
    _dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    /// A client certificate signed by `other_ca`.
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

/// A CA: its certificate and key.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
pub fn leaf(ca: &Ca, cn: &str, sans: &[&str], eku: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![eku];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("tls");
        let issuer = ca("sprout test CA");
        let other_issuer = ca("unrelated CA");
        let (sc, sk) = leaf(
            &issuer,
            "sproutd",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cc, ck) = leaf(&issuer, "tester", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let (oc, ok) = leaf(
            &other_issuer,
            "tester",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let w = |name: &str, data: &str| {
            let p = dir.join(name);
            fs::write(&p, data).unwrap();
            p
        };
        Pki {
            ca: w("ca.pem", &issuer.cert.pem()),
            server_cert: w("server.pem", &sc),
            server_key: w("server.key", &sk),
            client_cert: w("client.pem", &cc),
            client_key: w("client.key", &ck),
            other_ca: w("other-ca.pem", &other_issuer.cert.pem()),
            other_client_cert: w("other-client.pem", &oc),
            other_client_key: w("other-client.key", &ok),
            _dir: dir,
        }
    }

    pub fn s(p: &std::path::Path) -> String {
        p.display().to_string()
    }
}

/// SHA-256 of `s`, hex (ring directly: independent of the code under test).
pub fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sproutd with its plain listener and one TLS listener (`auth`: none, token or mtls);
/// a token listener knows the user `tester` with TOKEN, an mtls one the subject
/// CN=tester; both may do everything on every tube.
pub struct TlsServer {
    pub server: Server,
    pub tls_addr: String,
    pub _config: TempDir,
}

impl TlsServer {
    pub fn start(pki: &Pki, auth: &str) -> TlsServer {
        let config = TempDir::new("tlsconf");
        let conf = config.join("sproutd.toml");
        fs::write(
            &conf,
            format!(
                "[[user]]\nname = \"tester\"\ntoken-sha256 = \"{}\"\ncert-subject = \
                 \"CN=tester\"\ntubes = [\"*\"]\nmay = [\"produce\", \"consume\", \
                 \"inspect\", \"admin\"]\n",
                sha256_hex(TOKEN)
            ),
        )
        .unwrap();
        let tls_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--config".to_string(),
            Pki::s(&conf),
            "--tls-listen".into(),
            tls_addr.clone(),
            "--tls-cert".into(),
            Pki::s(&pki.server_cert),
            "--tls-key".into(),
            Pki::s(&pki.server_key),
            "--tls-auth".into(),
            auth.into(),
        ];
        if auth == "mtls" {
            args.extend(["--tls-client-ca".into(), Pki::s(&pki.ca)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Ready once the plain listener answers `stats`; the TLS one may bind a moment
        // later.
        let server = Server::start(&args);
        wait_until("the TLS listener accepts connections", || {
            TcpStream::connect(&tls_addr).is_ok()
        });
        TlsServer {
            server,
            tls_addr,
            _config: config,
        }
    }

    pub fn plain_addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }
}
