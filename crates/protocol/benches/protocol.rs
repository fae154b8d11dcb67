//! Micro-benchmarks of the protocol layer's hot path: parsing a command line, framing a
//! pipelined stream, encoding replies. Run with `cargo bench --bench protocol`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

use sprout_protocol::reply::ProcessStats;
use sprout_protocol::{parse_line, Decoder, Event, Reply};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_line");
    for (name, line) in [
        ("put", &b"put 1024 0 60 100"[..]),
        ("reserve", b"reserve"),
        ("reserve-with-timeout", b"reserve-with-timeout 5"),
        ("delete", b"delete 1234567"),
        ("release", b"release 1234567 1024 0"),
        ("use", b"use emails-high-priority"),
        ("stats-tube", b"stats-tube emails-high-priority"),
        ("unknown", b"frobnicate 1 2 3"),
    ] {
        g.bench_function(name, |b| b.iter(|| parse_line(black_box(line), 65535)));
    }
    g.finish();
}

/// A stream of `n` put/reserve/delete triples, as a pipelining client sends it.
fn stream(n: usize) -> Vec<u8> {
    let body = [b'x'; 100];
    let mut v = Vec::new();
    for i in 0..n {
        v.extend_from_slice(b"put 0 0 60 100\r\n");
        v.extend_from_slice(&body);
        v.extend_from_slice(b"\r\nreserve\r\n");
        v.extend_from_slice(format!("delete {}\r\n", i + 1).as_bytes());
    }
    v
}

fn frame(c: &mut Criterion) {
    let n = 1000;
    let input = stream(n);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(3 * n as u64));
    g.bench_function("put-reserve-delete x1000", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&input[..]),
            |buf| {
                let mut d = Decoder::new(65535);
                let mut events = 0;
                while let Some(e) = d.decode(buf) {
                    if !matches!(e, Event::Body(_)) {
                        events += 1;
                    }
                }
                assert_eq!(events, 3 * n);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let process = ProcessStats::default();
    let body = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group("encode");
    for (name, reply) in [
        ("INSERTED", Reply::Inserted(1234567)),
        ("DELETED", Reply::Deleted),
        (
            "RESERVED 100B",
            Reply::Reserved {
                id: 1234567,
                body: body.clone(),
            },
        ),
    ] {
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&reply).encode(&mut out, &process);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, frame, encode);
criterion_main!(benches);
