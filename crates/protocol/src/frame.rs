//! Turning a byte stream into protocol events, with beanstalkd's framing rules:
//! a line ends at the first `\r` if `\n` follows it; a line is at most 224 bytes with its
//! CRLF; an over-long line is discarded up to the next CRLF and answered with one
//! `BAD_FORMAT`; a `put` body is exactly `<bytes>` + CRLF; a too-big body is skipped.
//!
//! The decoder holds no buffer of its own: the caller owns the input buffer, appends what it
//! reads and calls [`Decoder::decode`] until it returns `None`.

use bytes::{Buf, Bytes, BytesMut};

use super::command::{Command, PutHeader};
use super::parse::{parse_line_with, LineError};
use super::LINE_MAX;

/// What the input produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete command other than `put`.
    Command(Command),
    /// A `put` header was accepted; its body follows as [`Event::Body`] or
    /// [`Event::ExpectedCrlf`].
    Put(PutHeader),
    /// A `put-unique` header was accepted (key, header); its body follows as for `put`.
    PutUnique(String, PutHeader),
    /// The body of the preceding `put`, without its CRLF.
    Body(Bytes),
    /// The body of the preceding `put` was not followed by CRLF.
    ExpectedCrlf,
    /// A line that is not a command. For [`LineError::PutTooBig`] no reply is due yet: the
    /// body is being skipped and [`Event::JobTooBig`] follows once it is.
    Error(LineError),
    /// A too-big body has been skipped; reply `JOB_TOO_BIG`.
    JobTooBig,
    /// A body the caller chose to skip (see [`Decoder::skip_body`]) has been skipped.
    BodySkipped,
    /// `auth <token>`, only from a decoder made [`Decoder::with_auth`] (sproutd's token
    /// listeners): the bytes after `auth ` (empty for a bare `auth` or a malformed line).
    Auth(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Line,
    /// An over-long line is being discarded up to the next line end.
    Discard,
    /// Reading a put body of this many bytes plus CRLF.
    Body(usize),
    /// Skipping this many bytes of a too-big body.
    Skip(u64),
    /// Skipping this many bytes of a body the caller refused.
    SkipRefused(u64),
}

/// The per-connection framing state machine.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    max_job_size: u32,
    /// sprout's own commands are recognised (off with `--strict`).
    extensions: bool,
    /// `auth` is recognised (token listeners only; elsewhere it is an unknown command).
    auth: bool,
}

/// Position of the line end in `window` per beanstalkd: the first `\r`, if `\n` follows it.
fn scan_line_end(window: &[u8]) -> Option<usize> {
    let i = window.iter().position(|&b| b == b'\r')?;
    (window.get(i + 1) == Some(&b'\n')).then_some(i)
}

impl Decoder {
    pub fn new(max_job_size: u32) -> Self {
        Decoder {
            state: State::Line,
            max_job_size,
            extensions: true,
            auth: false,
        }
    }

    /// The same decoder, also recognising `auth <token>` ([`Event::Auth`]).
    pub fn with_auth(self) -> Self {
        Decoder { auth: true, ..self }
    }

    /// A decoder that reads exactly beanstalkd 1.13's commands (`--strict`).
    pub fn strict(max_job_size: u32) -> Self {
        Decoder {
            extensions: false,
            ..Self::new(max_job_size)
        }
    }

    /// How many more bytes the decoder needs at least before it can make progress, when
    /// it is in the middle of a body (for sizing reads); 0 when reading lines.
    pub fn body_remaining(&self, buffered: usize) -> usize {
        match self.state {
            State::Body(n) => n.saturating_sub(buffered),
            _ => 0,
        }
    }

    /// True while a `put` body is being read or skipped.
    pub fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Body(_) | State::Skip(_) | State::SkipRefused(_)
        )
    }

    /// Right after [`Event::Put`]: the body will be refused, so discard it as it arrives
    /// instead of buffering it; [`Event::BodySkipped`] follows once it has.
    pub fn skip_body(&mut self) {
        if let State::Body(n) = self.state {
            self.state = State::SkipRefused(n as u64);
        }
    }

    /// Consumes bytes from `input` and returns the next event, or `None` when more input is
    /// needed. Bytes are removed from `input` as they are used.
    pub fn decode(&mut self, input: &mut BytesMut) -> Option<Event> {
        loop {
            match self.state {
                State::Line | State::Discard => {
                    let window = &input[..input.len().min(LINE_MAX)];
                    match scan_line_end(window) {
                        Some(i) => {
                            let line = input.split_to(i + 2);
                            if self.state == State::Discard {
                                self.state = State::Line;
                                return Some(Event::Error(LineError::BadFormat));
                            }
                            return Some(self.on_line(&line[..i]));
                        }
                        None if input.len() >= LINE_MAX => {
                            input.advance(LINE_MAX);
                            self.state = State::Discard;
                        }
                        None => return None,
                    }
                }
                State::Body(need) => {
                    if input.len() < need {
                        return None;
                    }
                    let mut body = input.split_to(need);
                    self.state = State::Line;
                    if body[need - 2..] != *b"\r\n" {
                        return Some(Event::ExpectedCrlf);
                    }
                    body.truncate(need - 2);
                    // The engine copies the body into its own allocation, so this view of
                    // the read buffer lives only until then.
                    let body = body.freeze();
                    return Some(Event::Body(body));
                }
                State::Skip(left) | State::SkipRefused(left) => {
                    let refused = matches!(self.state, State::SkipRefused(_));
                    let n = (input.len() as u64).min(left);
                    input.advance(n as usize);
                    if n < left {
                        self.state = if refused {
                            State::SkipRefused(left - n)
                        } else {
                            State::Skip(left - n)
                        };
                        return None;
                    }
                    self.state = State::Line;
                    return Some(if refused {
                        Event::BodySkipped
                    } else {
                        Event::JobTooBig
                    });
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) -> Event {
        if self.auth && line.starts_with(b"auth") {
            return Event::Auth(match line.strip_prefix(b"auth ") {
                Some(t) if !t.is_empty() && !t.contains(&b' ') => t.to_vec(),
                _ if line == b"auth" || line.starts_with(b"auth ") => Vec::new(),
                // Another word that starts with "auth": not this command.
                _ => return self.parse(line),
            });
        }
        self.parse(line)
    }

    fn parse(&mut self, line: &[u8]) -> Event {
        match parse_line_with(line, self.max_job_size, self.extensions) {
            Ok(Command::Put(h)) => {
                self.state = State::Body(h.bytes as usize + 2);
                Event::Put(h)
            }
            Ok(Command::PutUnique { key, header }) => {
                self.state = State::Body(header.bytes as usize + 2);
                Event::PutUnique(key, header)
            }
            Ok(cmd) => Event::Command(cmd),
            Err(e @ LineError::PutTooBig(bytes)) => {
                self.state = State::Skip(u64::from(bytes) + 2);
                Event::Error(e)
            }
            Err(e) => Event::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut Decoder, chunks: &[&[u8]]) -> Vec<Event> {
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(e) = d.decode(&mut buf) {
                out.push(e);
            }
        }
        out
    }

    fn all(input: &[u8]) -> Vec<Event> {
        run(&mut Decoder::new(65535), &[input])
    }

    fn bytewise(input: &[u8]) -> Vec<Event> {
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        run(&mut Decoder::new(65535), &chunks)
    }

    #[test]
    fn pipelined_and_split_agree() {
        let input = b"use foo\r\nput 1 0 5 3\r\na\r\n\r\nstats\r\n";
        let expect = vec![
            Event::Command(Command::Use("foo".into())),
            Event::Put(PutHeader {
                pri: 1,
                delay: 0,
                ttr: 5,
                bytes: 3,
            }),
            Event::Body(Bytes::from_static(b"a\r\n")),
            Event::Command(Command::Stats),
        ];
        assert_eq!(all(input), expect);
        assert_eq!(bytewise(input), expect);
    }

    #[test]
    fn body_with_nul_and_crlf_inside() {
        let ev = all(b"put 0 0 0 4\r\n\0\r\n\0\r\n");
        assert_eq!(ev[1], Event::Body(Bytes::from_static(b"\0\r\n\0")));
    }

    #[test]
    fn expected_crlf_then_rest_is_a_command() {
        let ev = all(b"put 0 0 0 1\r\nabc\r\n");
        assert_eq!(ev[1], Event::ExpectedCrlf);
        assert_eq!(ev[2], Event::Error(LineError::UnknownCommand));
    }

    #[test]
    fn too_big_skips_body_and_replies_after_it() {
        let mut d = Decoder::new(10);
        let ev = run(&mut d, &[b"put 0 0 0 11\r\n", b"zzzzzzzzzzz"]);
        assert_eq!(ev, vec![Event::Error(LineError::PutTooBig(11))]);
        let ev = run(&mut d, &[b"zzlist-tube-used\r\n"]);
        assert_eq!(
            ev,
            vec![Event::JobTooBig, Event::Command(Command::ListTubeUsed)]
        );
    }

    #[test]
    fn line_limits() {
        let mut ok = b"put 0 0 0 1".to_vec();
        ok.resize(222, b' ');
        ok.extend_from_slice(b"\r\n");
        // 222 chars + CRLF fits, though the trailing spaces make it a bad put.
        assert_eq!(all(&ok), vec![Event::Error(LineError::PutBadFormat)]);
        let mut long = vec![b'b'; 300];
        long.extend_from_slice(b"\r\nlist-tube-used\r\n");
        assert_eq!(
            all(&long),
            vec![
                Event::Error(LineError::BadFormat),
                Event::Command(Command::ListTubeUsed)
            ]
        );
        // 223 chars + CRLF: the LF falls outside the window, so the next line is eaten.
        let mut quirk = vec![b'b'; 223];
        quirk.extend_from_slice(b"\r\nlist-tube-used\r\n");
        assert_eq!(all(&quirk), vec![Event::Error(LineError::BadFormat)]);
    }

    #[test]
    fn auth_only_when_asked_for() {
        let input = b"auth s3cret\r\nauth\r\nauth a b\r\nauthx\r\n";
        assert_eq!(
            all(input),
            vec![Event::Error(LineError::UnknownCommand); 4],
            "a plain decoder knows no auth"
        );
        let mut d = Decoder::new(65535).with_auth();
        assert_eq!(
            run(&mut d, &[input]),
            vec![
                Event::Auth(b"s3cret".to_vec()),
                Event::Auth(Vec::new()),
                Event::Auth(Vec::new()),
                Event::Error(LineError::UnknownCommand),
            ]
        );
    }

    #[test]
    fn stray_cr_stalls_until_the_window_fills() {
        let ev = all(b"stats\rx\r\nlist-tube-used\r\n");
        assert_eq!(ev, vec![]);
        let ev = all(b"stats\nstats\r\n");
        assert_eq!(ev, vec![Event::Error(LineError::BadFormat)]);
        assert_eq!(all(b"\r\n"), vec![Event::Error(LineError::UnknownCommand)]);
    }
}
