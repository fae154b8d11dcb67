//! Readiness notification for a service manager (systemd's `Type=notify`): one datagram
//! such as `READY=1` sent to the unix socket named by `$NOTIFY_SOCKET`. Without that
//! variable nothing is sent. A name starting with `@` is in the abstract namespace.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the service manager listens, from `$NOTIFY_SOCKET`; None when unset or unusable.
fn target() -> Option<SocketAddr> {
    let name = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
    match bytes.first()? {
        b'@' => SocketAddr::from_abstract_name(&bytes[1..]).ok(),
        b'/' => SocketAddr::from_pathname(std::path::Path::new(&name)).ok(),
        _ => None,
    }
}

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service manager, if there
/// is one. Failures are logged, never fatal: the server runs the same either way.
pub fn notify(state: &str) {
    let Some(addr) = target() else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!("NOTIFY_SOCKET: cannot send {state:?}: {e}");
    }
}

/// The listeners are bound and the binlog recovered: clients can be served.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

/// Shutdown has begun.
pub fn stopping() {
    notify("STOPPING=1");
}
