//! Who may do what: users (`[[user]]`), the rights of `auth = "none"` listeners
//! (`[anonymous]`), the command classes, and the decision for one command of a restricted
//! connection.
//!
//! A connection with every right on every tube has no rights object at all
//! ([`Access::Full`]): the command path then costs one branch. A restricted connection
//! holds an `Arc<Rights>` taken when it authenticated; a reload (SIGHUP) builds new
//! `Rights` for new connections and leaves existing ones alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sprout_engine::{ConnId, Engine};
use sprout_protocol::{Command, Exhaust, PolicySet, Reply};

use crate::config::{Config, RightsCfg, UserCfg};
use crate::tls;

/// The command classes (`may = [...]`), as bits.
pub const PRODUCE: u8 = 1;
pub const CONSUME: u8 = 2;
pub const INSPECT: u8 = 4;
pub const ADMIN: u8 = 8;
pub const ALL: u8 = PRODUCE | CONSUME | INSPECT | ADMIN;

pub(crate) const CLASSES: [(&str, u8); 4] = [
    ("produce", PRODUCE),
    ("consume", CONSUME),
    ("inspect", INSPECT),
    ("admin", ADMIN),
];

pub(crate) fn class_name(c: u8) -> &'static str {
    CLASSES
        .iter()
        .find(|(_, b)| *b == c)
        .map_or("?", |(n, _)| n)
}

/// A tube pattern: an exact name, or a prefix (`emails-*`; `*` alone is every tube).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// What a restricted connection may do.
#[derive(Debug)]
pub struct Rights {
    /// The user's name (`anonymous` for `[anonymous]`), for logs and /metrics.
    pub user: Arc<str>,
    tubes: Vec<Pattern>,
    may: u8,
}

impl Rights {
    pub(crate) fn new(user: &str, tubes: &[String], may: u8) -> Rights {
        Rights {
            user: user.into(),
            tubes: tubes
                .iter()
                .map(|t| match t.strip_suffix('*') {
                    Some(p) => Pattern::Prefix(p.to_string()),
                    None => Pattern::Exact(t.clone()),
                })
                .collect(),
            may,
        }
    }

    /// Whether the tube exists for this user.
    pub fn sees(&self, tube: &str) -> bool {
        self.tubes.iter().any(|p| match p {
            Pattern::Exact(n) => n == tube,
            Pattern::Prefix(p) => tube.starts_with(p.as_str()),
        })
    }

    pub fn may(&self, class: u8) -> bool {
        self.may & class != 0
    }

    /// Every right on every tube: such a connection needs no checks at all.
    fn is_full(&self) -> bool {
        self.may == ALL
            && self
                .tubes
                .iter()
                .any(|p| *p == Pattern::Prefix(String::new()))
    }
}

/// A connection's rights.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Everything (plain listeners without `[anonymous]`; users with every right).
    Full,
    Restricted(Arc<Rights>),
}

impl Access {
    pub(crate) fn of(r: &Arc<Rights>) -> Access {
        if r.is_full() {
            Access::Full
        } else {
            Access::Restricted(r.clone())
        }
    }
}

pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A certificate subject as (attribute, value) pairs.
type Subject = Vec<(String, String)>;

/// The users of the configuration, indexed the ways listeners find them.
pub(crate) struct Users {
    by_token: HashMap<[u8; 32], Arc<Rights>>,
    by_subject: Vec<(Subject, Arc<Rights>)>,
    by_uid: HashMap<u32, Arc<Rights>>,
    /// The rights of `auth = "none"` listeners; None: everything.
    anonymous: Option<Arc<Rights>>,
}

impl Users {
    /// Builds the users of a configuration (already validated by the config parser).
    pub(crate) fn build(cfg: &Config) -> Result<Users, String> {
        let mut u = Users {
            by_token: HashMap::new(),
            by_subject: Vec::new(),
            by_uid: HashMap::new(),
            anonymous: cfg
                .anonymous
                .as_ref()
                .map(|a: &RightsCfg| Arc::new(Rights::new("anonymous", &a.tubes, a.may))),
        };
        for user in &cfg.users {
            let UserCfg {
                name,
                token_sha256,
                cert_subject,
                unix_uid,
                tubes,
                may,
            } = user;
            let r = Arc::new(Rights::new(name, tubes, *may));
            if let Some(h) = token_sha256 {
                if u.by_token.insert(*h, r.clone()).is_some() {
                    return Err(format!("user {name}: another user has the same token"));
                }
            }
            if let Some(s) = cert_subject {
                let want = tls::parse_subject(s).map_err(|e| format!("user {name}: {e}"))?;
                if u.by_subject
                    .iter()
                    .any(|(w, _)| tls::subject_matches(w, &want))
                {
                    return Err(format!(
                        "user {name}: another user has the same cert-subject"
                    ));
                }
                u.by_subject.push((want, r.clone()));
            }
            if let Some(uid) = unix_uid {
                if u.by_uid.insert(*uid, r.clone()).is_some() {
                    return Err(format!("user {name}: another user has the same unix-uid"));
                }
            }
        }
        Ok(u)
    }

    /// Whether any user has a token (the dashboard then asks for a login).
    pub(crate) fn has_tokens(&self) -> bool {
        !self.by_token.is_empty()
    }

    pub(crate) fn by_token(&self, token: &[u8]) -> Option<&Arc<Rights>> {
        if token.is_empty() {
            return None;
        }
        self.by_token.get(&sha256(token))
    }

    pub(crate) fn by_subject(&self, subject: &[(String, String)]) -> Option<&Arc<Rights>> {
        self.by_subject
            .iter()
            .find(|(w, _)| tls::subject_matches(subject, w))
            .map(|(_, r)| r)
    }

    pub(crate) fn by_uid(&self, uid: u32) -> Option<&Arc<Rights>> {
        self.by_uid.get(&uid)
    }

    pub(crate) fn anonymous(&self) -> Access {
        match &self.anonymous {
            None => Access::Full,
            Some(r) => Access::of(r),
        }
    }
}

/// Counters of access control, for /metrics.
#[derive(Default)]
pub(crate) struct Counters {
    /// Denied commands by (user, class).
    pub(crate) denied: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    pub(crate) auth_failures: std::sync::atomic::AtomicU64,
    pub(crate) handshake_failures: std::sync::atomic::AtomicU64,
    pub(crate) unauth_timeouts: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub(crate) fn deny(&self, user: &Arc<str>, class: u8) {
        let mut d = self.denied.lock().unwrap_or_else(|p| p.into_inner());
        *d.entry((user.clone(), class_name(class))).or_insert(0) += 1;
    }

    pub(crate) fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn unauth_timed_out(&self) {
        self.unauth_timeouts.fetch_add(1, Relaxed);
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// What to do with a command of a restricted connection.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Run it (and filter its reply: see [`filter_reply`]).
    Run,
    /// Answer this without running it (the tube or job does not exist for the user).
    Answer(Reply),
    /// `PERMISSION_DENIED`, counted under this class.
    Deny(u8),
}

/// Decides a command of connection `c` with rights `r`, under the engine lock (so that a
/// job's tube cannot change between the decision and the command). `hidden_default`:
/// the connection still watches `default` though the user cannot see it (every
/// connection starts so).
///
/// The rules: a job outside the user's tubes is `NOT_FOUND`; a tube name outside them is
/// answered as a tube that does not exist where the command has such an answer (`NOT_FOUND`
/// for stats-tube, pause-tube, reading tube-policy; `FLUSHED 0`; an empty list-jobs), and
/// denied where the command would create the tube (use, watch, move-job's target,
/// setting a policy). A command the user's classes do not allow on a tube it can see is
/// denied.
pub(crate) fn decide(
    r: &Rights,
    e: &Engine,
    c: ConnId,
    cmd: &Command,
    hidden_default: bool,
) -> Verdict {
    use Verdict::{Answer, Deny, Run};
    let class = |need: u8| if r.may(need) { Run } else { Deny(need) };
    // A job: NOT_FOUND unless it is in a tube the user sees, then the class.
    let job = |id: u64, need: u8| match e.job_tube(id) {
        Some(t) if r.sees(t) => class(need),
        _ => Answer(Reply::NotFound),
    };
    // The used tube (always one the user sees, except the initial `default`).
    let used = |need: u8| match e.used_tube(c) {
        Some(t) if r.sees(t) => class(need),
        _ => Deny(need),
    };
    let held = |id: u64| e.reserver(id) == Some(c);
    match cmd {
        Command::Put(_) | Command::PutUnique { .. } => used(PRODUCE),
        // `use` selects the tube of put, peek-ready/-delayed/-buried and kick.
        Command::Use(t) => {
            if !r.sees(t) || !r.may(PRODUCE | INSPECT | ADMIN) {
                Deny(PRODUCE)
            } else {
                Run
            }
        }
        Command::Watch(t) => {
            if !r.sees(t) || !r.may(CONSUME) {
                Deny(CONSUME)
            } else {
                Run
            }
        }
        Command::Ignore(t) => {
            if !r.may(CONSUME) {
                Deny(CONSUME)
            } else if !r.sees(t) && hidden_default {
                // Only `default` is watched, and it is not the user's: as for the last
                // watched tube.
                Answer(Reply::NotIgnored)
            } else {
                Run
            }
        }
        Command::Reserve | Command::ReserveWithTimeout(_) | Command::ReserveBatch { .. } => {
            if !r.may(CONSUME) || hidden_default {
                Deny(CONSUME)
            } else {
                Run
            }
        }
        Command::ReserveJob(id) => job(*id, CONSUME),
        Command::Delete(id) => job(*id, if held(*id) { CONSUME } else { ADMIN }),
        Command::Release { id, .. } | Command::Bury { id, .. } | Command::Touch(id) => {
            job(*id, CONSUME)
        }
        Command::Reprioritize { id, .. } => job(*id, if held(*id) { CONSUME } else { ADMIN }),
        Command::Peek(id) | Command::StatsJob(id) => job(*id, INSPECT),
        Command::PeekReady | Command::PeekDelayed | Command::PeekBuried => used(INSPECT),
        Command::Kick(_) => used(ADMIN),
        Command::KickJob(id) => job(*id, ADMIN),
        Command::StatsTube(t) => {
            if r.sees(t) {
                class(INSPECT)
            } else {
                Answer(Reply::NotFound)
            }
        }
        Command::PauseTube { tube, .. } => {
            if r.sees(tube) {
                class(ADMIN)
            } else {
                Answer(Reply::NotFound)
            }
        }
        Command::FlushTube(t) => {
            if r.sees(t) {
                class(ADMIN)
            } else {
                Answer(Reply::Flushed(0))
            }
        }
        Command::ListJobs { tube, .. } => {
            if r.sees(tube) {
                class(INSPECT)
            } else {
                Answer(Reply::Ids(Vec::new()))
            }
        }
        Command::MoveJob { id, tube } => match e.job_tube(*id) {
            Some(t) if r.sees(t) => {
                if r.sees(tube) {
                    class(ADMIN)
                } else {
                    Deny(ADMIN)
                }
            }
            _ => Answer(Reply::NotFound),
        },
        Command::TubePolicy { tube, set } => match set {
            None if !r.sees(tube) => Answer(Reply::NotFound),
            None => class(ADMIN),
            Some(s) => {
                let target_ok = match s {
                    PolicySet::OnExhaust(Exhaust::Tube(t)) => r.sees(t),
                    _ => true,
                };
                if r.sees(tube) && target_ok {
                    class(ADMIN)
                } else {
                    Deny(ADMIN)
                }
            }
        },
        // Server-wide: its job and tube counts are the user's tubes' (filter_reply).
        Command::Stats => Run,
        Command::ListTubes | Command::ListTubeUsed | Command::ListTubesWatched => class(INSPECT),
        Command::Quit => Run,
        Command::ClusterAdd { .. }
        | Command::ClusterRemove(_)
        | Command::ClusterTransferLeader(_) => class(ADMIN),
    }
}

/// Takes out of a reply what the user cannot see: tubes of `list-tubes` and
/// `list-tubes-watched`, other tubes' jobs and tubes in `stats`.
pub(crate) fn filter_reply(r: &Rights, e: &Engine, reply: &mut Reply) {
    match reply {
        Reply::List(names) => names.retain(|n| r.sees(n)),
        Reply::Stats(s) => **s = e.stats_within(&|t| r.sees(t)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let r = Rights::new("u", &["emails".into(), "jobs-*".into()], PRODUCE);
        assert!(r.sees("emails"));
        assert!(!r.sees("emails2"));
        assert!(r.sees("jobs-"));
        assert!(r.sees("jobs-x"));
        assert!(!r.sees("jobs"));
        assert!(!r.sees("default"));
        assert!(r.may(PRODUCE) && !r.may(CONSUME));
        assert!(!r.is_full());
        assert!(Rights::new("u", &["*".into()], ALL).is_full());
        assert!(!Rights::new("u", &["*".into()], ALL - ADMIN).is_full());
    }
}
