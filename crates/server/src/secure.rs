//! The server's security state: users, the TLS configurations of listeners and of
//! /metrics, the /metrics bearer token, and the counters of access control. SIGHUP
//! ([`Security::reload`]) re-reads the configuration file (and the certificate files) and
//! swaps all of it at once for new connections and handshakes; connections already
//! authenticated keep the rights they have until they reconnect. A reload that fails
//! changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::access::{Counters, Users};
use crate::config::{parse_args, Config, Parsed};
use crate::tls::{self, TlsSlot};

pub struct Security {
    users: RwLock<Arc<Users>>,
    pub(crate) counters: Counters,
    /// Connections in a TLS handshake or not yet authenticated (not in the engine, so not
    /// in `current-connections`).
    pub(crate) unauthenticated: AtomicUsize,
    /// The TLS listeners' configurations, by listener address.
    slots: Mutex<Vec<(String, Arc<TlsSlot>)>>,
    pub(crate) metrics_tls: Option<Arc<TlsSlot>>,
    metrics_token: RwLock<Option<[u8; 32]>>,
    /// The command line, to read the configuration again on SIGHUP (None: no reload).
    args: Option<Vec<String>>,
}

impl Security {
    /// No users, no TLS: every connection has every right.
    pub fn open() -> Security {
        Security {
            users: RwLock::new(Arc::new(
                Users::build(&Config::default()).unwrap_or_else(|_| unreachable!()),
            )),
            counters: Counters::default(),
            unauthenticated: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            metrics_tls: None,
            metrics_token: RwLock::new(None),
            args: None,
        }
    }

    /// The security of a configuration (certificates read now). `args`: the command line
    /// it came from, read again on SIGHUP.
    pub fn new(cfg: &Config, args: Vec<String>) -> Result<Security, String> {
        let metrics_tls = match (&cfg.metrics_tls_cert, &cfg.metrics_tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(TlsSlot::load(&tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            })?)),
            _ => None,
        };
        Ok(Security {
            users: RwLock::new(Arc::new(Users::build(cfg)?)),
            metrics_tls,
            metrics_token: RwLock::new(cfg.metrics_token_sha256),
            args: Some(args),
            ..Security::open()
        })
    }

    /// Whether /metrics is served over TLS.
    pub fn metrics_over_tls(&self) -> bool {
        self.metrics_tls.is_some()
    }

    /// Whether some user has a token: the dashboard asks for a login.
    pub fn has_logins(&self) -> bool {
        self.users().has_tokens()
    }

    pub(crate) fn users(&self) -> Arc<Users> {
        self.users.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn metrics_token(&self) -> Option<[u8; 32]> {
        *self.metrics_token.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a TLS listener's configuration (for reloads).
    pub(crate) fn add_slot(&self, addr: &str, slot: Arc<TlsSlot>) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((addr.to_string(), slot));
    }

    pub(crate) fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    /// Reads the configuration again (file and command line) and swaps users, tokens and
    /// certificates. Listeners themselves (addresses, auth modes) stay as they are until a
    /// restart; a change to them is reported. Everything is read before anything is
    /// swapped: on error nothing changes.
    pub fn reload(&self) -> Result<String, String> {
        let Some(args) = &self.args else {
            return Err("nothing to reload".into());
        };
        let cfg = match parse_args(args.iter().cloned()) {
            Parsed::Run(c) => *c,
            Parsed::Error(e, _) | Parsed::Fatal(e, _) => return Err(e),
            _ => return Err("the command line no longer starts a server".into()),
        };
        let users = Users::build(&cfg)?;
        let listeners = cfg.extra_listeners();
        let mut notes = Vec::new();
        let mut swaps = Vec::new();
        {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for (addr, slot) in slots.iter() {
                match listeners.iter().find(|l| &l.addr == addr).and_then(|l| l.tls.as_ref()) {
                    Some(files) => {
                        let cfg = tls::server_config(files).map_err(|e| format!("listener {addr}: {e}"))?;
                        swaps.push((slot.clone(), cfg));
                    }
                    None => notes.push(format!(
                        "listener {addr} is no longer a TLS listener in the configuration: kept as it is until a restart"
                    )),
                }
            }
            for l in &listeners {
                if l.tls.is_some() && !slots.iter().any(|(a, _)| a == &l.addr) {
                    notes.push(format!(
                        "listener {} is new: opened at the next restart",
                        l.addr
                    ));
                }
            }
        }
        if let Some(slot) = &self.metrics_tls {
            if let (Some(cert), Some(key)) = (&cfg.metrics_tls_cert, &cfg.metrics_tls_key) {
                let files = tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: None,
                };
                swaps.push((
                    slot.clone(),
                    tls::server_config(&files).map_err(|e| format!("metrics: {e}"))?,
                ));
            }
        }
        let n_users = cfg.users.len();
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users);
        *self
            .metrics_token
            .write()
            .unwrap_or_else(|p| p.into_inner()) = cfg.metrics_token_sha256;
        let n_certs = swaps.len();
        for (slot, c) in swaps {
            slot.set(c);
        }
        notes.insert(
            0,
            format!("{n_users} users, {n_certs} TLS certificates loaded"),
        );
        Ok(notes.join("; "))
    }
}

impl Default for Security {
    fn default() -> Self {
        Security::open()
    }
}
