//! Small wrappers over the operating system: process facts for `stats`, privilege drop.

use std::ffi::{CStr, CString};
use std::io::Read;

/// (seconds, microseconds) of user and system CPU time.
pub(crate) fn rusage() -> ((i64, i64), (i64, i64)) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return ((0, 0), (0, 0));
    }
    (
        (ru.ru_utime.tv_sec, ru.ru_utime.tv_usec),
        (ru.ru_stime.tv_sec, ru.ru_stime.tv_usec),
    )
}

/// (nodename, version, machine) from uname(2), as beanstalkd reports them.
pub(crate) fn uname() -> (String, String, String) {
    // SAFETY: uname only writes into the struct we pass; the fields are NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return Default::default();
    }
    let s = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates each field within its array.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    (s(&u.nodename), s(&u.version), s(&u.machine))
}

/// 16 hex digits from /dev/urandom (a random id for this process).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Becomes `user` and its primary group, as beanstalkd's `-u` does. Returns the exit code
/// beanstalkd uses on failure.
pub fn drop_privileges(user: &str) -> Result<(), (String, i32)> {
    let name =
        CString::new(user).map_err(|_| (format!("getpwnam(\"{user}\"): no such user"), 33))?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage we read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err((format!("getpwnam(\"{user}\"): no such user"), 33));
    }
    // SAFETY: pw is non-null and points to a valid passwd entry.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // Supplementary groups become the user's own (beanstalkd keeps the starting user's,
    // which for root includes root's groups).
    // SAFETY: plain syscalls; `name` is a valid C string.
    if unsafe { libc::initgroups(name.as_ptr(), gid) } != 0 {
        return Err((
            format!("initgroups({user}): {}", std::io::Error::last_os_error()),
            34,
        ));
    }
    // SAFETY: plain syscalls.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err((
            format!("setgid({gid}): {}", std::io::Error::last_os_error()),
            34,
        ));
    }
    if unsafe { libc::setuid(uid) } != 0 {
        return Err((
            format!("setuid({uid}): {}", std::io::Error::last_os_error()),
            34,
        ));
    }
    Ok(())
}
