//! The dashboard's pages, event streams and actions. Pages are rendered on the server
//! (every value escaped); `assets/app.js` sorts and filters tables, draws the charts and
//! applies the event stream (one per page). Reads of jobs and every action go through
//! the protocol (`proto`), with the session's rights.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use super::auth::{self, Session};
use super::history::{self, Latest, Row};
use super::proto::{Proto, Reply};
use super::{Ctx, Dashboard, Web};

/// Rows of the overview's tube table at most (the busiest, when there are more).
pub(crate) const ROWS_MAX: usize = 500;
/// Jobs per page on a tube page: by default, and at most.
const PAGE: u32 = 100;
const PAGE_MAX: u32 = 1000;
/// Body bytes shown on a job page (the rest is downloaded).
const BODY_SHOWN: usize = 64 * 1024;
/// Characters of a body shown in a job list.
const PREVIEW: usize = 80;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

type Q = Query<HashMap<String, String>>;
type F = Form<HashMap<String, String>>;
type Resp = Response<Body>;
/// A response given instead of going on (boxed: results stay small).
pub(crate) struct Refused(Box<Resp>);

impl IntoResponse for Refused {
    fn into_response(self) -> Resp {
        *self.0
    }
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Refused {
        refuse(
            StatusCode::BAD_GATEWAY,
            &format!("protocol connection: {e}"),
        )
    }
}

/// What a handler answers.
type Answer = Result<Resp, Refused>;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(overview))
        .route("/events", get(overview_events))
        .route("/tube/{name}", get(tube))
        .route("/tube/{name}/events", get(tube_events))
        .route("/tube/{name}/{action}", post(tube_action))
        .route("/put", post(put_any))
        .route("/job/{id}", get(job))
        .route("/job/{id}/body", get(job_body))
        .route("/job/{id}/{action}", post(job_action))
        .route("/cluster", get(cluster))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/app.css", get(|| async { asset(CSS, "text/css") }))
        .route(
            "/assets/app.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Escapes text for HTML (element content and quoted attributes).
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A JSON string.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            // Kept out of JSON embedded in a page: no `</script>` can be formed.
            '<' => o.push_str("\\u003c"),
            '>' => o.push_str("\\u003e"),
            '&' => o.push_str("\\u0026"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A tube name the protocol accepts (beanstalkd's characters, at most 200 bytes):
/// anything else never reaches a command line.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b))
}

fn asset(body: &'static str, ctype: &'static str) -> Resp {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn status(code: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refuse(code: StatusCode, msg: &str) -> Refused {
    Refused(Box::new(status(code, msg)))
}

fn redirect(to: &str, cookie: Option<String>) -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The security headers of every page.
fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The page's session, or the response to give instead (the dashboard is off, or the
/// browser must log in).
fn enter(web: &Web, headers: &HeaderMap, page: bool) -> Result<(Session, Option<String>), Refused> {
    if let Dashboard::Off(why) = &web.dashboard {
        return Err(refuse(StatusCode::NOT_FOUND, why));
    }
    match auth::session(web, headers) {
        Some((s, new)) => {
            let cookie = new.then(|| auth::set_cookie(web, &s.id));
            Ok((s, cookie))
        }
        None if page => Err(Refused(Box::new(redirect("/login", None)))),
        None => Err(refuse(StatusCode::UNAUTHORIZED, "log in first")),
    }
}

/// A page in the layout.
#[allow(clippy::too_many_arguments)]
fn html(
    web: &Web,
    s: Option<&Session>,
    cookie: Option<String>,
    title: &str,
    page: &str,
    events: &str,
    msg: Option<&String>,
    body: &str,
) -> Resp {
    let mut o = String::with_capacity(body.len() + 2048);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · sprout</title><link rel=\"icon\" href=\"/assets/icon.svg\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head>\
         <body data-page=\"{page}\" data-events=\"{}\">\
         <header><nav aria-label=\"main\"><a class=\"brand\" href=\"/\">sprout</a>\
         <a href=\"/\">Overview</a><a href=\"/cluster\">Cluster</a>",
        esc(title),
        esc(events)
    );
    if let Some(s) = s {
        let _ = write!(
            o,
            "<span class=\"user\">{}{}</span>",
            esc(&s.user),
            if s.admin() { "" } else { " (read-only)" }
        );
        if s.login {
            let _ = write!(
                o,
                "<form method=\"post\" action=\"/logout\" class=\"inline\">{}\
                 <button>Log out</button></form>",
                csrf(s)
            );
        }
    }
    o.push_str("</nav></header><main id=\"main\">");
    if let Some(m) = msg.filter(|m| !m.is_empty()) {
        let _ = write!(o, "<p class=\"flash\" role=\"status\">{}</p>", esc(m));
    }
    o.push_str(body);
    let _ = write!(
        o,
        "</main><footer>sproutd {} · {}</footer></body></html>",
        crate::VERSION,
        if web.tls { "TLS" } else { "plain HTTP" }
    );
    let mut r = Response::new(Body::from(o));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

fn csrf(s: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

fn secs(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0} ms", v * 1000.0)
    } else if v < 120.0 {
        format!("{v:.1} s")
    } else if v < 7200.0 {
        format!("{:.0} min", v / 60.0)
    } else {
        format!("{:.1} h", v / 3600.0)
    }
}

/// A job's age (whole seconds, as `stats-job` gives it).
fn age(s: u64) -> String {
    if s < 120 {
        format!("{s} s")
    } else {
        secs(s as f64)
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn card(o: &mut String, label: &str, key: &str, value: &str) {
    let _ = write!(
        o,
        "<div class=\"card\"><span class=\"k\">{}</span><span class=\"v\" data-k=\"{}\">{}</span></div>",
        esc(label),
        esc(key),
        esc(value)
    );
}

fn chart(o: &mut String, id: &str, title: &str, series: &str) {
    let _ = write!(
        o,
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg id=\"{id}\" data-series=\"{series}\" viewBox=\"0 0 600 160\" role=\"img\" aria-label=\"{}\"></svg>\
         <div class=\"legend\" data-for=\"{id}\"></div></figure>",
        esc(title),
        esc(title)
    );
}

// ---------------------------------------------------------------------------------------
// Overview

/// Whether the session sees every tube (and so the server's job counts and charts; a
/// restricted user's counts are its tubes', as in its `stats`).
fn sees_all(s: &Session) -> bool {
    matches!(s.access, crate::access::Access::Full)
}

/// The overview's summary: (label, key, value).
fn summary(l: &Latest, s: &Session) -> Vec<(&'static str, &'static str, String)> {
    let v = &l.snap.server;
    let p = &l.snap.process;
    let (mut counts, mut tubes) = (
        [v.ready, v.reserved, v.delayed, v.buried, v.urgent],
        v.tubes,
    );
    if !sees_all(s) {
        counts = [0; 5];
        tubes = 0;
        for r in l.tubes.iter().filter(|r| s.sees(&r.name)) {
            for (c, n) in counts
                .iter_mut()
                .zip([r.ready, r.reserved, r.delayed, r.buried, r.urgent])
            {
                *c += n;
            }
            tubes += 1;
        }
    }
    let mut out = vec![
        ("ready", "ready", counts[0].to_string()),
        ("reserved", "reserved", counts[1].to_string()),
        ("delayed", "delayed", counts[2].to_string()),
        ("buried", "buried", counts[3].to_string()),
        ("urgent", "urgent", counts[4].to_string()),
        ("tubes", "tubes", tubes.to_string()),
        ("connections", "connections", v.connections.to_string()),
        ("workers waiting", "waiting", v.waiting.to_string()),
        ("ops/s", "ops", format!("{:.0}", l.point.ops)),
        ("puts/s", "puts", format!("{:.0}", l.point.puts)),
        ("uptime", "uptime", secs(p.uptime as f64)),
        ("version", "version", p.version.clone()),
        (
            "drain",
            "draining",
            if v.draining { "draining" } else { "no" }.into(),
        ),
    ];
    match &l.snap.binlog {
        Some(b) => {
            out.push(("binlog size", "binlog", bytes(b.disk_bytes)));
            out.push(("binlog live", "live", bytes(b.live_bytes)));
        }
        None => out.push(("binlog", "binlog", "off".into())),
    }
    out
}

/// The tube rows a session sees, filtered by `q`: at most [`ROWS_MAX`] (the busiest),
/// by name; and how many matched.
fn rows<'a>(l: &'a Latest, s: &Session, q: &str) -> (Vec<&'a Row>, usize) {
    let mut m: Vec<&Row> = l
        .tubes
        .iter()
        .filter(|r| r.name.contains(q) && s.sees(&r.name))
        .collect();
    let n = m.len();
    if n > ROWS_MAX {
        m.sort_by(|a, b| b.jobs().cmp(&a.jobs()).then(a.name.cmp(&b.name)));
        m.truncate(ROWS_MAX);
        m.sort_by(|a, b| a.name.cmp(&b.name));
    }
    (m, n)
}

/// A row's cells: (sort key, text).
fn cells(r: &Row) -> [(f64, String); 10] {
    let n = |x: u64| (x as f64, x.to_string());
    [
        n(r.ready),
        n(r.reserved),
        n(r.delayed),
        n(r.buried),
        n(r.urgent),
        n(r.waiting),
        (r.puts, format!("{:.1}", r.puts)),
        (r.deletes, format!("{:.1}", r.deletes)),
        (r.oldest, secs(r.oldest)),
        (
            r.paused as f64,
            if r.paused > 0 {
                format!("{} s", r.paused)
            } else {
                "no".into()
            },
        ),
    ]
}

const COLUMNS: [&str; 11] = [
    "tube",
    "ready",
    "reserved",
    "delayed",
    "buried",
    "urgent",
    "waiting",
    "put/s",
    "delete/s",
    "oldest ready",
    "paused",
];

async fn overview(State(web): Ctx, headers: HeaderMap, Query(q): Q) -> Answer {
    let (s, cookie) = enter(&web, &headers, true)?;
    let l = web.history.latest();
    let filter = q.get("q").map(String::as_str).unwrap_or("");
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<h1>Overview</h1><section class=\"cards\" id=\"summary\" aria-label=\"server\">");
    for (label, key, value) in summary(&l, &s) {
        card(&mut o, label, key, &value);
    }
    o.push_str("</section>");
    if sees_all(&s) {
        o.push_str("<section class=\"charts\">");
        chart(
            &mut o,
            "c-rate",
            "Throughput per second, last hour",
            "ops,puts,deletes",
        );
        chart(
            &mut o,
            "c-jobs",
            "Jobs by state, last hour",
            "ready,reserved,delayed,buried",
        );
        let _ = write!(
            o,
            "</section><script type=\"application/json\" id=\"history\">{}</script>",
            web.history.server_json()
        );
    }
    let (shown, total) = rows(&l, &s, filter);
    let _ = write!(
        o,
        "<h2>Tubes</h2><form method=\"get\" action=\"/\" class=\"filter\" role=\"search\">\
         <label for=\"filter\">Filter by name</label> <input id=\"filter\" name=\"q\" value=\"{}\" autocomplete=\"off\">\
         <button>Filter</button></form><p id=\"tubes-note\">{}</p>\
         <div class=\"scroll\"><table id=\"tubes\" class=\"sortable\"><thead><tr>",
        esc(filter),
        if total > shown.len() {
            format!(
                "Showing the {} busiest of {total} tubes: filter to see others.",
                shown.len()
            )
        } else {
            format!("{total} tubes")
        }
    );
    for (i, c) in COLUMNS.iter().enumerate() {
        let _ = write!(
            o,
            "<th scope=\"col\"><button type=\"button\" data-col=\"{i}\">{c}</button></th>"
        );
    }
    o.push_str("</tr></thead><tbody>");
    for r in &shown {
        row_html(&mut o, r);
    }
    o.push_str("</tbody></table></div>");
    if s.admin() {
        put_form(&mut o, &s, None);
    }
    Ok(html(
        &web,
        Some(&s),
        cookie,
        "Overview",
        "overview",
        &format!("/events?q={}", enc(filter)),
        q.get("msg"),
        &o,
    ))
}

fn row_html(o: &mut String, r: &Row) {
    let _ = write!(
        o,
        "<tr data-name=\"{}\"><th scope=\"row\" data-v=\"{}\"><a href=\"/tube/{}\">{}</a></th>",
        esc(&r.name),
        esc(&r.name),
        enc(&r.name),
        esc(&r.name)
    );
    for (v, t) in cells(r) {
        let _ = write!(o, "<td data-v=\"{v}\">{}</td>", esc(&t));
    }
    o.push_str("</tr>");
}

fn put_form(o: &mut String, s: &Session, tube: Option<&str>) {
    let action = match tube {
        Some(t) => format!("/tube/{}/put", enc(t)),
        None => "/put".to_string(),
    };
    let _ = write!(
        o,
        "<section class=\"action\"><h2>Put a job</h2><form method=\"post\" action=\"{}\" class=\"grid\">{}",
        esc(&action),
        csrf(s)
    );
    if tube.is_none() {
        o.push_str("<label>Tube <input name=\"tube\" required value=\"default\"></label>");
    }
    o.push_str(
        "<label>Priority <input name=\"pri\" type=\"number\" min=\"0\" max=\"4294967295\" value=\"1024\"></label>\
         <label>Delay (s) <input name=\"delay\" type=\"number\" min=\"0\" value=\"0\"></label>\
         <label>TTR (s) <input name=\"ttr\" type=\"number\" min=\"0\" value=\"60\"></label>\
         <label class=\"wide\">Body <textarea name=\"body\" rows=\"3\"></textarea></label>\
         <button id=\"put\">Put</button></form></section>",
    );
}

/// One server-sent event.
fn event(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

/// An event stream: `f` turns each new copy of the numbers into one event's data.
fn stream(web: &Web, f: impl Fn(&Latest) -> String + Send + Sync + 'static) -> Resp {
    let rx = web.history.subscribe();
    let f = Arc::new(f);
    let s = futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
        let f = f.clone();
        async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let l = rx.borrow_and_update().clone();
            Some((
                Ok::<_, std::convert::Infallible>(event(&f(&l))),
                (rx, false),
            ))
        }
    });
    let mut r = Response::new(Body::from_stream(s));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn summary_json(o: &mut String, items: &[(&'static str, &'static str, String)]) {
    o.push('{');
    for (i, (_, k, v)) in items.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{}:{}", js(k), js(v));
    }
    o.push('}');
}

async fn overview_events(State(web): Ctx, headers: HeaderMap, Query(q): Q) -> Answer {
    let (s, _) = enter(&web, &headers, false)?;
    let filter = q.get("q").cloned().unwrap_or_default();
    Ok(stream(&web, move |l| {
        let mut o = String::with_capacity(32 * 1024);
        o.push_str("{\"s\":");
        summary_json(&mut o, &summary(l, &s));
        if sees_all(&s) {
            o.push_str(",\"p\":");
            o.push_str(&history::object(&l.point, history::SERVER));
        }
        let (shown, total) = rows(l, &s, &filter);
        let _ = write!(o, ",\"n\":{total},\"rows\":[");
        for (i, r) in shown.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "[{}", js(&r.name));
            for (v, t) in cells(r) {
                o.push(',');
                history::num(&mut o, v);
                let _ = write!(o, ",{}", js(&t));
            }
            o.push(']');
        }
        o.push_str("]}");
        o
    }))
}

// ---------------------------------------------------------------------------------------
// Tube page

/// The session's protocol connection.
fn proto(web: &Web, s: &Session) -> Result<Proto, Refused> {
    Proto::open(&web.shared, s.access.clone()).map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot open a connection: {e}"),
        )
    })
}

/// A body as one line of text: escaped by the caller; binary bodies described.
fn preview(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(t)
            if !t
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            let mut p: String = t
                .chars()
                .take(PREVIEW)
                .map(|c| if c.is_whitespace() { ' ' } else { c })
                .collect();
            if t.chars().count() > PREVIEW {
                p.push('…');
            }
            p
        }
        _ => format!("(binary, {} bytes)", body.len()),
    }
}

fn kv_table(o: &mut String, d: &[(String, String)]) {
    o.push_str("<table class=\"kv\"><tbody>");
    for (k, v) in d {
        let _ = write!(
            o,
            "<tr><th scope=\"row\">{}</th><td data-k=\"{}\">{}</td></tr>",
            esc(k),
            esc(k),
            esc(v)
        );
    }
    o.push_str("</tbody></table>");
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

async fn tube(
    State(web): Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Q,
) -> Answer {
    let (s, cookie) = enter(&web, &headers, true)?;
    if !valid_name(&name) {
        return Ok(status(StatusCode::BAD_REQUEST, "not a tube name"));
    }
    let state = match q.get("state").map(String::as_str).unwrap_or("ready") {
        st @ ("ready" | "delayed" | "buried" | "reserved") => st,
        _ => {
            return Ok(status(
                StatusCode::BAD_REQUEST,
                "state: ready, delayed, buried or reserved",
            ))
        }
    };
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: u32 = q
        .get("limit")
        .and_then(|a| a.parse().ok())
        .unwrap_or(PAGE)
        .clamp(1, PAGE_MAX);
    let mut p = proto(&web, &s)?;
    let stats = p.cmd(&format!("stats-tube {name}"), None).await?;
    if !stats.line.starts_with("OK") {
        let body = format!(
            "<h1>Tube <code>{}</code></h1><p>stats-tube: {}</p>",
            esc(&name),
            esc(&stats.line)
        );
        let mut r = html(&web, Some(&s), cookie, &name, "tube", "", None, &body);
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    }
    let list = p
        .cmd(&format!("list-jobs {name} {state} {after} {limit}"), None)
        .await?;
    let ids: Vec<u64> = list.list().iter().filter_map(|i| i.parse().ok()).collect();
    let mut cmds = Vec::with_capacity(ids.len() * 2);
    for id in &ids {
        cmds.push(format!("stats-job {id}"));
        cmds.push(format!("peek {id}"));
    }
    let refs: Vec<(&str, Option<&[u8]>)> = cmds.iter().map(|c| (c.as_str(), None)).collect();
    p.send(&refs).await?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in &ids {
        let (st, body) = match (p.reply().await, p.reply().await) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        jobs.push((*id, st, body));
    }
    drop(p);

    let d = stats.dict();
    let get = |k: &str| {
        d.iter()
            .find(|(a, _)| a == k)
            .map(|x| x.1.as_str())
            .unwrap_or("0")
    };
    let mut o = String::with_capacity(32 * 1024);
    let _ = write!(
        o,
        "<h1>Tube <code>{}</code></h1><section class=\"cards\" id=\"summary\" aria-label=\"tube\">",
        esc(&name)
    );
    for (label, key) in [
        ("ready", "current-jobs-ready"),
        ("reserved", "current-jobs-reserved"),
        ("delayed", "current-jobs-delayed"),
        ("buried", "current-jobs-buried"),
        ("urgent", "current-jobs-urgent"),
        ("waiting", "current-waiting"),
        ("total jobs", "total-jobs"),
        ("paused, s left", "pause-time-left"),
    ] {
        card(&mut o, label, key, get(key));
    }
    o.push_str("</section>");
    match web.history.tube_json(&name) {
        Some(h) => {
            o.push_str("<section class=\"charts\">");
            chart(
                &mut o,
                "c-jobs",
                "Jobs by state, last hour",
                "ready,reserved,delayed,buried",
            );
            chart(
                &mut o,
                "c-rate",
                "Puts and deletes per second",
                "puts,deletes",
            );
            chart(&mut o, "c-wait", "Queue wait p50 / p99, seconds", "p50,p99");
            chart(&mut o, "c-age", "Oldest ready job's age, seconds", "oldest");
            let _ = write!(
                o,
                "</section><script type=\"application/json\" id=\"history\">{h}</script>"
            );
        }
        None => {
            let _ = write!(
                o,
                "<p class=\"note\">No history is kept for this tube (only for the {} busiest).</p>",
                history::TUBE_RINGS
            );
        }
    }
    o.push_str("<details><summary>All stats and policy</summary>");
    kv_table(&mut o, &d);
    o.push_str("</details>");
    let base = format!("/tube/{}", enc(&name));
    o.push_str("<h2 id=\"jobs-title\">Jobs</h2><nav class=\"tabs\" aria-label=\"job states\">");
    for (st, key) in [
        ("ready", "current-jobs-ready"),
        ("delayed", "current-jobs-delayed"),
        ("buried", "current-jobs-buried"),
        ("reserved", "current-jobs-reserved"),
    ] {
        let _ = write!(
            o,
            "<a href=\"{base}?state={st}&amp;limit={limit}\"{}>{st} ({})</a>",
            if st == state {
                " aria-current=\"page\""
            } else {
                ""
            },
            esc(get(key))
        );
    }
    o.push_str("</nav>");
    if !list.line.starts_with("OK") {
        let _ = write!(o, "<p>list-jobs: {}</p>", esc(&list.line));
    }
    o.push_str(
        "<div class=\"scroll\"><table id=\"jobs\"><thead><tr><th scope=\"col\">id</th><th scope=\"col\">priority</th>\
         <th scope=\"col\">age</th><th scope=\"col\">reserves</th><th scope=\"col\">time left</th>\
         <th scope=\"col\">body</th></tr></thead><tbody>",
    );
    for (id, st, body) in &jobs {
        let jd = st.dict();
        let f = |k: &str| {
            jd.iter()
                .find(|(a, _)| a == k)
                .map(|x| x.1.clone())
                .unwrap_or_default()
        };
        let text = if body.line.starts_with("FOUND") {
            preview(&body.data)
        } else {
            body.line.clone()
        };
        let _ = write!(
            o,
            "<tr><th scope=\"row\"><a href=\"/job/{id}\">{id}</a></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"body\">{}</td></tr>",
            esc(&f("pri")),
            esc(&age(f("age").parse().unwrap_or(0))),
            esc(&f("reserves")),
            esc(&f("time-left")),
            esc(&text)
        );
    }
    o.push_str("</tbody></table></div><nav class=\"pager\" aria-label=\"pages\">");
    let _ = write!(
        o,
        "<a href=\"{base}?state={state}&amp;limit={limit}\">First page</a>"
    );
    if ids.len() as u32 == limit {
        if let Some(last) = ids.last() {
            let _ = write!(
                o,
                " <a id=\"next\" rel=\"next\" href=\"{base}?state={state}&amp;after={last}&amp;limit={limit}\">Next page</a>"
            );
        }
    }
    let _ = write!(
        o,
        " <span class=\"note\">{} jobs on this page{}</span></nav>",
        ids.len(),
        if after > 0 {
            format!(", after id {after}")
        } else {
            String::new()
        }
    );
    if s.admin() {
        tube_actions(&mut o, &s, &name, &base);
    }
    Ok(html(
        &web,
        Some(&s),
        cookie,
        &format!("Tube {name}"),
        "tube",
        &format!("{base}/events"),
        q.get("msg"),
        &o,
    ))
}

fn tube_actions(o: &mut String, s: &Session, name: &str, base: &str) {
    let c = csrf(s);
    put_form(o, s, Some(name));
    let _ = write!(
        o,
        "<section class=\"action\"><h2>Tube actions</h2>\
         <form method=\"post\" action=\"{base}/kick\" class=\"row\">{c}<label>Kick up to \
         <input name=\"n\" type=\"number\" min=\"1\" value=\"1\"></label> buried (or delayed) jobs \
         <button id=\"kick\">Kick</button></form>\
         <form method=\"post\" action=\"{base}/pause\" class=\"row\">{c}<label>Pause for \
         <input name=\"seconds\" type=\"number\" min=\"0\" value=\"60\"></label> s (0 ends a pause) \
         <button id=\"pause\">Pause</button></form>\
         <form method=\"post\" action=\"{base}/flush\" class=\"row danger\">{c}<label>\
         <input type=\"checkbox\" name=\"confirm\" value=\"yes\" required id=\"flush-confirm\"> \
         yes, delete every job of <code>{}</code></label> <button id=\"flush\">Flush tube</button></form>\
         <form method=\"post\" action=\"{base}/policy\" class=\"row\">{c}<label>Policy \
         <select name=\"key\"><option>max-reserves</option><option>on-exhaust</option>\
         <option>retry-backoff</option><option>max-ready</option></select></label> \
         <label>value <input name=\"value\" required placeholder=\"e.g. 5, bury, exp:1,60\"></label> \
         <button>Set policy</button></form></section>",
        esc(name)
    );
}

async fn tube_events(State(web): Ctx, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    let (s, _) = enter(&web, &headers, false)?;
    if !valid_name(&name) || !s.sees(&name) {
        return Ok(status(StatusCode::NOT_FOUND, "no such tube"));
    }
    let w = web.clone();
    Ok(stream(&web, move |l| {
        let mut o = String::from("{\"s\":{");
        if let Ok(i) = l.tubes.binary_search_by(|r| (*r.name).cmp(name.as_str())) {
            let r = &l.tubes[i];
            let _ = write!(
                o,
                "\"current-jobs-ready\":\"{}\",\"current-jobs-reserved\":\"{}\",\
                 \"current-jobs-delayed\":\"{}\",\"current-jobs-buried\":\"{}\",\
                 \"current-jobs-urgent\":\"{}\",\"current-waiting\":\"{}\",\"pause-time-left\":\"{}\"",
                r.ready, r.reserved, r.delayed, r.buried, r.urgent, r.waiting, r.paused
            );
        }
        let _ = write!(o, "}},\"p\":{}}}", w.history.tube_point_json(&name));
        o
    }))
}

// ---------------------------------------------------------------------------------------
// Job page

fn hexdump(b: &[u8]) -> String {
    let mut o = String::with_capacity(b.len() * 4 + 16);
    for (i, chunk) in b.chunks(16).enumerate() {
        let _ = write!(o, "{:08x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(x) => {
                    let _ = write!(o, "{x:02x} ");
                }
                None => o.push_str("   "),
            }
        }
        o.push(' ');
        for &x in chunk {
            o.push(if x.is_ascii_graphic() || x == b' ' {
                x as char
            } else {
                '.'
            });
        }
        o.push('\n');
    }
    o
}

fn valid_id(id: &str) -> Option<u64> {
    id.parse().ok().filter(|&n| n > 0)
}

/// The session, the job id and a protocol connection for a job's page (`page`) or body.
type JobConn = (Session, Option<String>, u64, Proto);

fn job_conn(web: &Web, headers: &HeaderMap, id: &str, page: bool) -> Result<JobConn, Refused> {
    let (s, cookie) = enter(web, headers, page)?;
    let id = valid_id(id).ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "not a job id"))?;
    let p = proto(web, &s)?;
    Ok((s, cookie, id, p))
}

async fn job(State(web): Ctx, headers: HeaderMap, Path(id): Path<String>, Query(q): Q) -> Answer {
    let (s, cookie, id, mut p) = job_conn(&web, &headers, &id, true)?;
    let cmds = [format!("stats-job {id}"), format!("peek {id}")];
    p.send(&[(cmds[0].as_str(), None), (cmds[1].as_str(), None)])
        .await?;
    let (st, body): (Reply, Reply) = match (p.reply().await, p.reply().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    drop(p);
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(o, "<h1>Job {id}</h1>");
    let found = st.line.starts_with("OK");
    if !found {
        let _ = write!(o, "<p>stats-job: {}</p>", esc(&st.line));
    } else {
        let d = st.dict();
        kv_table(&mut o, &d);
        let tube = d
            .iter()
            .find(|(k, _)| k == "tube")
            .map(|(_, v)| unquote(v).to_string())
            .unwrap_or_default();
        if !tube.is_empty() {
            let _ = write!(
                o,
                "<p><a href=\"/tube/{}\">Back to tube {}</a></p>",
                enc(&tube),
                esc(&tube)
            );
        }
        let b = &body.data;
        let _ = write!(o, "<h2>Body ({} bytes)</h2>", b.len());
        if !body.line.starts_with("FOUND") {
            let _ = write!(o, "<p>peek: {}</p>", esc(&body.line));
        } else {
            let shown = &b[..b.len().min(BODY_SHOWN)];
            match std::str::from_utf8(shown) {
                Ok(t) => {
                    let _ = write!(o, "<pre class=\"body\" id=\"body\">{}</pre>", esc(t));
                }
                Err(e) if e.valid_up_to() + 4 > shown.len() && shown.len() < b.len() => {
                    // Text cut in the middle of a character.
                    let t = std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or("");
                    let _ = write!(o, "<pre class=\"body\" id=\"body\">{}</pre>", esc(t));
                }
                Err(_) => {
                    let _ = write!(
                        o,
                        "<p class=\"note\">Binary (not UTF-8): hex dump.</p><pre class=\"body hex\" id=\"body\">{}</pre>",
                        esc(&hexdump(shown))
                    );
                }
            }
            if b.len() > BODY_SHOWN {
                let _ = write!(
                    o,
                    "<p class=\"note\">Showing the first {} of {} bytes.</p>",
                    BODY_SHOWN,
                    b.len()
                );
            }
            let _ = write!(
                o,
                "<p><a href=\"/job/{id}/body\" download=\"job-{id}.bin\">Download the body</a></p>"
            );
        }
        if s.admin() {
            let c = csrf(&s);
            let _ = write!(
                o,
                "<section class=\"action\"><h2>Job actions</h2>\
                 <form method=\"post\" action=\"/job/{id}/kick\" class=\"row\">{c}<button id=\"kick-job\">Kick this job</button></form>\
                 <form method=\"post\" action=\"/job/{id}/priority\" class=\"row\">{c}<label>Priority \
                 <input name=\"pri\" type=\"number\" min=\"0\" max=\"4294967295\" required></label> \
                 <button id=\"reprioritize\">Set priority</button></form>\
<form method=\"post\" action=\"/job/{id}/move\" class=\"row\">{c}<label>Move to tube \
                 <input name=\"tube\" required></label> <button id=\"move\">Move</button></form>\
                 <form method=\"post\" action=\"/job/{id}/delete\" class=\"row danger\">{c}\
                 <input type=\"hidden\" name=\"tube\" value=\"{}\"><label>\
                 <input type=\"checkbox\" name=\"confirm\" value=\"yes\" required id=\"delete-confirm\"> yes, delete job {id}</label> \
                 <button id=\"delete\">Delete</button></form></section>",
                esc(&tube)
            );
        }
    }
    let mut r = html(
        &web,
        Some(&s),
        cookie,
        &format!("Job {id}"),
        "job",
        "",
        q.get("msg"),
        &o,
    );
    if !found {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(r)
}

async fn job_body(State(web): Ctx, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let (_, _, id, mut p) = job_conn(&web, &headers, &id, false)?;
    let body = p.cmd(&format!("peek {id}"), None).await?;
    if !body.line.starts_with("FOUND") {
        return Ok(status(StatusCode::NOT_FOUND, &body.line));
    }
    let mut r = Response::new(Body::from(body.data));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"job-{id}.bin\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(h);
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Actions

/// The session of an action, checked: a session cookie, its CSRF token in the form, and
/// the `admin` right.
fn act(web: &Web, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<Session, Refused> {
    if let Dashboard::Off(why) = &web.dashboard {
        return Err(refuse(StatusCode::NOT_FOUND, why));
    }
    let Some((s, false)) = auth::session(web, headers) else {
        return Err(refuse(StatusCode::FORBIDDEN, "no session: reload the page"));
    };
    let token = form.get("csrf").map(String::as_str).unwrap_or("");
    if !auth::same(token, &s.csrf) {
        return Err(refuse(StatusCode::FORBIDDEN, "bad or missing CSRF token"));
    }
    if !s.admin() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "read-only: actions need the admin right",
        ));
    }
    Ok(s)
}

fn num_field(form: &HashMap<String, String>, k: &str, default: u64) -> Result<u64, Refused> {
    match form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .map(u64::from)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, &format!("{k}: not a number"))),
    }
}

fn confirmed(form: &HashMap<String, String>) -> Result<(), Refused> {
    if form.get("confirm").map(String::as_str) == Some("yes") {
        Ok(())
    } else {
        Err(refuse(StatusCode::BAD_REQUEST, "not confirmed"))
    }
}

/// Runs commands on the session's connection; the last reply's line.
async fn run(
    web: &Web,
    s: &Session,
    cmds: &[(String, Option<Vec<u8>>)],
) -> Result<String, Refused> {
    let mut p = proto(web, s)?;
    let refs: Vec<(&str, Option<&[u8]>)> = cmds
        .iter()
        .map(|(l, b)| (l.as_str(), b.as_deref()))
        .collect();
    p.send(&refs).await?;
    let mut last = String::new();
    for _ in cmds {
        last = p.reply().await?.line;
    }
    Ok(last)
}

fn back(to: &str, msg: &str) -> Resp {
    redirect(&format!("{to}?msg={}", enc(msg)), None)
}

/// The overview's put: the tube is a field of the form.
async fn put_any(state: Ctx, headers: HeaderMap, Form(form): F) -> Answer {
    let name = form
        .get("tube")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    tube_action(state, headers, Path((name, "put".into())), Form(form)).await
}

async fn tube_action(
    State(web): Ctx,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(form): F,
) -> Answer {
    let s = act(&web, &headers, &form)?;
    if !valid_name(&name) {
        return Ok(status(StatusCode::BAD_REQUEST, "not a tube name"));
    }
    let cmds: Vec<(String, Option<Vec<u8>>)> = match action.as_str() {
        "put" => {
            let pri = num_field(&form, "pri", 1024)?;
            let delay = num_field(&form, "delay", 0)?;
            let ttr = num_field(&form, "ttr", 60)?;
            let body = form.get("body").cloned().unwrap_or_default().into_bytes();
            vec![
                (format!("use {name}"), None),
                (
                    format!("put {pri} {delay} {ttr} {}", body.len()),
                    Some(body),
                ),
            ]
        }
        "kick" => {
            let n = num_field(&form, "n", 1)?;
            vec![(format!("use {name}"), None), (format!("kick {n}"), None)]
        }
        "pause" => {
            let n = num_field(&form, "seconds", 0)?;
            vec![(format!("pause-tube {name} {n}"), None)]
        }
        "flush" => {
            confirmed(&form)?;
            vec![(format!("flush-tube {name}"), None)]
        }
        "policy" => {
            let key = form.get("key").map(String::as_str).unwrap_or("");
            let value = form.get("value").map(|v| v.trim()).unwrap_or("");
            let ok_key = matches!(
                key,
                "max-reserves" | "on-exhaust" | "retry-backoff" | "max-ready"
            );
            let ok_value = !value.is_empty()
                && value.len() <= 200
                && value.bytes().all(|b| b.is_ascii_graphic());
            if !ok_key || !ok_value {
                return Ok(status(StatusCode::BAD_REQUEST, "policy: a key and a value"));
            }
            vec![(format!("tube-policy {name} {key} {value}"), None)]
        }
        _ => return Ok(status(StatusCode::NOT_FOUND, "no such action")),
    };
    let line = run(&web, &s, &cmds).await?;
    Ok(back(
        &format!("/tube/{}", enc(&name)),
        &format!("{action}: {line}"),
    ))
}

async fn job_action(
    State(web): Ctx,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): F,
) -> Answer {
    let s = act(&web, &headers, &form)?;
    let Some(id) = valid_id(&id) else {
        return Ok(status(StatusCode::BAD_REQUEST, "not a job id"));
    };
    let (cmd, to) = match action.as_str() {
        "kick" => (format!("kick-job {id}"), format!("/job/{id}")),
        "delete" => {
            confirmed(&form)?;
            let to = match form.get("tube").filter(|t| valid_name(t)) {
                Some(t) => format!("/tube/{}", enc(t)),
                None => "/".to_string(),
            };
            (format!("delete {id}"), to)
        }
        "move" => {
            let tube = form.get("tube").map(|t| t.trim()).unwrap_or("");
            if !valid_name(tube) {
                return Ok(status(StatusCode::BAD_REQUEST, "not a tube name"));
            }
            (format!("move-job {id} {tube}"), format!("/job/{id}"))
        }
        "priority" => {
            let pri = num_field(&form, "pri", 1024)?;
            (format!("reprioritize {id} {pri}"), format!("/job/{id}"))
        }
        _ => return Ok(status(StatusCode::NOT_FOUND, "no such action")),
    };
    let line = run(&web, &s, &[(cmd, None)]).await?;
    Ok(back(&to, &format!("{action} job {id}: {line}")))
}

// ---------------------------------------------------------------------------------------
// Cluster, login

async fn cluster(State(web): Ctx, headers: HeaderMap) -> Answer {
    let (s, cookie) = enter(&web, &headers, true)?;
    let clustered = !web.shared.config.cluster.is_empty();
    let o = if clustered {
        cluster_view(&web, &s).await?
    } else {
        "<h1>Cluster</h1><p>This server is not clustered.</p>".to_string()
    };
    let mut r = html(&web, Some(&s), cookie, "Cluster", "cluster", "", None, &o);
    if !clustered {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(r)
}

/// A cluster node's view of the cluster, as HTML.
async fn cluster_view(web: &Web, s: &Session) -> Result<String, Refused> {
    // This node's view, as `sprout cluster status` shows it (members' progress and lag
    // when this node is the leader).
    let mut p = proto(web, s)?;
    p.send(&[("cluster-status", None)]).await?;
    let st = p.reply().await?;
    drop(p);
    let mut o = String::with_capacity(4096);
    o.push_str("<h1>Cluster</h1>");
    if !st.line.starts_with("OK") {
        let _ = write!(o, "<p>cluster-status: {}</p>", esc(&st.line));
    } else {
        let d = st.dict();
        let node: Vec<(String, String)> = d
            .iter()
            .filter(|(k, _)| !k.starts_with("member"))
            .cloned()
            .collect();
        kv_table(&mut o, &node);
        let ids = d
            .iter()
            .find(|(k, _)| k == "members")
            .map(|(_, v)| unquote(v).to_string())
            .unwrap_or_default();
        o.push_str(
            "<h2>Members</h2><table id=\"members\"><thead><tr><th>node</th><th>peer address</th>\
             <th>voter</th><th>matched index</th><th>lag</th></tr></thead><tbody>",
        );
        for id in ids.split(',').filter(|i| !i.is_empty()) {
            let get = |f: &str| {
                let key = format!("member-{id}-{f}");
                d.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| unquote(v).to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(id),
                esc(&get("addr")),
                esc(&get("voter")),
                esc(&get("matched-index")),
                esc(&get("lag"))
            );
        }
        o.push_str("</tbody></table>");
    }
    Ok(o)
}

async fn login_page(State(web): Ctx, Query(q): Q) -> Answer {
    if let Dashboard::Off(why) = &web.dashboard {
        return Ok(status(StatusCode::NOT_FOUND, why));
    }
    let body = "<h1>Log in</h1><form method=\"post\" action=\"/login\" class=\"grid\">\
         <label>Token <input type=\"password\" name=\"token\" id=\"token\" required autocomplete=\"current-password\" autofocus></label>\
         <button id=\"login\">Log in</button></form>";
    Ok(html(
        &web,
        None,
        None,
        "Log in",
        "login",
        "",
        q.get("msg"),
        body,
    ))
}

async fn login(State(web): Ctx, Form(form): F) -> Answer {
    if let Dashboard::Off(why) = &web.dashboard {
        return Ok(status(StatusCode::NOT_FOUND, why));
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    match auth::login(&web, token) {
        Some(s) => Ok(redirect("/", Some(auth::set_cookie(&web, &s.id)))),
        None => {
            // A failed login is counted as a failed authentication, and slowed down.
            web.shared.security.counters.auth_failed();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut r = back("/login", "unknown token");
            *r.status_mut() = StatusCode::SEE_OTHER;
            Ok(r)
        }
    }
}

async fn logout(State(web): Ctx, headers: HeaderMap, Form(form): F) -> Answer {
    let Some((s, _)) = auth::session(&web, &headers) else {
        return Ok(redirect("/login", None));
    };
    if !auth::same(form.get("csrf").map(String::as_str).unwrap_or(""), &s.csrf) {
        return Ok(status(StatusCode::FORBIDDEN, "bad or missing CSRF token"));
    }
    web.sessions.remove(&s.id);
    Ok(redirect("/login", Some(auth::set_cookie(&web, ""))))
}
