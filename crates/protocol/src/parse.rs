//! Parsing one command line (without its CRLF) into a [`Command`], with beanstalkd's exact
//! rules: prefix matching in beanstalkd's order, strict integers (spaces only, no sign,
//! no trailing bytes) except for `kick`, which reads like C's `strtoul`.

use super::command::{Backoff, Command, Exhaust, ListState, PolicySet, PutHeader};
use super::MAX_TUBE_NAME;

/// Why a line was not a command. Every variant is answered with one reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// `BAD_FORMAT`; no command counter moves.
    BadFormat,
    /// `UNKNOWN_COMMAND`.
    UnknownCommand,
    /// `BAD_FORMAT` for a `put` whose numbers parsed but that has trailing bytes;
    /// beanstalkd counts it in `cmd-put`.
    PutBadFormat,
    /// `put` announced a body larger than `-z`: counted in `cmd-put`; `bytes + 2` bytes
    /// are skipped and then `JOB_TOO_BIG` is sent.
    PutTooBig(u32),
    /// `BAD_FORMAT` for a `pause-tube` whose name and delay parsed but whose name is not a
    /// valid tube name (leading `-`, over 200 bytes); beanstalkd counts it in
    /// `cmd-pause-tube`.
    PauseTubeBadName,
}

type Parsed = Result<Command, LineError>;

/// Parses a command line, sprout's own commands included. `line` excludes the
/// terminating CRLF.
pub fn parse_line(line: &[u8], max_job_size: u32) -> Parsed {
    parse_line_with(line, max_job_size, true)
}

/// Parses a command line; without `extensions` (`--strict`), exactly as beanstalkd 1.13.
pub fn parse_line_with(line: &[u8], max_job_size: u32, extensions: bool) -> Parsed {
    use Command as C;
    if line.contains(&0) {
        return Err(LineError::BadFormat);
    }
    if extensions {
        if let Some(r) = parse_extension(line, max_job_size) {
            return r;
        }
    }
    if let Some(rest) = line.strip_prefix(b"put ") {
        return parse_put(rest, max_job_size);
    }
    if let Some(rest) = line.strip_prefix(b"peek ") {
        return last_u64(rest).map(C::Peek);
    }
    for (name, cmd) in [
        (&b"peek-ready"[..], C::PeekReady),
        (b"peek-delayed", C::PeekDelayed),
        (b"peek-buried", C::PeekBuried),
    ] {
        if line.starts_with(name) {
            return exact(line, name, cmd);
        }
    }
    if let Some(rest) = line.strip_prefix(b"reserve-with-timeout ") {
        // 1.13: a u32 that fits an int; what follows the number is not checked.
        let (t, _) = read_uint(rest, u64::from(u32::MAX))?;
        if t > i32::MAX as u64 {
            return Err(LineError::BadFormat);
        }
        return Ok(C::ReserveWithTimeout(t as u32));
    }
    if let Some(rest) = line.strip_prefix(b"reserve-job ") {
        return last_u64(rest).map(C::ReserveJob);
    }
    if line.starts_with(b"reserve") {
        return exact(line, b"reserve", C::Reserve);
    }
    if let Some(rest) = line.strip_prefix(b"delete ") {
        return last_u64(rest).map(C::Delete);
    }
    if let Some(rest) = line.strip_prefix(b"release ") {
        let (id, rest) = read_uint(rest, u64::MAX)?;
        let (pri, rest) = read_uint(rest, u32::MAX.into())?;
        let delay = last_u32(rest)?;
        return Ok(C::Release {
            id,
            pri: pri as u32,
            delay,
        });
    }
    if let Some(rest) = line.strip_prefix(b"bury ") {
        let (id, rest) = read_uint(rest, u64::MAX)?;
        let pri = last_u32(rest)?;
        return Ok(C::Bury { id, pri });
    }
    if let Some(rest) = line.strip_prefix(b"kick ") {
        return strtoul(rest).map(|n| C::Kick(n as u32));
    }
    if let Some(rest) = line.strip_prefix(b"kick-job ") {
        return last_u64(rest).map(C::KickJob);
    }
    if let Some(rest) = line.strip_prefix(b"touch ") {
        return last_u64(rest).map(C::Touch);
    }
    if let Some(rest) = line.strip_prefix(b"stats-job ") {
        return last_u64(rest).map(C::StatsJob);
    }
    if let Some(rest) = line.strip_prefix(b"stats-tube ") {
        return tube_name(rest).map(C::StatsTube);
    }
    if line.starts_with(b"stats") {
        return exact(line, b"stats", C::Stats);
    }
    if let Some(rest) = line.strip_prefix(b"use ") {
        return tube_name(rest).map(C::Use);
    }
    if let Some(rest) = line.strip_prefix(b"watch ") {
        return tube_name(rest).map(C::Watch);
    }
    if let Some(rest) = line.strip_prefix(b"ignore ") {
        return tube_name(rest).map(C::Ignore);
    }
    for (name, cmd) in [
        (&b"list-tubes-watched"[..], C::ListTubesWatched),
        (b"list-tube-used", C::ListTubeUsed),
        (b"list-tubes", C::ListTubes),
    ] {
        if line.starts_with(name) {
            return exact(line, name, cmd);
        }
    }
    if line.starts_with(b"quit") {
        return Ok(C::Quit);
    }
    if let Some(rest) = line.strip_prefix(b"pause-tube") {
        return parse_pause(rest);
    }
    Err(LineError::UnknownCommand)
}

/// sprout's own commands: None if the line's first word is not one of them. A wrong
/// argument count or value is BAD_FORMAT.
fn parse_extension(line: &[u8], max_job_size: u32) -> Option<Parsed> {
    let word_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (word, rest) = line.split_at(word_len);
    let r = match word {
        b"flush-tube" => last_name(rest).map(Command::FlushTube),
        b"reserve-batch" => parse_reserve_batch(rest),
        b"list-jobs" => parse_list_jobs(rest),
        b"put-unique" => parse_put_unique(rest, max_job_size),
        b"reprioritize" => (|| {
            let (id, rest) = read_uint(rest, u64::MAX)?;
            let pri = last_u32(rest)?;
            Ok(Command::Reprioritize { id, pri })
        })(),
        b"move-job" => (|| {
            let (id, rest) = read_uint(rest, u64::MAX)?;
            let tube = last_name(rest)?;
            Ok(Command::MoveJob { id, tube })
        })(),
        b"tube-policy" => parse_tube_policy(rest),
        b"cluster-add" => parse_cluster_add(rest),
        b"cluster-remove" => node_id(rest).map(Command::ClusterRemove),
        b"cluster-transfer-leader" => node_id(rest).map(Command::ClusterTransferLeader),
        _ => return None,
    };
    Some(r.map_err(|e| match e {
        LineError::PutTooBig(n) => LineError::PutTooBig(n),
        _ => LineError::BadFormat,
    }))
}

/// A node id (1 or more) that ends the line.
fn node_id(s: &[u8]) -> Result<u64, LineError> {
    match last_u64(s)? {
        0 => Err(LineError::BadFormat),
        id => Ok(id),
    }
}

/// `cluster-add <id> <host:port>`: a non-zero id, then an address with a port (one word).
fn parse_cluster_add(rest: &[u8]) -> Parsed {
    let (id, rest) = read_uint(rest, u64::MAX)?;
    let (addr, tail) = word_arg(rest);
    let port = addr
        .iter()
        .rposition(|&b| b == b':')
        .map(|i| &addr[i + 1..]);
    let port_ok =
        port.is_some_and(|p| std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()));
    if id == 0 || !tail.is_empty() || addr.len() > 255 || !port_ok || addr[0] == b':' {
        return Err(LineError::BadFormat);
    }
    let addr = std::str::from_utf8(addr).map_err(|_| LineError::BadFormat)?;
    if !addr.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LineError::BadFormat);
    }
    Ok(Command::ClusterAdd {
        id,
        addr: addr.to_string(),
    })
}

/// A name argument (leading spaces skipped) and what follows it.
fn name_arg(s: &[u8]) -> Result<(String, &[u8]), LineError> {
    let (name, rest) = word_arg(s);
    Ok((tube_name(name)?, rest))
}

/// A name that ends the line.
fn last_name(s: &[u8]) -> Result<String, LineError> {
    match name_arg(s)? {
        (name, []) => Ok(name),
        _ => Err(LineError::BadFormat),
    }
}

/// A word (leading spaces skipped) and what follows it.
fn word_arg(s: &[u8]) -> (&[u8], &[u8]) {
    let start = s.iter().take_while(|&&b| b == b' ').count();
    let s = &s[start..];
    let len = s.iter().take_while(|&&b| b != b' ').count();
    s.split_at(len)
}

fn parse_reserve_batch(rest: &[u8]) -> Parsed {
    let (max, rest) = read_uint(rest, u64::from(u32::MAX))?;
    let timeout = last_u32(rest)?;
    if !(1..=1000).contains(&max) || timeout > i32::MAX as u32 {
        return Err(LineError::BadFormat);
    }
    Ok(Command::ReserveBatch {
        max: max as u32,
        timeout,
    })
}

fn parse_list_jobs(rest: &[u8]) -> Parsed {
    let (tube, rest) = name_arg(rest)?;
    let (state, rest) = word_arg(rest);
    let state = match state {
        b"ready" => ListState::Ready,
        b"delayed" => ListState::Delayed,
        b"buried" => ListState::Buried,
        b"reserved" => ListState::Reserved,
        _ => return Err(LineError::BadFormat),
    };
    let (after, rest) = read_uint(rest, u64::MAX)?;
    let limit = last_u32(rest)?;
    if !(1..=1000).contains(&limit) {
        return Err(LineError::BadFormat);
    }
    Ok(Command::ListJobs {
        tube,
        state,
        after,
        limit,
    })
}

fn parse_put_unique(rest: &[u8], max_job_size: u32) -> Parsed {
    let (key, rest) = name_arg(rest)?;
    match parse_put(rest, max_job_size)? {
        Command::Put(header) => Ok(Command::PutUnique { key, header }),
        _ => Err(LineError::BadFormat),
    }
}

fn parse_tube_policy(rest: &[u8]) -> Parsed {
    let (tube, rest) = name_arg(rest)?;
    if rest.is_empty() {
        return Ok(Command::TubePolicy { tube, set: None });
    }
    let (key, rest) = word_arg(rest);
    let (value, rest) = word_arg(rest);
    if value.is_empty() || !rest.is_empty() {
        return Err(LineError::BadFormat);
    }
    let set = match key {
        b"max-reserves" => PolicySet::MaxReserves(last_u32(value)?),
        b"max-ready" => PolicySet::MaxReady(last_u64(value)?),
        b"on-exhaust" => PolicySet::OnExhaust(match value {
            b"bury" => Exhaust::Bury,
            b"delete" => Exhaust::Delete,
            v => match v.strip_prefix(b"tube:") {
                Some(name) => Exhaust::Tube(tube_name(name)?),
                None => return Err(LineError::BadFormat),
            },
        }),
        b"retry-backoff" => PolicySet::RetryBackoff(parse_backoff(value)?),
        _ => return Err(LineError::BadFormat),
    };
    Ok(Command::TubePolicy {
        tube,
        set: Some(set),
    })
}

/// `none`, `fixed:<s>` or `exp:<base>,<cap>` (seconds).
pub fn parse_backoff(v: &[u8]) -> Result<Backoff, LineError> {
    if v == b"none" {
        return Ok(Backoff::None);
    }
    if let Some(s) = v.strip_prefix(b"fixed:") {
        return Ok(Backoff::Fixed(strict_u32(s)?));
    }
    if let Some(s) = v.strip_prefix(b"exp:") {
        let comma = s
            .iter()
            .position(|&b| b == b',')
            .ok_or(LineError::BadFormat)?;
        let base = strict_u32(&s[..comma])?;
        let cap = strict_u32(&s[comma + 1..])?;
        if base == 0 || cap < base {
            return Err(LineError::BadFormat);
        }
        return Ok(Backoff::Exp { base, cap });
    }
    Err(LineError::BadFormat)
}

/// Digits only (no spaces), at most u32::MAX.
fn strict_u32(s: &[u8]) -> Result<u32, LineError> {
    if s.first() == Some(&b' ') {
        return Err(LineError::BadFormat);
    }
    last_u32(s)
}

fn exact(line: &[u8], name: &[u8], cmd: Command) -> Parsed {
    if line.len() == name.len() {
        Ok(cmd)
    } else {
        Err(LineError::BadFormat)
    }
}

fn parse_put(rest: &[u8], max_job_size: u32) -> Parsed {
    let max32 = u64::from(u32::MAX);
    let (pri, rest) = read_uint(rest, max32)?;
    let (delay, rest) = read_uint(rest, max32)?;
    let (ttr, rest) = read_uint(rest, max32)?;
    let (bytes, rest) = read_uint(rest, max32)?;
    let bytes = bytes as u32;
    if bytes > max_job_size {
        return Err(LineError::PutTooBig(bytes));
    }
    if !rest.is_empty() {
        return Err(LineError::PutBadFormat);
    }
    Ok(Command::Put(PutHeader {
        pri: pri as u32,
        delay: delay as u32,
        ttr: ttr as u32,
        bytes,
    }))
}

fn parse_pause(rest: &[u8]) -> Parsed {
    let start = rest.iter().take_while(|&&b| b == b' ').count();
    let rest = &rest[start..];
    let len = rest.iter().take_while(|&&b| is_name_byte(b)).count();
    if len == 0 {
        return Err(LineError::BadFormat);
    }
    let (name, rest) = rest.split_at(len);
    let delay = last_u32(rest)?;
    let tube = tube_name(name).map_err(|_| LineError::PauseTubeBadName)?;
    Ok(Command::PauseTube { tube, delay })
}

/// Reads an unsigned decimal like beanstalkd's `read_u64`/`read_u32`: leading spaces only,
/// then at least one digit; the value must not exceed `max`. Returns the rest of the input.
pub(crate) fn read_uint(s: &[u8], max: u64) -> Result<(u64, &[u8]), LineError> {
    let start = s.iter().take_while(|&&b| b == b' ').count();
    let s = &s[start..];
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(LineError::BadFormat);
    }
    let mut v: u64 = 0;
    for &b in &s[..digits] {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(LineError::BadFormat)?;
    }
    if v > max {
        return Err(LineError::BadFormat);
    }
    Ok((v, &s[digits..]))
}

fn last_u64(s: &[u8]) -> Result<u64, LineError> {
    match read_uint(s, u64::MAX)? {
        (v, []) => Ok(v),
        _ => Err(LineError::BadFormat),
    }
}

fn last_u32(s: &[u8]) -> Result<u32, LineError> {
    match read_uint(s, u32::MAX.into())? {
        (v, []) => Ok(v as u32),
        _ => Err(LineError::BadFormat),
    }
}

/// C's `strtoul(s, &end, 10)` as `kick` uses it: leading white space, an optional sign
/// (a minus negates modulo 2^64), digits; anything after them is ignored. No digits, or a
/// value beyond u64, is an error.
fn strtoul(s: &[u8]) -> Result<u64, LineError> {
    let start = s
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .count();
    let mut s = &s[start..];
    let mut neg = false;
    if let Some((&sign, rest)) = s.split_first() {
        if sign == b'+' || sign == b'-' {
            neg = sign == b'-';
            s = rest;
        }
    }
    let (v, _) = read_uint_no_skip(s)?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

fn read_uint_no_skip(s: &[u8]) -> Result<(u64, &[u8]), LineError> {
    match s.first() {
        Some(b) if b.is_ascii_digit() => read_uint(s, u64::MAX),
        _ => Err(LineError::BadFormat),
    }
}

/// Bytes allowed in a tube name.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b)
}

/// Validates a whole tube name: 1..=200 name bytes, not starting with '-'.
pub fn tube_name(s: &[u8]) -> Result<String, LineError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_TUBE_NAME
        && s[0] != b'-'
        && s.iter().all(|&b| is_name_byte(b));
    if ok {
        // Name bytes are ASCII, so this cannot fail.
        String::from_utf8(s.to_vec()).map_err(|_| LineError::BadFormat)
    } else {
        Err(LineError::BadFormat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;
    use LineError::*;

    fn p(s: &str) -> Parsed {
        parse_line(s.as_bytes(), 65535)
    }

    #[test]
    fn put_ok_and_errors() {
        assert_eq!(
            p("put 1 2 3 4"),
            Ok(C::Put(PutHeader {
                pri: 1,
                delay: 2,
                ttr: 3,
                bytes: 4
            }))
        );
        assert!(p("put  0  0  0  1").is_ok());
        assert!(p("put 4294967295 0 0 1").is_ok());
        assert_eq!(p("put 4294967296 0 0 1"), Err(BadFormat));
        assert_eq!(p("put 0 0 0 4294967296"), Err(BadFormat));
        assert_eq!(p("put +1 0 0 1"), Err(BadFormat));
        assert_eq!(p("put -1 0 0 1"), Err(BadFormat));
        assert_eq!(p("put 0\t0 0 1"), Err(BadFormat));
        assert_eq!(p("put 0 0 0 1 "), Err(PutBadFormat));
        assert_eq!(p("put 0 0 0 1x"), Err(PutBadFormat));
        assert_eq!(p("put 0 0 0 70000 garbage"), Err(PutTooBig(70000)));
        assert_eq!(p("put 0 0 0 65535").map(|_| ()), Ok(()));
        assert_eq!(p("put 0 0 0"), Err(BadFormat));
        assert_eq!(p("put"), Err(UnknownCommand));
        assert_eq!(p("put\t0 0 0 1"), Err(UnknownCommand));
        assert_eq!(parse_line(b"put 0 0 0 1", 0), Err(PutTooBig(1)));
        assert!(parse_line(b"put 0 0 0 0", 0).is_ok());
    }

    #[test]
    fn ids_are_strict_u64() {
        assert_eq!(p("delete 5"), Ok(C::Delete(5)));
        assert_eq!(p("delete  5"), Ok(C::Delete(5)));
        assert_eq!(p("delete 010"), Ok(C::Delete(10)));
        assert_eq!(p("delete 5 "), Err(BadFormat));
        assert_eq!(p("delete 111foo"), Err(BadFormat));
        assert_eq!(p("delete +1"), Err(BadFormat));
        assert_eq!(p("delete "), Err(BadFormat));
        assert_eq!(p("delete 0x10"), Err(BadFormat));
        assert_eq!(p("delete 18446744073709551615"), Ok(C::Delete(u64::MAX)));
        assert_eq!(p("delete 18446744073709551616"), Err(BadFormat));
        assert_eq!(p("delete"), Err(UnknownCommand));
        for c in ["peek", "touch", "kick-job", "stats-job", "reserve-job"] {
            assert!(p(&format!("{c} 7")).is_ok(), "{c}");
            assert_eq!(p(&format!("{c} 7x")), Err(BadFormat), "{c}");
        }
    }

    #[test]
    fn kick_reads_like_strtoul() {
        assert_eq!(p("kick 3"), Ok(C::Kick(3)));
        assert_eq!(p("kick +3"), Ok(C::Kick(3)));
        assert_eq!(p("kick -1"), Ok(C::Kick(u32::MAX)));
        assert_eq!(p("kick 2 "), Ok(C::Kick(2)));
        assert_eq!(p("kick 1abc"), Ok(C::Kick(1)));
        assert_eq!(p("kick \t1"), Ok(C::Kick(1)));
        assert_eq!(p("kick 010"), Ok(C::Kick(10)));
        assert_eq!(p("kick 0x10"), Ok(C::Kick(0)));
        assert_eq!(p("kick 1e3"), Ok(C::Kick(1)));
        assert_eq!(p("kick 4294967296"), Ok(C::Kick(0)));
        assert_eq!(p("kick 4294967297"), Ok(C::Kick(1)));
        assert_eq!(p("kick 99999999999999999999"), Err(BadFormat));
        assert_eq!(p("kick "), Err(BadFormat));
        assert_eq!(p("kick abc"), Err(BadFormat));
        assert_eq!(p("kick -"), Err(BadFormat));
        assert_eq!(p("kick"), Err(UnknownCommand));
    }

    #[test]
    fn release_and_bury() {
        assert_eq!(
            p("release 1 2 3"),
            Ok(C::Release {
                id: 1,
                pri: 2,
                delay: 3
            })
        );
        assert_eq!(p("release 1 2"), Err(BadFormat));
        assert_eq!(p("release 1 2 3 "), Err(BadFormat));
        assert_eq!(p("bury 1 2"), Ok(C::Bury { id: 1, pri: 2 }));
        assert_eq!(p("bury 1"), Err(BadFormat));
    }

    #[test]
    fn reserve_with_timeout_follows_1_13() {
        assert_eq!(p("reserve-with-timeout 0"), Ok(C::ReserveWithTimeout(0)));
        assert_eq!(p("reserve-with-timeout 0abc"), Ok(C::ReserveWithTimeout(0)));
        assert_eq!(
            p("reserve-with-timeout 0 xyz"),
            Ok(C::ReserveWithTimeout(0))
        );
        assert_eq!(
            p("reserve-with-timeout 2147483647"),
            Ok(C::ReserveWithTimeout(i32::MAX as u32))
        );
        for bad in ["", "abc", "+1", "-1", "-5", "2147483648", "4294967296"] {
            assert_eq!(
                p(&format!("reserve-with-timeout {bad}")),
                Err(BadFormat),
                "{bad}"
            );
        }
        assert_eq!(p("reserve-with-timeout"), Err(BadFormat));
        assert_eq!(p("reserve-job"), Err(BadFormat));
        assert_eq!(p("reserve"), Ok(C::Reserve));
        assert_eq!(p("reservex"), Err(BadFormat));
        assert_eq!(p("reserve x"), Err(BadFormat));
    }

    #[test]
    fn prefix_table() {
        for bare in [
            "use", "delete", "kick", "peek", "touch", "bury", "release", "watch", "ignore",
            "kick-job", "foo", "STATS", "", "list",
        ] {
            assert_eq!(p(bare), Err(UnknownCommand), "{bare:?}");
        }
        for bad in [
            "stats ",
            "statsx",
            "stats-tubex",
            "stats-tube",
            "stats-job",
            "pause-tube",
            "pause-tube ",
            "list-tubes x",
            "list-tubesx",
            "peek-ready x",
            "list-tube-usedx",
            "list-tubes-watched ",
        ] {
            assert_eq!(p(bad), Err(BadFormat), "{bad:?}");
        }
        for quit in ["quit", "quitxyz", "quit now"] {
            assert_eq!(p(quit), Ok(C::Quit));
        }
        assert_eq!(p("stats"), Ok(C::Stats));
        assert_eq!(p("list-tubes"), Ok(C::ListTubes));
        assert_eq!(p("list-tube-used"), Ok(C::ListTubeUsed));
        assert_eq!(p("list-tubes-watched"), Ok(C::ListTubesWatched));
        assert_eq!(p("peek-ready"), Ok(C::PeekReady));
        assert_eq!(p("peek-delayed"), Ok(C::PeekDelayed));
        assert_eq!(p("peek-buried"), Ok(C::PeekBuried));
        assert_eq!(parse_line(b"stats\0", 10), Err(BadFormat));
        assert_eq!(parse_line(b"\0", 10), Err(BadFormat));
    }

    #[test]
    fn tube_names() {
        assert_eq!(p("use foo"), Ok(C::Use("foo".into())));
        assert_eq!(
            p("use A-Za-z0-9+/;.$_()"),
            Ok(C::Use("A-Za-z0-9+/;.$_()".into()))
        );
        for bad in [
            "use  foo",
            "use foo ",
            "use foo bar",
            "use -foo",
            "use fo!o",
            "use ",
        ] {
            assert_eq!(p(bad), Err(BadFormat), "{bad:?}");
        }
        let n200 = "a".repeat(200);
        assert_eq!(p(&format!("watch {n200}")), Ok(C::Watch(n200.clone())));
        assert_eq!(p(&format!("watch a{n200}")), Err(BadFormat));
        assert_eq!(
            p(&format!("stats-tube {n200}")),
            Ok(C::StatsTube(n200.clone()))
        );
        assert_eq!(p("ignore x-"), Ok(C::Ignore("x-".into())));
    }

    #[test]
    fn pause_tube() {
        let ok = |t: &str, d| {
            Ok(C::PauseTube {
                tube: t.into(),
                delay: d,
            })
        };
        assert_eq!(p("pause-tube default 0"), ok("default", 0));
        assert_eq!(p("pause-tube   default    0"), ok("default", 0));
        assert_eq!(p("pause-tubedefault 0"), ok("default", 0));
        assert_eq!(p("pause-tube default 0 "), Err(BadFormat));
        assert_eq!(p("pause-tube default"), Err(BadFormat));
        assert_eq!(p("pause-tube -x 1"), Err(PauseTubeBadName));
        assert_eq!(p("pause-tube foo! 1"), Err(BadFormat));
        assert_eq!(p("pause-tube foo\t1"), Err(BadFormat));
        let n200 = "a".repeat(200);
        assert_eq!(
            p(&format!("pause-tube {n200} 4294967295")),
            ok(&n200, u32::MAX)
        );
        assert_eq!(p(&format!("pause-tube a{n200} 1")), Err(PauseTubeBadName));
    }
}
