//! Dashboard sessions: a login with a user's token (the tokens of `[[user]]`), or, when
//! no user has a token, an anonymous session with `[anonymous]`'s rights. The session id
//! lives in a cookie (HttpOnly, SameSite=Strict, Secure over TLS); every action carries
//! the session's CSRF token. Without the `admin` right a session is read-only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use ring::rand::SecureRandom;

use super::Web;
use crate::access::{Access, ADMIN};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "sprout_session";
/// How long a session lives.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// One browser's session.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) user: Arc<str>,
    pub(crate) access: Access,
    pub(crate) csrf: String,
    /// Logged in with a token (not anonymous).
    pub(crate) login: bool,
    created: Instant,
}

impl Session {
    /// Whether the session may act (put, kick, delete, ...): the `admin` right.
    pub(crate) fn admin(&self) -> bool {
        match &self.access {
            Access::Full => true,
            Access::Restricted(r) => r.may(ADMIN),
        }
    }

    /// Whether the tube exists for the session's user.
    pub(crate) fn sees(&self, tube: &str) -> bool {
        match &self.access {
            Access::Full => true,
            Access::Restricted(r) => r.sees(tube),
        }
    }
}

#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

/// 32 random bytes, hex.
fn token() -> String {
    let mut b = [0u8; 32];
    // The system's generator cannot fail on Linux; zeros would still be unique per
    // process only, so refuse to go on without it.
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("no system random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(id) {
            Some(s) if s.created.elapsed() < LIFETIME => Some(s.clone()),
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn create(&self, user: Arc<str>, access: Access, login: bool) -> Session {
        let s = Session {
            id: token(),
            user,
            access,
            csrf: token(),
            login,
            created: Instant::now(),
        };
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.created.elapsed() < LIFETIME);
        if m.len() >= MAX_SESSIONS {
            if let Some(old) = m.values().min_by_key(|s| s.created).map(|s| s.id.clone()) {
                m.remove(&old);
            }
        }
        m.insert(s.id.clone(), s.clone());
        s
    }

    pub(crate) fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The `Set-Cookie` value for a session (an empty id clears it).
pub(crate) fn set_cookie(web: &Web, id: &str) -> String {
    let secure = if web.tls { "; Secure" } else { "" };
    let age = if id.is_empty() {
        "; Max-Age=0".to_string()
    } else {
        format!("; Max-Age={}", LIFETIME.as_secs())
    };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}{age}")
}

/// Whether the dashboard asks for a login: some user has a token.
pub(crate) fn login_required(web: &Web) -> bool {
    web.shared.security.users().has_tokens()
}

/// The request's session: the cookie's, or a new anonymous one (second: true) when no
/// login is required. None: the browser must log in.
pub(crate) fn session(web: &Web, headers: &HeaderMap) -> Option<(Session, bool)> {
    if let Some(s) = cookie(headers, COOKIE).and_then(|id| web.sessions.get(id)) {
        return Some((s, false));
    }
    if login_required(web) {
        return None;
    }
    let users = web.shared.security.users();
    let access = users.anonymous();
    drop(users);
    Some((web.sessions.create("anonymous".into(), access, false), true))
}

/// Logs in with a token: the new session, or None for an unknown token.
pub(crate) fn login(web: &Web, token: &str) -> Option<Session> {
    let users = web.shared.security.users();
    let rights = users.by_token(token.trim().as_bytes())?.clone();
    drop(users);
    Some(
        web.sessions
            .create(rights.user.clone(), Access::of(&rights), true),
    )
}

/// Compares in constant time.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
