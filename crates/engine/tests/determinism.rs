//! The engine is a deterministic state machine: a recorded sequence of inputs, applied to
//! two fresh engines, gives equal effects at every step and equal state (canonical dumps).
//! The inputs cover every command, puts admitted and applied, timers, disconnects with
//! reservations and waits, and id blocks; they are generated from a seeded generator and
//! recorded first, then replayed.

use bytes::Bytes;
use sprout_engine::{ConnId, Effects, Engine, Input, Output, SECOND};
use sprout_protocol::command::ListState;
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Backoff, Command, Exhaust, PolicySet, Reply};

/// xorshift64*: no rand dependency, and the same numbers everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const TUBES: [&str; 4] = ["default", "a", "b", "c"];

fn engine() -> Engine {
    let mut e = Engine::new();
    e.enable_journal();
    e
}

/// One of sprout's own commands (flush, batches, policies, moves, priorities, listings).
fn ext_command(r: &mut Rng, id: u64, tube: String) -> Command {
    match r.below(8) {
        0 => Command::FlushTube(tube),
        1 => Command::ReserveBatch {
            max: 1 + r.below(3) as u32,
            timeout: r.below(2) as u32,
        },
        2 => Command::ListJobs {
            tube,
            state: *r.pick(&[ListState::Ready, ListState::Buried, ListState::Reserved]),
            after: 0,
            limit: 5,
        },
        3 => Command::Reprioritize {
            id,
            pri: r.below(2000) as u32,
        },
        4 => Command::MoveJob { id, tube },
        5 => Command::TubePolicy {
            tube,
            set: Some(PolicySet::MaxReserves(r.below(3) as u32)),
        },
        6 => Command::TubePolicy {
            tube,
            set: Some(
                r.pick(&[
                    PolicySet::RetryBackoff(Backoff::Fixed(1)),
                    PolicySet::MaxReady(3),
                ])
                .clone(),
            ),
        },
        _ => Command::TubePolicy {
            tube,
            set: Some(PolicySet::OnExhaust(Exhaust::Tube("c".into()))),
        },
    }
}

/// A random command for connection `c`; ids around the ones handed out so far; with
/// `ext`, sprout's own commands too.
fn command(r: &mut Rng, next_id: u64, ext: bool) -> Command {
    let id = r.below(next_id + 2);
    let tube = r.pick(&TUBES).to_string();
    if ext && r.below(5) == 0 {
        return ext_command(r, id, tube);
    }
    match r.below(24) {
        0..=2 => Command::ReserveWithTimeout(r.below(3) as u32),
        3 => Command::Reserve,
        4 => Command::ReserveJob(id),
        5..=7 => Command::Delete(id),
        8 | 9 => Command::Release {
            id,
            pri: r.below(3000) as u32,
            delay: r.below(3) as u32,
        },
        10 => Command::Bury {
            id,
            pri: r.below(10) as u32,
        },
        11 => Command::Touch(id),
        12 => Command::Use(tube),
        13 => Command::Watch(tube),
        14 => Command::Ignore(tube),
        15 => Command::Peek(id),
        16 => r
            .pick(&[
                Command::PeekReady,
                Command::PeekDelayed,
                Command::PeekBuried,
            ])
            .clone(),
        17 => Command::Kick(r.below(4) as u32),
        18 => Command::KickJob(id),
        19 => Command::StatsJob(id),
        20 => Command::StatsTube(tube),
        21 => r
            .pick(&[
                Command::Stats,
                Command::ListTubes,
                Command::ListTubeUsed,
                Command::ListTubesWatched,
            ])
            .clone(),
        _ => Command::PauseTube {
            tube,
            delay: r.below(3) as u32,
        },
    }
}

/// Records `n` inputs by driving engine `e` (whose state decides which inputs make sense:
/// only live connections act, a connection waiting in reserve only waits or leaves).
fn record(seed: u64, n: usize, e: &mut Engine) -> Vec<(u64, Input)> {
    record_with(seed, n, e, false)
}

/// `record`, with sprout's own commands (and `put-unique`) among the inputs if `ext`.
fn record_with(seed: u64, n: usize, e: &mut Engine, ext: bool) -> Vec<(u64, Input)> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut now = 1_000 * SECOND;
    let mut conns: Vec<ConnId> = Vec::new();
    let mut waiting: Vec<ConnId> = Vec::new();
    let mut next_id = 1;
    let mut fx = Effects::default();
    let mut inputs = Vec::new();
    let step = |inputs: &mut Vec<(u64, Input)>,
                now: u64,
                input: Input,
                e: &mut Engine,
                fx: &mut Effects| {
        inputs.push((now, input.clone()));
        e.apply(now, input, fx);
    };
    while inputs.len() < n {
        let idle: Vec<ConnId> = conns
            .iter()
            .copied()
            .filter(|c| !waiting.contains(c))
            .collect();
        let k = r.below(100);
        if conns.len() < 2 || k < 4 {
            step(&mut inputs, now, Input::Connect, e, &mut fx);
            if let Output::Conn(c) = fx.output {
                conns.push(c);
            }
        } else if k < 7 {
            let c = *r.pick(&conns);
            step(&mut inputs, now, Input::Disconnect(c), e, &mut fx);
            conns.retain(|&x| x != c);
            waiting.retain(|&x| x != c);
        } else if k < 30 && !idle.is_empty() {
            // A put: header, then (usually) the body, admitted and applied.
            let c = *r.pick(&idle);
            step(&mut inputs, now, Input::PutHeader(c), e, &mut fx);
            let Output::Job(id) = fx.output else {
                panic!("put header: {:?}", fx.output)
            };
            next_id = id + 1;
            let h = PutHeader {
                pri: r.below(2000) as u32,
                delay: if r.below(5) == 0 {
                    1 + r.below(3) as u32
                } else {
                    0
                },
                ttr: 1 + r.below(3) as u32,
                bytes: 0,
            };
            let body = Bytes::from(format!("job {id} {}", r.next()));
            if r.below(10) == 0 {
                step(&mut inputs, now, Input::CountPut, e, &mut fx);
            } else if let Ok(p) = {
                let key = (ext && r.below(3) == 0).then(|| format!("k{}", r.below(8)));
                e.put_admit_key(c, id, h, body, key.as_deref(), now)
            } {
                step(&mut inputs, now, Input::Put(p), e, &mut fx);
            }
        } else if k < 33 && !waiting.is_empty() {
            let c = *r.pick(&waiting);
            step(&mut inputs, now, Input::CancelWait(c), e, &mut fx);
        } else if k < 45 {
            now += r.below(1500) * SECOND / 1000;
            step(&mut inputs, now, Input::Tick, e, &mut fx);
        } else if k < 46 {
            step(&mut inputs, now, Input::CountPauseTube, e, &mut fx);
        } else if !idle.is_empty() {
            let c = *r.pick(&idle);
            step(
                &mut inputs,
                now,
                Input::Command(c, command(&mut r, next_id, ext)),
                e,
                &mut fx,
            );
            if fx.output == Output::Wait {
                waiting.push(c);
            }
        }
        // Replies delivered end those connections' waits.
        for d in &fx.deliveries {
            waiting.retain(|&x| x != d.conn);
        }
        waiting.retain(|&c| e.is_waiting(c));
        if inputs.len() % 16 == 0 {
            if let Err(m) = e.check_invariants() {
                panic!("seed {seed}, input {}: {m}", inputs.len());
            }
        }
    }
    step(&mut inputs, now, Input::CloseIds, e, &mut fx);
    inputs
}

#[test]
fn same_inputs_same_effects_and_state() {
    // What the inputs exercised, so that the test cannot pass by doing little.
    let (mut reserved, mut delivered, mut deleted, mut logged) = (0, 0, 0, 0);
    for seed in 1..=12 {
        let mut a = engine();
        let inputs = record(seed, 2500, &mut a);
        // Replay on two fresh engines, step by step.
        let (mut b, mut c) = (engine(), engine());
        let (mut fb, mut fc) = (Effects::default(), Effects::default());
        for (i, (now, input)) in inputs.iter().enumerate() {
            b.apply(*now, input.clone(), &mut fb);
            c.apply(*now, input.clone(), &mut fc);
            assert_eq!(
                fb, fc,
                "seed {seed}: effects differ at input {i}: {input:?}"
            );
            match &fb.output {
                Output::Reply(Reply::Reserved { .. }) => reserved += 1,
                Output::Reply(Reply::Deleted) => deleted += 1,
                _ => {}
            }
            delivered += fb.deliveries.len();
            logged += fb.journal.len();
            if i % 500 == 0 {
                assert_eq!(
                    b.dump(),
                    c.dump(),
                    "seed {seed}: state differs after input {i}"
                );
            }
        }
        assert_eq!(b.dump(), c.dump(), "seed {seed}: final state differs");
        // The recording engine went through the same inputs too.
        assert_eq!(
            a.dump(),
            b.dump(),
            "seed {seed}: the recording engine differs"
        );
    }
    assert!(
        reserved > 500 && delivered > 100 && deleted > 200 && logged > 5000,
        "too little exercised: {reserved} reserved, {delivered} delivered, {deleted} \
         deleted, {logged} changes logged"
    );
}

/// The dump is a real comparison: it sees a difference in a job's body, a connection's
/// watch list, and a counter.
#[test]
fn dump_sees_differences() {
    let mut fx = Effects::default();
    let run = |body: &str, watch: &str, stats: bool| {
        let mut e = engine();
        let mut fx = Effects::default();
        e.apply(SECOND, Input::Connect, &mut fx);
        let Output::Conn(c) = fx.output else { panic!() };
        e.apply(SECOND, Input::PutHeader(c), &mut fx);
        let Output::Job(id) = fx.output else { panic!() };
        let h = PutHeader {
            pri: 1,
            delay: 0,
            ttr: 5,
            bytes: 0,
        };
        let p = e
            .put_admit(c, id, h, Bytes::from(body.to_string()), SECOND)
            .unwrap();
        e.apply(SECOND, Input::Put(p), &mut fx);
        e.apply(
            SECOND,
            Input::Command(c, Command::Watch(watch.into())),
            &mut fx,
        );
        if stats {
            e.apply(SECOND, Input::Command(c, Command::Stats), &mut fx);
        }
        e.dump()
    };
    let base = run("x", "a", false);
    assert_eq!(base, run("x", "a", false));
    assert_ne!(base, run("y", "a", false));
    assert_ne!(base, run("x", "b", false));
    assert_ne!(base, run("x", "a", true));
    fx.clear();
}

/// Applies `inputs` to `e`, comparing each step's effects with `other`'s if given.
fn replay(e: &mut Engine, mut other: Option<&mut Engine>, inputs: &[(u64, Input)], what: &str) {
    let (mut fa, mut fb) = (Effects::default(), Effects::default());
    for (i, (now, input)) in inputs.iter().enumerate() {
        e.apply(*now, input.clone(), &mut fa);
        if let Some(o) = other.as_deref_mut() {
            o.apply(*now, input.clone(), &mut fb);
            assert_eq!(fa, fb, "{what}: effects differ at input {i}: {input:?}");
        }
    }
}

/// Snapshot and restore: an engine restored from another's snapshot, half-way through a
/// run, holds the same state (dumps equal) and answers the rest of the inputs exactly as
/// the original does, with the same stats at the end; and the snapshot is deterministic
/// (equal engines give equal bytes).
fn snapshot_round_trip(seed: u64, n: usize, cut: usize) -> (usize, usize) {
    let mut rec = engine();
    let inputs = record_with(seed, n, &mut rec, true);
    let cut = cut.min(inputs.len());
    let mut a = engine();
    replay(&mut a, None, &inputs[..cut], "prefix");
    let bytes = a.snapshot();
    let mut b = engine();
    b.restore_snapshot(&bytes).unwrap();
    assert_eq!(
        a.dump(),
        b.dump(),
        "seed {seed}: state differs after restore at {cut}"
    );
    assert_eq!(
        bytes,
        b.snapshot(),
        "seed {seed}: the restored engine's snapshot differs"
    );
    b.check_invariants().unwrap();
    replay(
        &mut a,
        Some(&mut b),
        &inputs[cut..],
        &format!("seed {seed} cut {cut}"),
    );
    assert_eq!(a.dump(), b.dump(), "seed {seed}: final state differs");
    assert_eq!(a.stats(), b.stats(), "seed {seed}: stats differ");
    (a.stats().total_jobs as usize, bytes.len())
}

#[test]
fn a_restored_snapshot_behaves_as_the_original() {
    let mut jobs = 0;
    for seed in 1..=8 {
        jobs += snapshot_round_trip(seed, 3000, 1500).0;
    }
    assert!(jobs > 1500, "too few jobs put: {jobs}");
}

#[test]
fn a_malformed_snapshot_is_refused_and_changes_nothing() {
    let mut a = engine();
    record_with(3, 500, &mut a, true);
    let bytes = a.snapshot();
    let mut b = engine();
    let before = b.dump();
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        assert!(b.restore_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        assert_eq!(b.dump(), before);
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(b.restore_snapshot(&longer).is_err());
    let mut other = bytes;
    other[0] = 99;
    assert!(b.restore_snapshot(&other).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn snapshot_at_any_point_round_trips(seed in 1u64..1_000_000, n in 10usize..1200, cut in 0usize..1200) {
        snapshot_round_trip(seed, n, cut);
    }
}

/// What a snapshot of a large engine costs (the time the cluster's applying pauses for):
/// `cargo test --release -p sprout-engine --test determinism snapshot_cost -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn snapshot_cost() {
    let mut e = Engine::new();
    let mut fx = Effects::default();
    let now = 1_000 * SECOND;
    let mut conns = Vec::new();
    for _ in 0..100 {
        e.apply(now, Input::Connect, &mut fx);
        let Output::Conn(c) = fx.output else { panic!() };
        conns.push(c);
    }
    let n = 100_000;
    for k in 0..n {
        let c = conns[k % conns.len()];
        let tube = format!("t{}", k % 10);
        e.apply(now, Input::Command(c, Command::Use(tube)), &mut fx);
        e.apply(now, Input::PutHeader(c), &mut fx);
        let Output::Job(id) = fx.output else { panic!() };
        let h = PutHeader {
            pri: (k % 1000) as u32,
            delay: (k % 7 == 0) as u32 * 60,
            ttr: 60,
            bytes: 0,
        };
        let body = Bytes::from(format!("{k:08} {}", "b".repeat(90)));
        let p = e.put_admit(c, id, h, body, now).unwrap();
        e.apply(now, Input::Put(p), &mut fx);
    }
    for &c in &conns {
        e.apply(now, Input::Command(c, Command::Watch("t1".into())), &mut fx);
        e.apply(now, Input::Command(c, Command::Reserve), &mut fx);
    }
    let t = std::time::Instant::now();
    let bytes = e.snapshot();
    let took = t.elapsed();
    let t = std::time::Instant::now();
    let mut r = Engine::new();
    r.restore_snapshot(&bytes).unwrap();
    let restore = t.elapsed();
    assert_eq!(r.stats(), e.stats());
    eprintln!(
        "snapshot of {n} jobs (100-byte bodies): {} bytes, built in {took:?}, restored in \
         {restore:?}",
        bytes.len()
    );
}
