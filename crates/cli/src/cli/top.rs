//! `sprout top`: a live view of the server and its tubes, refreshed every interval, with
//! rates computed from the deltas of the servers' cumulative counters.
//!
//! Rates: server ops/s is the sum of every `cmd-*` counter's delta; put/s, reserve/s
//! (`cmd-reserve` + `cmd-reserve-with-timeout`) and delete/s are server-wide; per tube,
//! put/s is the delta of its `total-jobs` and del/s that of its `cmd-delete` (beanstalkd
//! keeps no per-tube reserve counter).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use super::client::{Client, Error, Result};
use super::text::{compact, duration, rate};
use super::tubes::{self, SortKey, TubeRow};
use super::yaml::Stats;
use crate::conn::Target;

/// One poll of the server: `stats` and every tube's `stats-tube`.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) server: Stats,
    pub tubes: Vec<TubeRow>,
    /// Commands this sample sent after its `stats` (list-tubes, stats-tube...), which
    /// the next sample's counters include and its ops/s leaves out.
    pub(crate) own_cmds: u64,
}

impl Sample {
    pub(crate) fn take(c: &mut Client) -> Result<Sample> {
        let server = c.stats("stats")?;
        let (tubes, own_cmds) = tubes::fetch_counted(c)?;
        Ok(Sample {
            at: Instant::now(),
            server,
            tubes,
            own_cmds,
        })
    }
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rates {
    pub ops: f64,
    pub(crate) puts: f64,
    pub(crate) reserves: f64,
    pub(crate) deletes: f64,
    /// Tube name → (put/s, delete/s), for tubes present in both samples.
    pub tubes: HashMap<String, (f64, f64)>,
}

/// Rates from `prev` to `cur`. Counters that went backwards (a server restart) count as
/// zero. Ops/s leaves out `top`'s own polling: `prev`'s commands after its `stats`, and
/// `cur`'s `stats` (the server counts a `stats` before answering it).
pub(crate) fn rates(prev: &Sample, cur: &Sample) -> Rates {
    let secs = cur.at.saturating_duration_since(prev.at).as_secs_f64();
    if secs <= 0.0 {
        return Rates::default();
    }
    let delta = |key: &str| cur.server.num(key).saturating_sub(prev.server.num(key)) as f64;
    let ops: f64 = cur
        .server
        .iter()
        .filter(|(k, _)| k.starts_with("cmd-"))
        .map(|(k, _)| delta(k))
        .sum();
    let before: HashMap<&str, &TubeRow> = prev.tubes.iter().map(|t| (t.name.as_str(), t)).collect();
    let tubes = cur
        .tubes
        .iter()
        .filter_map(|t| {
            let p = before.get(t.name.as_str())?;
            Some((
                t.name.clone(),
                (
                    t.total.saturating_sub(p.total) as f64 / secs,
                    t.deletes.saturating_sub(p.deletes) as f64 / secs,
                ),
            ))
        })
        .collect();
    let ops = (ops - (prev.own_cmds + 1) as f64).max(0.0);
    Rates {
        ops: ops / secs,
        puts: delta("cmd-put") / secs,
        reserves: (delta("cmd-reserve") + delta("cmd-reserve-with-timeout")) / secs,
        deletes: delta("cmd-delete") / secs,
        tubes,
    }
}

/// Everything one frame shows.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) addr: String,
    pub(crate) interval: Duration,
    pub(crate) sample: Option<Sample>,
    pub(crate) rates: Option<Rates>,
    /// The last polling error, shown until a poll succeeds again.
    pub(crate) error: Option<String>,
    pub(crate) sort: SortKey,
    /// Tube rows scrolled past.
    pub(crate) scroll: usize,
    /// A poll failed since `sample` was taken: the next sample gets no rates (they would
    /// span the outage, or another server's counters).
    pub(crate) stale: bool,
}

impl View {
    pub(crate) fn new(addr: &str, interval: Duration) -> View {
        View {
            addr: addr.to_string(),
            interval,
            sample: None,
            rates: None,
            error: None,
            sort: SortKey::Name,
            scroll: 0,
            stale: false,
        }
    }

    /// Takes a new sample in; rates are computed against the previous one.
    pub(crate) fn update(&mut self, mut s: Sample) {
        tubes::sort(&mut s.tubes, self.sort, false);
        self.rates = match &self.sample {
            Some(p) if !self.stale => Some(rates(p, &s)),
            _ => None,
        };
        self.sample = Some(s);
        self.error = None;
        self.stale = false;
    }

    fn resort(&mut self) {
        let key = self.sort;
        if let Some(s) = &mut self.sample {
            tubes::sort(&mut s.tubes, key, false);
        }
    }

    fn next_sort(&mut self) {
        let all = SortKey::ALL;
        let i = all.iter().position(|&k| k == self.sort).unwrap_or(0);
        self.sort = all[(i + 1) % all.len()];
        self.resort();
    }

    fn tube_count(&self) -> usize {
        self.sample.as_ref().map_or(0, |s| s.tubes.len())
    }
}

const HEADER_LINES: u16 = 4;

fn label(s: &str) -> Span<'_> {
    Span::styled(s, Style::default().fg(Color::Cyan))
}

fn value(s: String) -> Span<'static> {
    Span::styled(s, Style::default().add_modifier(Modifier::BOLD))
}

fn header(v: &View) -> Vec<Line<'static>> {
    let mut title = vec![
        Span::styled("sprout top", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}", v.addr)),
    ];
    let Some(s) = &v.sample else {
        title.push(Span::raw("  connecting..."));
        return vec![Line::from(title)];
    };
    let sv = &s.server;
    if let Some(ver) = sv.get("version") {
        title.push(Span::raw(format!("  version {ver}")));
    }
    title.push(Span::raw(format!(
        "  up {}  every {:.1}s",
        duration(sv.num("uptime")),
        v.interval.as_secs_f64()
    )));
    let r = |f: fn(&Rates) -> f64| v.rates.as_ref().map_or("-".to_string(), |x| rate(f(x)));
    let n = |k: &str| compact(sv.num(k) as f64);
    vec![
        Line::from(title),
        Line::from(vec![
            label("ops/s "),
            value(r(|x| x.ops)),
            label("   put/s "),
            value(r(|x| x.puts)),
            label("   reserve/s "),
            value(r(|x| x.reserves)),
            label("   delete/s "),
            value(r(|x| x.deletes)),
        ]),
        Line::from(vec![
            label("jobs  ready "),
            value(n("current-jobs-ready")),
            label("  reserved "),
            value(n("current-jobs-reserved")),
            label("  delayed "),
            value(n("current-jobs-delayed")),
            label("  buried "),
            value(n("current-jobs-buried")),
            label("  urgent "),
            value(n("current-jobs-urgent")),
        ]),
        Line::from(vec![
            label("conns "),
            value(n("current-connections")),
            label("  producers "),
            value(n("current-producers")),
            label("  workers "),
            value(n("current-workers")),
            label("  waiting "),
            value(n("current-waiting")),
            label("  tubes "),
            value(n("current-tubes")),
        ]),
    ]
}

fn tube_table(v: &View, area: Rect) -> Table<'static> {
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let head = Row::new(
        [
            "TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "WAITING", "WATCHING", "PUT/s",
            "DEL/s",
        ]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                Cell::from(h)
            } else {
                Cell::from(Line::from(h).right_aligned())
            }
        }),
    )
    .style(Style::default().add_modifier(Modifier::REVERSED));
    let visible = area.height.saturating_sub(1) as usize;
    let rows: Vec<Row> = v
        .sample
        .iter()
        .flat_map(|s| s.tubes.iter())
        .skip(v.scroll)
        .take(visible)
        .map(|t| {
            let (p, d) = v
                .rates
                .as_ref()
                .and_then(|r| r.tubes.get(&t.name))
                .map_or(("-".to_string(), "-".to_string()), |&(p, d)| {
                    (rate(p), rate(d))
                });
            let c = |n: u64| right(compact(n as f64));
            let mut name = Cell::from(t.name.clone());
            if t.pause_left > 0 {
                name = Cell::from(format!("{} (paused)", t.name));
            }
            Row::new(vec![
                name,
                c(t.ready),
                c(t.reserved),
                c(t.delayed),
                c(t.buried),
                c(t.waiting),
                c(t.watching),
                right(p),
                right(d),
            ])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Min(8),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
        ],
    )
    .header(head)
    .column_spacing(1)
}

fn footer(v: &View) -> Line<'static> {
    if let Some(e) = &v.error {
        // The error matters more than the key help; it goes first so it is not cut off.
        return Line::from(vec![
            Span::styled(
                format!("error: {e}"),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw("  (retrying; q quits)"),
        ]);
    }
    let mut spans = vec![
        Span::raw(" q").bold(),
        Span::raw(" quit  "),
        Span::raw("s").bold(),
        Span::raw(format!(" sort: {}  ", v.sort.label())),
        Span::raw("↑↓").bold(),
        Span::raw(" scroll  "),
    ];
    let n = v.tube_count();
    if n > 0 {
        spans.push(Span::raw(if v.scroll > 0 {
            format!("from tube {} of {n}", v.scroll + 1)
        } else {
            super::text::count(n as u64, "tube")
        }));
    }
    Line::from(spans)
}

/// Draws one frame.
pub(crate) fn render(f: &mut Frame, v: &View) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(HEADER_LINES),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header(v)), head);
    f.render_widget(tube_table(v, body), body);
    f.render_widget(Paragraph::new(footer(v)), foot);
}

/// What a key press asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Redraw,
    None,
}

fn on_key(v: &mut View, code: KeyCode, mods: KeyModifiers, page: usize) -> Action {
    let max_scroll = v.tube_count().saturating_sub(1);
    match code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('s') => {
            v.next_sort();
            Action::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            v.scroll = (v.scroll + 1).min(max_scroll);
            Action::Redraw
        }
        KeyCode::Up | KeyCode::Char('k') => {
            v.scroll = v.scroll.saturating_sub(1);
            Action::Redraw
        }
        KeyCode::PageDown => {
            v.scroll = (v.scroll + page).min(max_scroll);
            Action::Redraw
        }
        KeyCode::PageUp => {
            v.scroll = v.scroll.saturating_sub(page);
            Action::Redraw
        }
        KeyCode::Home => {
            v.scroll = 0;
            Action::Redraw
        }
        _ => Action::None,
    }
}

fn term_err(e: std::io::Error) -> Error {
    Error::Local(format!("terminal: {e}"))
}

fn event_loop(
    term: &mut DefaultTerminal,
    v: &mut View,
    t: &Target,
    mut conn: Option<Client>,
) -> Result<()> {
    let mut next = Instant::now() + v.interval;
    term.draw(|f| render(f, v)).map_err(term_err)?;
    loop {
        let now = Instant::now();
        if now >= next {
            // Poll; on failure keep the last sample on screen, show the error and
            // reconnect at the next tick.
            let res = match conn.as_mut() {
                Some(c) => Sample::take(c),
                None => Client::connect(t).and_then(|mut c| {
                    let s = Sample::take(&mut c);
                    conn = Some(c);
                    s
                }),
            };
            match res {
                Ok(s) => v.update(s),
                Err(e) => {
                    if !matches!(e, Error::Server { .. }) {
                        conn = None;
                    }
                    v.rates = None;
                    v.stale = true;
                    v.error = Some(e.to_string());
                }
            }
            next = Instant::now() + v.interval;
            term.draw(|f| render(f, v)).map_err(term_err)?;
            continue;
        }
        if event::poll(next - now).map_err(term_err)? {
            match event::read().map_err(term_err)? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let page = term
                        .size()
                        .map(|s| s.height.saturating_sub(HEADER_LINES + 2) as usize)
                        .unwrap_or(10)
                        .max(1);
                    match on_key(v, k.code, k.modifiers, page) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => {
                            term.draw(|f| render(f, v)).map_err(term_err)?;
                        }
                        Action::None => {}
                    }
                }
                Event::Resize(..) => {
                    term.draw(|f| render(f, v)).map_err(term_err)?;
                }
                _ => {}
            }
        }
    }
}

pub fn run(t: &Target, interval: Duration) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Local(
            "top needs a terminal (use `sprout tubes` or `sprout stats` in scripts)".into(),
        ));
    }
    // Connect and poll once before taking over the screen, so an unreachable server
    // or a bad reply is reported as plainly as by the other subcommands.
    let mut c = Client::connect(t)?;
    let first = Sample::take(&mut c)?;
    let mut v = View::new(&t.addr, interval);
    v.update(first);
    let mut term = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Undo whatever part of the set-up succeeded (raw mode, alternate screen).
            let _ = ratatui::try_restore();
            return Err(term_err(e));
        }
    };
    let res = event_loop(&mut term, &mut v, t, Some(c));
    let restored = ratatui::try_restore().map_err(term_err);
    res.and(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn sample(at: Instant, cmd_put: u64, tubes: &[(&str, u64, u64)]) -> Sample {
        let mut server = vec![
            ("cmd-put".to_string(), cmd_put.to_string()),
            ("cmd-reserve".to_string(), "10".to_string()),
            ("cmd-reserve-with-timeout".to_string(), "5".to_string()),
            ("cmd-delete".to_string(), "4".to_string()),
            ("current-jobs-ready".to_string(), "7".to_string()),
            ("current-waiting".to_string(), "2".to_string()),
            ("version".to_string(), "\"1.13\"".to_string()),
            ("uptime".to_string(), "3725".to_string()),
            ("total-jobs".to_string(), "999".to_string()),
        ];
        server.push(("current-tubes".into(), tubes.len().to_string()));
        Sample {
            at,
            server: Stats::from(server),
            tubes: tubes
                .iter()
                .map(|&(name, total, deletes)| TubeRow {
                    name: name.into(),
                    total,
                    deletes,
                    ready: total - deletes,
                    waiting: 1,
                    ..TubeRow::default()
                })
                .collect(),
            own_cmds: 0,
        }
    }

    #[test]
    fn rates_from_deltas() {
        let t0 = Instant::now();
        let a = sample(t0, 100, &[("default", 50, 10), ("gone", 5, 0)]);
        let b = sample(
            t0 + Duration::from_secs(2),
            140,
            &[("default", 70, 30), ("new", 3, 0)],
        );
        let r = rates(&a, &b);
        // Only cmd-put moved: 40 over 2 s (less 1 for cur's own `stats`). total-jobs is
        // not a cmd- counter.
        assert_eq!(r.ops, 19.5);
        assert_eq!(r.puts, 20.0);
        assert_eq!(r.reserves, 0.0);
        assert_eq!(r.tubes.get("default"), Some(&(10.0, 10.0)));
        assert_eq!(
            r.tubes.get("new"),
            None,
            "no rate before a tube's second sample"
        );
        // A restarted server's counters go backwards: no negative rates.
        let c = sample(t0 + Duration::from_secs(3), 1, &[("default", 1, 0)]);
        let r = rates(&b, &c);
        assert_eq!((r.ops, r.puts), (0.0, 0.0));
        assert_eq!(r.tubes.get("default"), Some(&(0.0, 0.0)));
    }

    fn screen(v: &View, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        t.draw(|f| render(f, v)).expect("draw");
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..h {
            for x in 0..w {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn renders_in_80x24() {
        let t0 = Instant::now();
        let mut v = View::new("127.0.0.1:11300", Duration::from_secs(1));
        let names: Vec<String> = (0..30).map(|i| format!("tube-{i:02}")).collect();
        let rows: Vec<(&str, u64, u64)> = names.iter().map(|n| (n.as_str(), 10, 2)).collect();
        v.update(sample(t0, 100, &rows));
        let first = screen(&v, 80, 24);
        assert!(first.contains("sprout top"), "{first}");
        assert!(first.contains("put/s -"), "no rate yet: {first}");
        v.update(sample(t0 + Duration::from_secs(1), 150, &rows));
        let s = screen(&v, 80, 24);
        for want in [
            "sprout top",
            "127.0.0.1:11300",
            "version 1.13",
            "up 1h02m",
            "ops/s 49",
            "put/s 50",
            "TUBE",
            "READY",
            "WATCHING",
            "PUT/s",
            "DEL/s",
            "tube-00",
            "tube-17",
            "q quit",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        // 24 lines: 4 header, 1 table header, 18 tubes, 1 footer.
        assert!(!s.contains("tube-18"), "{s}");
        // Scrolling shows later tubes.
        on_key(&mut v, KeyCode::PageDown, KeyModifiers::NONE, 18);
        let s = screen(&v, 80, 24);
        assert!(s.contains("tube-29") && !s.contains("tube-00"), "{s}");
        // Errors are shown in the footer.
        v.error = Some("connection to x failed: reset".into());
        assert!(screen(&v, 80, 24).contains("error: connection to x failed"));
        // Tiny terminals do not panic.
        screen(&v, 20, 5);
        screen(&v, 1, 1);
    }

    #[test]
    fn keys() {
        let mut v = View::new("a", Duration::from_secs(1));
        let none = KeyModifiers::NONE;
        assert_eq!(on_key(&mut v, KeyCode::Char('q'), none, 5), Action::Quit);
        assert_eq!(on_key(&mut v, KeyCode::Esc, none, 5), Action::Quit);
        assert_eq!(
            on_key(&mut v, KeyCode::Char('c'), KeyModifiers::CONTROL, 5),
            Action::Quit
        );
        assert_eq!(on_key(&mut v, KeyCode::Char('c'), none, 5), Action::None);
        assert_eq!(on_key(&mut v, KeyCode::Char('s'), none, 5), Action::Redraw);
        assert_eq!(v.sort, SortKey::Ready);
    }
}
