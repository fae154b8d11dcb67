//! Micro-benchmarks of the engine's hot operations, with small and large queues, many
//! tubes and many reservations, to show they stay O(log n). Run with
//! `cargo bench --bench engine`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use sprout_engine::{ConnId, Effects, Engine, Input, Output};
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Command, Reply};

const HEADER: PutHeader = PutHeader {
    pri: 1024,
    delay: 0,
    ttr: 60,
    bytes: 100,
};

/// A command through the engine's entry point.
fn cmd(e: &mut Engine, c: ConnId, command: Command, fx: &mut Effects) -> Output {
    e.apply(0, Input::Command(c, command), fx);
    std::mem::take(&mut fx.output)
}

/// A put as the server makes one without a log: header, admission, apply.
fn put(e: &mut Engine, c: ConnId, body: &Bytes, fx: &mut Effects) -> u64 {
    e.apply(0, Input::PutHeader(c), fx);
    let Output::Job(id) = fx.output else {
        panic!("put header: {:?}", fx.output)
    };
    let p = e
        .put_admit(c, id, HEADER, body.clone(), 0)
        .expect("admitted");
    e.apply(0, Input::Put(p), fx);
    match &fx.output {
        Output::Reply(Reply::Inserted(id)) => *id,
        o => panic!("put: {o:?}"),
    }
}

fn reserve(e: &mut Engine, c: ConnId, fx: &mut Effects) -> u64 {
    match cmd(e, c, Command::ReserveWithTimeout(0), fx) {
        Output::Reply(Reply::Reserved { id, .. }) => id,
        o => panic!("reserve: {o:?}"),
    }
}

fn delete(e: &mut Engine, c: ConnId, id: u64, fx: &mut Effects) {
    let o = cmd(e, c, Command::Delete(id), fx);
    assert_eq!(o, Output::Reply(Reply::Deleted));
}

/// An engine holding `backlog` ready jobs in `default`, and `tubes` further tubes each
/// holding one job (watched by the returned connection if `watch`).
fn engine(backlog: usize, tubes: usize, watch: bool) -> (Engine, ConnId, Bytes) {
    let mut e = Engine::new();
    let mut out = Effects::default();
    e.apply(0, Input::Connect, &mut out);
    let Output::Conn(c) = out.output else {
        panic!("connect")
    };
    let body = Bytes::from(vec![b'x'; 100]);
    for i in 0..tubes {
        let name = format!("tube-{i}");
        cmd(&mut e, c, Command::Use(name.clone()), &mut out);
        put(&mut e, c, &body, &mut out);
        if watch {
            cmd(&mut e, c, Command::Watch(name), &mut out);
        }
    }
    cmd(&mut e, c, Command::Use("default".into()), &mut out);
    for _ in 0..backlog {
        put(&mut e, c, &body, &mut out);
    }
    (e, c, body)
}

fn hot(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    for (label, backlog, tubes, watch) in [
        ("empty", 0, 0, false),
        ("1M ready", 1_000_000, 0, false),
        ("10k tubes", 0, 10_000, false),
        // A reserve registers the connection with each tube it watches: linear in the
        // watch list (as in beanstalkd), which this case shows.
        ("watching 100 tubes", 0, 100, true),
    ] {
        let (mut e, conn, body) = engine(backlog, tubes, watch);
        let mut out = Effects::default();
        g.bench_function(format!("put+delete/{label}"), |b| {
            b.iter(|| {
                let id = put(&mut e, conn, &body, &mut out);
                delete(&mut e, conn, black_box(id), &mut out);
            })
        });
        // The job reserved is the oldest at the highest priority, so with a backlog this
        // takes a backlog job and puts a new one behind it.
        g.bench_function(format!("put+reserve+delete/{label}"), |b| {
            b.iter(|| {
                put(&mut e, conn, &body, &mut out);
                let id = reserve(&mut e, conn, &mut out);
                delete(&mut e, conn, black_box(id), &mut out);
            })
        });
        put(&mut e, conn, &body, &mut out);
        g.bench_function(format!("reserve+release/{label}"), |b| {
            b.iter(|| {
                let id = reserve(&mut e, conn, &mut out);
                let o = cmd(
                    &mut e,
                    conn,
                    Command::Release {
                        id,
                        pri: 1024,
                        delay: 0,
                    },
                    &mut out,
                );
                assert_eq!(o, Output::Reply(Reply::Released));
            })
        });
    }
    g.finish();
}

/// Deleting one of a connection's many reservations (beanstalkd scans them all).
fn reservations(c: &mut Criterion) {
    let (mut e, conn, body) = engine(0, 0, false);
    let mut out = Effects::default();
    for _ in 0..100_000 {
        put(&mut e, conn, &body, &mut out);
        reserve(&mut e, conn, &mut out);
    }
    c.bench_function("engine/put+reserve+delete/100k reserved", |b| {
        b.iter(|| {
            put(&mut e, conn, &body, &mut out);
            let id = reserve(&mut e, conn, &mut out);
            delete(&mut e, conn, black_box(id), &mut out);
        })
    });
}

/// What a /metrics scrape asks of the engine with 1M ready jobs (one call per scrape).
fn scrape(c: &mut Criterion) {
    let (e, _, _) = engine(1_000_000, 0, false);
    c.bench_function("engine/tube_metrics/1M ready", |b| {
        b.iter(|| black_box(e.tube_metrics(black_box(1))))
    });
}

criterion_group!(benches, hot, reservations, scrape);
criterion_main!(benches);
