//! `sprout bench --tls`: the same workloads against the TLS listener and the plain listener
//! of one sproutd, in one run, with the TLS/plain ratios; and TLS handshakes per second.
//!
//! Each measurement starts a fresh sproutd with both listeners (`-l 127.0.0.1 -p P` and
//! `--tls-listen 127.0.0.1:Q`), so plain is always measured with a TLS listener beside it,
//! as it would run in production. Its certificate (for 127.0.0.1 and localhost, ECDSA
//! P-256) is signed by a CA made for the run with rcgen; the clients trust that CA only.
//! Rounds alternate the order (plain first, then TLS first) so that drift over the run
//! does not favour either side.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::compare::{self, median, progress, Case};
use super::{proc, run, Measurement, Params, Workload};
use crate::conn::Target;

/// The TLS suite: put and cycle at 1, 10 and 100 connections; handshakes (connect, full
/// handshake, one command, close) over 1 and 10 connections.
pub fn suite(secs: f64) -> Vec<Case> {
    let mut v = Vec::new();
    for w in [Workload::Put, Workload::Cycle] {
        for conns in [1, 10, 100] {
            v.push(case(w, conns, secs));
        }
    }
    for conns in [1, 10] {
        v.push(case(Workload::Handshake, conns, secs));
    }
    v
}

/// `put c=N`-style case of workload `w` (put, cycle, pubsub or handshake).
pub(crate) fn case(w: Workload, conns: usize, secs: f64) -> Case {
    let name = match w {
        Workload::Put => "put",
        Workload::Cycle => "cycle",
        Workload::Pubsub => "pubsub",
        _ => "handshake",
    };
    Case {
        name: format!("{name} c={conns}"),
        workload: w,
        params: Params {
            conns,
            secs,
            ..Params::default()
        },
        args: vec![],
        binlog: false,
    }
}

pub struct TlsOpts {
    pub sproutd: String,
    pub server_args: Vec<String>,
    pub rounds: usize,
    pub cases: Vec<Case>,
    /// CPUs the server may use (the first N); the generator gets the others.
    pub server_cpus: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TlsResult {
    pub(crate) case: Case,
    pub plain: Vec<Measurement>,
    pub tls: Vec<Measurement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    pub pinning: String,
    pub rounds: usize,
    pub sproutd: String,
    pub(crate) results: Vec<TlsResult>,
}

/// The certificates of one run, in a directory removed on drop.
pub struct Pki {
    dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    /// A CA, and a server certificate for 127.0.0.1 and localhost signed by it, written
    /// as PEM files under a fresh temporary directory.
    pub fn new() -> io::Result<Pki> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sprout-bench-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        };
        let (ca, cert, key) = make_certs().map_err(|e| io::Error::other(format!("rcgen: {e}")))?;
        std::fs::write(&pki.ca, ca)?;
        std::fs::write(&pki.cert, cert)?;
        write_private(&pki.key, &key)?;
        Ok(pki)
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())
}

/// (CA certificate, server certificate, server key), PEM.
fn make_certs() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "sprout bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, "sproutd");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Runs every case `rounds` times over each listener, alternating which goes first.
pub async fn compare_tls(o: &TlsOpts) -> io::Result<TlsReport> {
    let total = proc::cpus();
    let n = o.server_cpus.clamp(1, total);
    let pinned = n < total && proc::pin_range(n, total);
    let pinning = if pinned {
        format!(
            "server on CPU 0..{}, load generator on CPU {}..{}",
            n - 1,
            n,
            total - 1
        )
    } else {
        format!("server on CPU 0..{}, load generator not pinned", n - 1)
    };
    eprintln!("bench: {pinning}");
    let pki = Pki::new()?;
    let mut results = Vec::new();
    for case in &o.cases {
        let mut r = TlsResult {
            case: case.clone(),
            plain: vec![],
            tls: vec![],
        };
        for round in 0..o.rounds {
            let order = if round.is_multiple_of(2) {
                [false, true]
            } else {
                [true, false]
            };
            for tls in order {
                let label = if tls { "tls" } else { "plain" };
                let tls_port = compare::free_port()?;
                let tls_addr = format!("127.0.0.1:{tls_port}");
                let mut args = o.server_args.clone();
                args.extend(case.args.iter().cloned());
                args.extend([
                    "--tls-listen".to_string(),
                    tls_addr.clone(),
                    "--tls-cert".to_string(),
                    pki.cert.display().to_string(),
                    "--tls-key".to_string(),
                    pki.key.display().to_string(),
                    "--tls-auth".to_string(),
                    "none".to_string(),
                ]);
                let server = compare::start(&o.sproutd, &args, Some(n))?;
                compare::wait_listening(&o.sproutd, &tls_addr)?;
                let target = if tls {
                    Target::plain(&tls_addr)
                        .with_tls(&pki.ca, "127.0.0.1")
                        .map_err(io::Error::other)?
                } else {
                    Target::plain(&server.addr)
                };
                let bar = progress(case.params.secs);
                bar.set_prefix(format!(
                    "{} [{}/{}] {label}",
                    case.name,
                    round + 1,
                    o.rounds
                ));
                let m = run(&target, Some(server.pid), case.workload, &case.params, &bar).await?;
                bar.finish_and_clear();
                drop(server);
                if m.errors > 0 {
                    return Err(io::Error::other(format!(
                        "{}: {} errors over {label}",
                        case.name, m.errors
                    )));
                }
                if tls {
                    r.tls.push(m);
                } else {
                    r.plain.push(m);
                }
            }
        }
        results.push(r);
    }
    Ok(TlsReport {
        pinning,
        rounds: o.rounds,
        sproutd: o.sproutd.clone(),
        results,
    })
}

type Metric = fn(&Measurement) -> Option<f64>;

/// The report as a table of medians: one row per case and metric, with TLS/plain.
pub fn table(r: &TlsReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<16} {:>14} {:>14} {:>10}",
        "case", "metric (median)", "plain", "tls", "tls/plain"
    );
    for c in &r.results {
        let rate = if c.case.workload == Workload::Handshake {
            "handshakes/s"
        } else {
            "ops/s"
        };
        let metrics: [(&str, Metric); 4] = [
            (rate, |m| Some(m.ops_per_sec)),
            ("p50 us", |m| Some(m.p50_us)),
            ("p99 us", |m| Some(m.p99_us)),
            ("cpu us/op", |m| m.server_cpu_us_per_op),
        ];
        for (i, (name, f)) in metrics.iter().enumerate() {
            let p = median(c.plain.iter().filter_map(f).collect());
            let t = median(c.tls.iter().filter_map(f).collect());
            let _ = writeln!(
                s,
                "{:<16} {:<16} {:>14.2} {:>14.2} {:>10.2}",
                if i == 0 { c.case.name.as_str() } else { "" },
                name,
                p,
                t,
                t / p
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_cases() {
        let names: Vec<String> = suite(1.0).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "put c=1",
                "put c=10",
                "put c=100",
                "cycle c=1",
                "cycle c=10",
                "cycle c=100",
                "handshake c=1",
                "handshake c=10"
            ]
        );
    }

    #[test]
    fn certificates_are_written_and_removed() {
        let dir;
        {
            let pki = Pki::new().unwrap();
            dir = pki.dir.clone();
            let ca = std::fs::read_to_string(&pki.ca).unwrap();
            assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
            let key = std::fs::read_to_string(&pki.key).unwrap();
            assert!(key.contains("PRIVATE KEY"));
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&pki.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // The CLI's own TLS setup accepts the CA.
            assert!(Target::plain("127.0.0.1:1")
                .with_tls(&pki.ca, "127.0.0.1")
                .is_ok());
        }
        assert!(!dir.exists());
    }
}
