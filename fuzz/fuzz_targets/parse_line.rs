//! `parse_line` and the framing `Decoder`.
//!
//! Input layout: byte 0 picks `max_job_size`; byte 1 the number of split points k (0..=7)
//! and, in bit 3, whether to also feed the stream byte by byte;
//! the next 2k bytes are split offsets (u16 LE, taken modulo the stream length); the rest
//! is the byte stream a client sends.
//!
//! Checks:
//! - `parse_line` never panics, on the whole stream and on every CRLF-separated piece, and
//!   what it accepts is consistent (tube names valid, a put's size within the limit);
//! - the `Decoder` produces exactly the same events, leaves the same bytes unconsumed and
//!   ends in the same state whether the stream arrives at once, split at the chosen
//!   points, or one byte at a time (the first 256 bytes).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sprout_protocol::parse::tube_name;
use sprout_protocol::{parse_line, Command, Decoder, Event, LineError};

const SIZES: [u32; 8] = [
    0,
    1,
    5,
    10,
    100,
    65535,
    1 << 20,
    sprout_protocol::MAX_JOB_SIZE_LIMIT,
];

fn check_parsed(line: &[u8], max: u32) {
    match parse_line(line, max) {
        Ok(Command::Put(h)) => assert!(h.bytes <= max, "put of {} bytes > {max}", h.bytes),
        Ok(
            Command::Use(t)
            | Command::Watch(t)
            | Command::Ignore(t)
            | Command::StatsTube(t)
            | Command::PauseTube { tube: t, .. },
        ) => assert!(
            tube_name(t.as_bytes()).is_ok(),
            "invalid tube name {t:?} accepted"
        ),
        Ok(Command::ReserveWithTimeout(t)) => assert!(t <= i32::MAX as u32),
        Ok(_) => {}
        Err(LineError::PutTooBig(n)) => assert!(n > max),
        Err(_) => {}
    }
}

/// Feeds `chunks` in order, draining the decoder after each; returns the events, what is
/// left unconsumed, and whether the decoder is inside a body.
fn feed<'a>(max: u32, chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Event>, Vec<u8>, bool) {
    let mut d = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(e) = d.decode(&mut buf) {
            events.push(e);
        }
    }
    (events, buf.to_vec(), d.in_body())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = SIZES[(data[0] & 7) as usize];
    let k = (data[1] & 7) as usize;
    let Some(stream) = data.get(2 + 2 * k..) else {
        return;
    };
    let mut cuts: Vec<usize> = data[2..2 + 2 * k]
        .chunks(2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    check_parsed(stream, max);
    for line in stream.split(|&b| b == b'\n') {
        check_parsed(line.strip_suffix(b"\r").unwrap_or(line), max);
    }

    let whole = feed(max, std::iter::once(stream));
    let mut pieces = Vec::with_capacity(k + 1);
    let mut at = 0;
    for &c in &cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);
    let split = feed(max, pieces.into_iter());
    assert_eq!(whole, split, "split at {cuts:?} changed the events");
    if data[1] & 8 == 0 {
        return;
    }
    // Byte at a time costs a line scan per byte: only the start of long streams.
    let head = &stream[..stream.len().min(256)];
    let bytewise = feed(max, head.chunks(1));
    let whole_head = if head.len() == stream.len() {
        whole
    } else {
        feed(max, std::iter::once(head))
    };
    assert_eq!(
        whole_head, bytewise,
        "byte-at-a-time feeding changed the events"
    );
});
