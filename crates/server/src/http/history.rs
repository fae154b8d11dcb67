//! The numbers behind the dashboard: once a second a task copies the server's and every
//! tube's numbers (the engine lock is held only for that copy, as for /metrics), derives
//! rates, and keeps the last hour in fixed-size rings: one for the server, one each for
//! up to [`TUBE_RINGS`] tubes. Their cost depends on the number of tubes, never on the
//! number of jobs. Pages and event streams read the latest copy, not the engine.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprout_engine::metrics::{Hist, BUCKETS};
use tokio::sync::watch;

use crate::metrics::Snapshot;
use crate::Shared;

/// Samples kept: one hour at one a second.
pub(crate) const SPAN: usize = 3600;
/// Tubes with a history of their own (the busiest when a slot frees up).
pub(crate) const TUBE_RINGS: usize = 32;

/// The server, or one tube, at one second (a tube has no `ops`; the server no quantiles
/// or age).
#[derive(Clone, Copy, Default)]
pub(crate) struct Point {
    pub(crate) t: u64,
    pub(crate) ready: u64,
    pub(crate) reserved: u64,
    pub(crate) delayed: u64,
    pub(crate) buried: u64,
    /// Commands, puts and deletes per second.
    pub(crate) ops: f64,
    pub(crate) puts: f64,
    pub(crate) deletes: f64,
    /// Queue wait of the jobs reserved in that second: p50 and p99 (bucket bounds), s.
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    /// The oldest ready job's age, s.
    pub(crate) oldest: f64,
}

/// A tube's row in the overview.
#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) name: Arc<str>,
    pub(crate) ready: u64,
    pub(crate) reserved: u64,
    pub(crate) delayed: u64,
    pub(crate) buried: u64,
    pub(crate) urgent: u64,
    pub(crate) waiting: u64,
    pub(crate) puts: f64,
    pub(crate) deletes: f64,
    pub(crate) oldest: f64,
    /// Seconds of pause left (0: not paused).
    pub(crate) paused: i64,
}

impl Row {
    pub(crate) fn jobs(&self) -> u64 {
        self.ready + self.reserved + self.delayed + self.buried
    }
}

/// The latest copy: the numbers of /metrics (without the tubes' histograms), every
/// tube's row by name, and the server's point.
pub(crate) struct Latest {
    pub(crate) snap: Snapshot,
    pub(crate) tubes: Vec<Row>,
    pub(crate) point: Point,
}

#[derive(Default)]
struct Rings {
    server: VecDeque<Point>,
    tubes: HashMap<Arc<str>, VecDeque<Point>>,
}

pub(crate) struct History {
    latest: watch::Receiver<Arc<Latest>>,
    rings: Arc<Mutex<Rings>>,
}

/// What the previous sample left for the next one's rates.
#[derive(Default)]
struct Prev {
    t: u64,
    ops: u64,
    puts: u64,
    deletes: u64,
    tubes: HashMap<Arc<str>, (u64, u64, Hist)>,
}

fn push<T>(ring: &mut VecDeque<T>, x: T) {
    if ring.len() == SPAN {
        ring.pop_front();
    }
    ring.push_back(x);
}

/// The upper bound of the bucket holding quantile `q` of the counts `b` (0 with none).
fn quantile(b: &[u64], q: f64) -> f64 {
    let n: u64 = b.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let want = (q * n as f64).ceil() as u64;
    let mut cum = 0;
    for (i, c) in b.iter().enumerate() {
        cum += c;
        if cum >= want {
            return BUCKETS[i];
        }
    }
    BUCKETS[BUCKETS.len() - 1]
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        now.saturating_sub(before) as f64 / secs
    }
}

impl History {
    /// Takes the first sample now and, if `run`, one every second after, in a task of
    /// its own.
    pub(crate) fn start(shared: Arc<Shared>, run: bool) -> History {
        let rings = Arc::new(Mutex::new(Rings::default()));
        let mut prev = Prev::default();
        let first = sample(&shared, &mut prev, &rings);
        let (tx, rx) = watch::channel(first);
        if !run {
            return History { latest: rx, rings };
        }
        let r = rings.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                if tx.send(sample(&shared, &mut prev, &r)).is_err() {
                    return;
                }
            }
        });
        History { latest: rx, rings }
    }

    pub(crate) fn latest(&self) -> Arc<Latest> {
        self.latest.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Latest>> {
        self.latest.clone()
    }

    /// The server's last hour, as JSON columns.
    pub(crate) fn server_json(&self) -> String {
        let r = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        columns(&r.server, SERVER)
    }

    /// A tube's last hour, as JSON columns; None if it has no ring.
    pub(crate) fn tube_json(&self, name: &str) -> Option<String> {
        let r = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        r.tubes.get(name).map(|ring| columns(ring, TUBE))
    }

    /// A tube's latest point, as JSON (`{}` if it has no ring).
    pub(crate) fn tube_point_json(&self, name: &str) -> String {
        let r = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        match r.tubes.get(name).and_then(|ring| ring.back()) {
            Some(p) => object(p, TUBE),
            None => "{}".into(),
        }
    }
}

type Col = (&'static str, fn(&Point) -> f64);

/// Every column a point has.
const COLS: [Col; 11] = [
    ("t", |p| p.t as f64),
    ("ready", |p| p.ready as f64),
    ("reserved", |p| p.reserved as f64),
    ("delayed", |p| p.delayed as f64),
    ("buried", |p| p.buried as f64),
    ("ops", |p| p.ops),
    ("puts", |p| p.puts),
    ("deletes", |p| p.deletes),
    ("p50", |p| p.p50),
    ("p99", |p| p.p99),
    ("oldest", |p| p.oldest),
];

/// The columns of the server's points, and of a tube's.
pub(crate) const SERVER: &[&str] = &[
    "t", "ready", "reserved", "delayed", "buried", "ops", "puts", "deletes",
];
const TUBE: &[&str] = &[
    "t", "ready", "reserved", "delayed", "buried", "puts", "deletes", "p50", "p99", "oldest",
];

fn cols<'a>(names: &'a [&str]) -> impl Iterator<Item = &'static Col> + 'a {
    COLS.iter().filter(move |c| names.contains(&c.0))
}

/// A number in JSON: integers without a fraction, others with at most 3 decimals.
pub(crate) fn num(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push('0');
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{}", (v * 1000.0).round() / 1000.0);
    }
}

/// Points sent with a page at most: a chart is 600 units wide, so a full hour goes at one
/// point in six (the last always included); the event stream then adds one a second.
const SENT: usize = 600;

fn columns(ring: &VecDeque<Point>, names: &[&str]) -> String {
    let step = ring.len().div_ceil(SENT).max(1);
    let first = (ring.len() + step - 1) % step;
    let mut out = String::with_capacity(SENT * names.len() * 6 + 64);
    out.push('{');
    for (i, (name, f)) in cols(names).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":[");
        for (j, p) in ring.iter().skip(first).step_by(step).enumerate() {
            if j > 0 {
                out.push(',');
            }
            num(&mut out, f(p));
        }
        out.push(']');
    }
    out.push('}');
    out
}

pub(crate) fn object(p: &Point, names: &[&str]) -> String {
    let mut out = String::from("{");
    for (i, (name, f)) in cols(names).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":");
        num(&mut out, f(p));
    }
    out.push('}');
    out
}

/// One sample: copies the numbers under the engine lock (`metrics::snapshot`), then,
/// without it, derives rates and updates the rings.
fn sample(shared: &Shared, prev: &mut Prev, rings: &Mutex<Rings>) -> Arc<Latest> {
    let t0 = std::time::Instant::now();
    let mut snap = crate::metrics::snapshot(shared);
    let copied = t0.elapsed();
    let tubes = std::mem::take(&mut snap.tubes);
    let t = shared.clock.now() / sprout_engine::SECOND;
    let secs = if prev.t == 0 {
        0.0
    } else {
        t.saturating_sub(prev.t).max(1) as f64
    };
    let v = &snap.server;
    let ops: u64 = crate::metrics::cmd_counts(&v.cmd).iter().map(|c| c.1).sum();
    let point = Point {
        t,
        ready: v.ready,
        reserved: v.reserved,
        delayed: v.delayed,
        buried: v.buried,
        ops: rate(ops, prev.ops, secs),
        puts: rate(v.total_jobs, prev.puts, secs),
        deletes: rate(v.cmd.delete, prev.deletes, secs),
        ..Point::default()
    };
    (prev.t, prev.ops, prev.puts, prev.deletes) = (t, ops, v.total_jobs, v.cmd.delete);

    let mut rows = Vec::with_capacity(tubes.len());
    let mut next = HashMap::with_capacity(tubes.len());
    let mut r = rings.lock().unwrap_or_else(|p| p.into_inner());
    // Tubes gone lose their history; free slots go to the busiest tubes without one
    // (their history starts with this sample).
    r.tubes
        .retain(|name, _| tubes.iter().any(|m| m.stats.name == *name));
    if r.tubes.len() < TUBE_RINGS {
        let jobs =
            |s: &sprout_protocol::reply::TubeStats| s.ready + s.reserved + s.delayed + s.buried;
        let mut want: Vec<&sprout_protocol::reply::TubeStats> = tubes
            .iter()
            .map(|m| &m.stats)
            .filter(|s| !r.tubes.contains_key(&s.name))
            .collect();
        want.sort_by(|a, b| jobs(b).cmp(&jobs(a)).then(a.name.cmp(&b.name)));
        let free = TUBE_RINGS - r.tubes.len();
        for s in want.into_iter().take(free) {
            r.tubes
                .insert(s.name.clone(), VecDeque::with_capacity(SPAN));
        }
    }
    for m in &tubes {
        let s = &m.stats;
        let name = s.name.clone();
        let (puts0, dels0, hist0) = prev.tubes.remove(&name).unwrap_or((
            s.total_jobs,
            s.cmd_delete,
            m.counters.queue_wait.clone(),
        ));
        let row = Row {
            name: name.clone(),
            ready: s.ready,
            reserved: s.reserved,
            delayed: s.delayed,
            buried: s.buried,
            urgent: s.urgent,
            waiting: s.waiting,
            puts: rate(s.total_jobs, puts0, secs),
            deletes: rate(s.cmd_delete, dels0, secs),
            oldest: m.oldest_ready_age,
            paused: if s.pause > 0 { s.pause_time_left } else { 0 },
        };
        if let Some(ring) = r.tubes.get_mut(&name) {
            let mut d = [0u64; BUCKETS.len()];
            for (i, x) in d.iter_mut().enumerate() {
                *x = m.counters.queue_wait.buckets[i].saturating_sub(hist0.buckets[i]);
            }
            push(
                ring,
                Point {
                    t,
                    ready: s.ready,
                    reserved: s.reserved,
                    delayed: s.delayed,
                    buried: s.buried,
                    ops: 0.0,
                    puts: row.puts,
                    deletes: row.deletes,
                    p50: quantile(&d, 0.5),
                    p99: quantile(&d, 0.99),
                    oldest: m.oldest_ready_age,
                },
            );
        }
        next.insert(
            name,
            (s.total_jobs, s.cmd_delete, m.counters.queue_wait.clone()),
        );
        rows.push(row);
    }
    prev.tubes = next;
    push(&mut r.server, point);
    drop(r);
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    tracing::debug!(
        "dashboard sample: {} tubes, copied in {copied:?} (engine locked), done in {:?}",
        rows.len(),
        t0.elapsed()
    );
    Arc::new(Latest {
        snap,
        tubes: rows,
        point,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_an_hour_and_quantiles_take_bucket_bounds() {
        let mut ring = VecDeque::new();
        for i in 0..SPAN + 10 {
            push(&mut ring, i);
        }
        assert_eq!(ring.len(), SPAN);
        assert_eq!(ring.front(), Some(&10));
        let mut b = [0u64; BUCKETS.len()];
        b[0] = 98;
        b[5] = 2;
        assert_eq!(quantile(&b, 0.5), 0.001);
        assert_eq!(quantile(&b, 0.99), 0.1);
        assert_eq!(quantile(&[0; BUCKETS.len()], 0.5), 0.0);
    }

    #[test]
    fn a_full_hour_is_sent_at_one_point_in_six_ending_with_the_last() {
        let ring: VecDeque<Point> = (0..SPAN as u64)
            .map(|t| Point {
                t,
                ..Point::default()
            })
            .collect();
        let json = columns(&ring, &["t"]);
        let ts: Vec<u64> = json
            .trim_start_matches("{\"t\":[")
            .trim_end_matches("]}")
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(ts.len(), SENT);
        assert_eq!(ts.last(), Some(&(SPAN as u64 - 1)));
        assert_eq!(ts[1] - ts[0], 6);
        let short: VecDeque<Point> = ring.iter().take(5).copied().collect();
        assert_eq!(columns(&short, &["t"]), "{\"t\":[0,1,2,3,4]}");
    }
}
