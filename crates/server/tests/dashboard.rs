//! The web dashboard (`--http ADDR`) over HTTP: every page and endpoint, every action
//! (seen through the beanstalkd protocol afterwards), CSRF, sessions and logins, a
//! read-only user, and hostile job bodies.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use common::web::*;
use common::*;

/// sproutd with the dashboard on a free loopback port, and that port.
fn dashboard(extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--http", addr.as_str()];
    args.extend_from_slice(extra);
    (Server::start(&args), port)
}

fn stats_job(c: &mut Conn, id: u64) -> HashMap<String, String> {
    c.yaml(&format!("stats-job {id}"))
}

/// Whether `peek` finds the job.
fn exists(c: &mut Conn, id: u64) -> bool {
    let head = c.cmd(&format!("peek {id}"));
    if head == "NOT_FOUND" {
        return false;
    }
    c.job_data(&head, "FOUND");
    true
}

#[test]
fn pages_endpoints_and_headers() {
    let (srv, port) = dashboard(&[]);
    let mut p = srv.conn();
    assert_eq!(p.cmd("use emails"), "USING emails");
    let id = p.put(10, 0, 60, b"hello");
    let mut b = Client::new(port);

    let r = b.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // The overview shows the numbers of the last sample (taken once a second).
    let mut b2 = Client::new(port);
    wait_until("the overview lists emails", || {
        b2.get("/").text().contains("href=\"/tube/emails\"")
    });
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure without TLS: {cookie}"
    );
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(r.text().contains("id=\"history\""), "the charts' history");
    // The session is kept: no new cookie on the next page.
    assert!(b.get("/").header("set-cookie").is_none());

    let r = b.get("/tube/emails");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("href=\"/job/{id}\"")));
    assert!(r.text().contains("hello"));
    for state in ["delayed", "buried", "reserved"] {
        assert_eq!(b.get(&format!("/tube/emails?state={state}")).status, 200);
    }
    assert_eq!(b.get("/tube/emails?state=gone").status, 400);
    assert_eq!(b.get("/tube/nosuchtube").status, 404);
    assert_eq!(b.get("/tube/bad%20name").status, 400);

    let r = b.get(&format!("/job/{id}"));
    assert_eq!(r.status, 200);
    let page = r.text();
    for field in ["pri", "ttr", "age", "reserves", "timeouts", "kicks", "tube"] {
        assert!(
            page.contains(&format!("<th scope=\"row\">{field}</th>")),
            "{field}"
        );
    }
    assert_eq!(b.get("/job/999999").status, 404);
    assert_eq!(b.get("/job/abc").status, 400);
    let body = b.get(&format!("/job/{id}/body"));
    assert_eq!(body.status, 200);
    assert_eq!(body.body, b"hello");
    assert!(body
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));

    let r = b.get("/cluster");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not clustered"));
    assert_eq!(b.get("/nope").status, 404);
    assert_eq!(b.get("/healthz").text(), "ok\n");
    assert!(b
        .get("/metrics")
        .text()
        .contains("sprout_current_jobs_ready 1"));
    assert_eq!(b.request("POST", "/metrics", Some(&[])).status, 405);

    // The assets are embedded and small.
    let mut total = 0;
    for (path, ctype) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let r = b.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ctype));
        total += r.body.len();
    }
    assert!(total < 300 * 1024, "assets are {total} bytes");
}

/// Opens an event stream and reads it until `want` has come (events come once a
/// second; the first at once): what was read, head included.
fn stream_until(port: u16, path: &str, want: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = s.read(&mut buf).expect("an event");
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_event_streams_send_the_numbers() {
    let (srv, port) = dashboard(&[]);
    let mut p = srv.conn();
    p.cmd("use live");
    p.put(0, 0, 60, b"x");
    // The tube may have been created after the last sample: its row comes with the next.
    let text = stream_until(port, "/events", "[\"live\",");
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    assert!(text.contains("data: {\"s\":{\"ready\":"), "{text}");
    let text = stream_until(port, "/tube/live/events", "\"current-jobs-ready\":\"1\"");
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("\"p\":{"), "{text}");
}

#[test]
fn actions_go_through_the_engine_and_show_in_the_protocol() {
    let (srv, port) = dashboard(&[]);
    let mut p = srv.conn();
    let mut b = Client::new(port);
    let csrf = b.csrf();
    let before = p.yaml("stats");

    // put (from the overview's form: the tube is a field)
    let r = b.post(
        "/put",
        &[
            ("csrf", &csrf),
            ("tube", "work"),
            ("pri", "7"),
            ("delay", "0"),
            ("ttr", "30"),
            ("body", "made in a browser"),
        ],
    );
    assert_eq!(r.status, 303);
    let to = r.header("location").unwrap();
    assert!(
        to.starts_with("/tube/work?msg=put%3A%20INSERTED%20"),
        "{to}"
    );
    let id: u64 = to.rsplit("%20").next().unwrap().parse().unwrap();
    let j = stats_job(&mut p, id);
    assert_eq!(
        (j["tube"].as_str(), j["pri"].as_str(), j["ttr"].as_str()),
        ("work", "7", "30")
    );
    let after = p.yaml("stats");
    let n = |m: &HashMap<String, String>, k: &str| m[k].parse::<u64>().unwrap();
    assert_eq!(
        n(&after, "cmd-put"),
        n(&before, "cmd-put") + 1,
        "counted as a put"
    );
    assert_eq!(n(&after, "total-jobs"), n(&before, "total-jobs") + 1);

    // put on the tube page's form
    let r = b.post("/tube/work/put", &[("csrf", &csrf), ("body", "second")]);
    assert_eq!(r.status, 303);
    assert_eq!(p.yaml("stats-tube work")["current-jobs-ready"], "2");

    // kick N: bury both, kick one from the tube page
    assert_eq!(p.cmd("watch work"), "WATCHING 2");
    for _ in 0..2 {
        let (rid, _) = p.reserve();
        assert_eq!(p.cmd(&format!("bury {rid} 0")), "BURIED");
    }
    let r = b.post("/tube/work/kick", &[("csrf", &csrf), ("n", "1")]);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().contains("KICKED%201"));
    let t = p.yaml("stats-tube work");
    assert_eq!(
        (
            t["current-jobs-ready"].as_str(),
            t["current-jobs-buried"].as_str()
        ),
        ("1", "1")
    );

    // kick a job
    assert_eq!(p.cmd("use work"), "USING work");
    let buried = p.cmd("peek-buried");
    let (bid, _) = p.job_data(&buried, "FOUND");
    let r = b.post(&format!("/job/{bid}/kick"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(stats_job(&mut p, bid)["state"], "ready");
    assert_eq!(stats_job(&mut p, bid)["kicks"], "1");

    // move a job
    let r = b.post(
        &format!("/job/{bid}/move"),
        &[("csrf", &csrf), ("tube", "elsewhere")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(stats_job(&mut p, bid)["tube"], "elsewhere");

    // reprioritize
    let r = b.post(
        &format!("/job/{bid}/priority"),
        &[("csrf", &csrf), ("pri", "42")],
    );
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().contains("REPRIORITIZED"));
    assert_eq!(stats_job(&mut p, bid)["pri"], "42");

    // pause and unpause
    let r = b.post("/tube/work/pause", &[("csrf", &csrf), ("seconds", "120")]);
    assert_eq!(r.status, 303);
    assert_eq!(p.yaml("stats-tube work")["pause"], "120");
    b.post("/tube/work/pause", &[("csrf", &csrf), ("seconds", "0")]);
    assert_eq!(p.yaml("stats-tube work")["pause"], "0");

    // policy
    let r = b.post(
        "/tube/work/policy",
        &[("csrf", &csrf), ("key", "max-reserves"), ("value", "3")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(p.yaml("stats-tube work")["max-reserves"], "3");
    let r = b.post(
        "/tube/work/policy",
        &[
            ("csrf", &csrf),
            ("key", "max-reserves 1\r\nflush-tube work"),
            ("value", "3"),
        ],
    );
    assert_eq!(r.status, 400, "no command line can be injected");

    // delete: confirmation required
    let r = b.post(&format!("/job/{bid}/delete"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 400);
    assert_eq!(stats_job(&mut p, bid)["state"], "ready");
    let r = b.post(
        &format!("/job/{bid}/delete"),
        &[("csrf", &csrf), ("confirm", "yes"), ("tube", "elsewhere")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").unwrap(),
        format!("/tube/elsewhere?msg=delete%20job%20{bid}%3A%20DELETED")
    );
    assert!(!exists(&mut p, bid));

    // flush: confirmation required
    assert_eq!(b.post("/tube/work/flush", &[("csrf", &csrf)]).status, 400);
    p.put(0, 0, 60, b"more");
    let r = b.post("/tube/work/flush", &[("csrf", &csrf), ("confirm", "yes")]);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().contains("FLUSHED"));
    let t = p.yaml("stats-tube work");
    let jobs: u64 = ["ready", "reserved", "delayed", "buried"]
        .iter()
        .map(|s| t[&format!("current-jobs-{s}")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(jobs, 0);

    // bad input
    assert_eq!(
        b.post("/tube/work/kick", &[("csrf", &csrf), ("n", "x")])
            .status,
        400
    );
    assert_eq!(
        b.post("/tube/work/nonsense", &[("csrf", &csrf)]).status,
        404
    );
    assert_eq!(
        b.post("/put", &[("csrf", &csrf), ("tube", "bad name")])
            .status,
        400
    );
    assert_eq!(b.get("/tube/work/kick").status, 405);
}

#[test]
fn actions_wait_for_the_log_and_are_logged() {
    let dir = TempDir::new("dash-binlog");
    let d = dir.path().display().to_string();
    let (srv, port) = dashboard(&["-b", &d, "-f", "0"]);
    let mut b = Client::new(port);
    let csrf = b.csrf();
    let r = b.post(
        "/put",
        &[("csrf", &csrf), ("tube", "durable"), ("body", "kept")],
    );
    assert_eq!(r.status, 303);
    let id: u64 = r
        .header("location")
        .unwrap()
        .rsplit("%20")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    drop(srv);
    // Restarted on the same log: the job is there.
    let srv = Server::start(&["-b", &d]);
    let mut p = srv.conn();
    assert_eq!(stats_job(&mut p, id)["tube"], "durable");
}

#[test]
fn csrf_is_required_on_every_action() {
    let (srv, port) = dashboard(&[]);
    let mut p = srv.conn();
    p.cmd("use t");
    let id = p.put(0, 0, 60, b"x");
    let mut b = Client::new(port);
    let csrf = b.csrf();
    let del = format!("/job/{id}/delete");
    let yes = ("confirm", "yes");
    assert_eq!(b.post(&del, &[yes]).status, 403, "no token");
    assert_eq!(
        b.post(&del, &[yes, ("csrf", "0000")]).status,
        403,
        "wrong token"
    );
    let mut other = Client::new(port);
    let theirs = other.csrf();
    assert_eq!(
        b.post(&del, &[yes, ("csrf", &theirs)]).status,
        403,
        "another session's token"
    );
    let mut stranger = Client::new(port);
    assert_eq!(
        stranger.post(&del, &[yes, ("csrf", &csrf)]).status,
        403,
        "no session cookie"
    );
    assert!(exists(&mut p, id));
    assert_eq!(b.post(&del, &[yes, ("csrf", &csrf)]).status, 303);
    assert!(!exists(&mut p, id));
}

fn sha_hex(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The overview as the root user sees it.
fn root_view(port: u16) -> String {
    let mut root = Client::new(port);
    root.post("/login", &[("token", "root-token")]);
    root.get("/").text()
}

#[test]
fn logins_and_a_read_only_user() {
    let dir = TempDir::new("dash-users");
    let cfg = dir.join("sproutd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[user]]\nname = \"root\"\ntoken-sha256 = \"{}\"\ntubes = [\"*\"]\nmay = [\"produce\", \"consume\", \"inspect\", \"admin\"]\n\n\
             [[user]]\nname = \"alice\"\ntoken-sha256 = \"{}\"\ntubes = [\"t\"]\nmay = [\"inspect\", \"admin\"]\n\n\
             [[user]]\nname = \"viewer\"\ntoken-sha256 = \"{}\"\ntubes = [\"*\"]\nmay = [\"inspect\"]\n",
            sha_hex("root-token"),
            sha_hex("alice-token"),
            sha_hex("view-token")
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let (srv, port) = dashboard(&["--config", &cfg]);
    let mut p = srv.conn();
    p.cmd("use t");
    let id = p.put(0, 0, 60, b"x");

    let mut anon = Client::new(port);
    let r = anon.get("/");
    assert_eq!(r.status, 303, "a login is required");
    assert_eq!(r.header("location"), Some("/login"));
    assert!(anon.cookie.is_none());
    assert_eq!(anon.get("/events").status, 401);
    assert_eq!(anon.get("/login").status, 200);
    assert_eq!(anon.get("/healthz").status, 200);
    let r = anon.post("/login", &[("token", "wrong")]);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().starts_with("/login?msg="));
    assert!(anon.cookie.is_none());

    // A user who sees only some tubes sees only their jobs counted, and no server charts.
    p.cmd("use secret");
    p.put(0, 0, 60, b"hidden");
    let mut alice = Client::new(port);
    assert_eq!(
        alice.post("/login", &[("token", "alice-token")]).status,
        303
    );
    wait_until("the overview's sample has tube secret", || {
        let page = root_view(port);
        page.contains("data-name=\"secret\"")
    });
    let page = alice.get("/").text();
    assert!(page.contains("data-name=\"t\""), "{page}");
    assert!(!page.contains("secret"), "another user's tube");
    assert!(page.contains("data-k=\"ready\">1<"), "only t's job counted");
    assert!(!page.contains("id=\"history\""), "no server-wide charts");
    assert_eq!(alice.get("/tube/secret").status, 404);

    let mut viewer = Client::new(port);
    let r = viewer.post("/login", &[("token", "view-token")]);
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert!(viewer.cookie.is_some());
    let page = viewer.get("/").text();
    assert!(page.contains("viewer (read-only)"));
    assert!(
        !page.contains("action=\"/put\""),
        "no action forms for a read-only user"
    );
    let csrf = viewer.csrf();
    let r = viewer.post(
        &format!("/job/{id}/delete"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin"));
    assert_eq!(
        viewer
            .post("/tube/t/flush", &[("csrf", &csrf), ("confirm", "yes")])
            .status,
        403
    );
    assert!(exists(&mut p, id));
    assert_eq!(
        viewer.get(&format!("/job/{id}")).status,
        200,
        "reading is allowed"
    );

    let mut root = Client::new(port);
    assert_eq!(root.post("/login", &[("token", "root-token")]).status, 303);
    let csrf = root.csrf();
    let r = root.post(
        &format!("/job/{id}/delete"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303);
    assert!(!exists(&mut p, id));
    // Log out: the session is gone.
    assert_eq!(root.post("/logout", &[("csrf", &csrf)]).status, 303);
    assert!(root.cookie.is_none());
}

#[test]
fn hostile_bodies_are_shown_escaped() {
    let (srv, port) = dashboard(&["-z", "200000"]);
    let mut p = srv.conn();
    p.cmd("use evil");
    let script = p.put(0, 0, 60, b"<script>alert('x')</script>\"&");
    let raw = b"\xff\xfe<script>bad()</script>\x00";
    let binary = p.put(0, 0, 60, raw);
    let big: Vec<u8> = std::iter::repeat_n(b'a', 100_000).collect();
    let large = p.put(0, 0, 60, &big);
    let mut b = Client::new(port);

    let page = b.get(&format!("/job/{script}")).text();
    assert!(!page.contains("<script>alert"), "raw markup from a body");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));

    let page = b.get(&format!("/job/{binary}")).text();
    assert!(!page.contains("<script>bad"));
    assert!(page.contains("hex dump"));
    assert!(page.contains("ff fe 3c 73 63 72 69 70"), "hex of the body");
    assert_eq!(
        b.get(&format!("/job/{binary}/body")).body,
        b"\xff\xfe<script>bad()</script>\x00"
    );

    let page = b.get(&format!("/job/{large}")).text();
    assert!(page.contains("Showing the first 65536 of 100000 bytes"));
    assert!(page.contains(&format!("href=\"/job/{large}/body\"")));
    assert_eq!(b.get(&format!("/job/{large}/body")).body.len(), 100_000);

    let page = b.get("/tube/evil").text();
    assert!(
        !page.contains("<script>"),
        "the list shows previews escaped"
    );
    assert!(page.contains("&lt;script&gt;alert"));
    assert!(page.contains(&format!("(binary, {} bytes)", raw.len())));
}

#[test]
fn the_dashboard_is_only_where_it_is_safe() {
    // --http on a public address without TLS or logins: refused.
    let port = free_port();
    let (st, _, err) = run_to_exit(&[
        "-l",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "--http",
        &format!("0.0.0.0:{port}"),
    ]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(err.contains("bind to loopback"), "{err}");
    // --metrics serves what it always has: no dashboard.
    let mport = free_port();
    let _srv = Server::start(&["--metrics", &format!("127.0.0.1:{mport}")]);
    let mut b = Client::new(mport);
    assert_eq!(b.get("/").status, 404);
    assert_eq!(b.get("/assets/app.js").status, 404);
    assert_eq!(b.get("/healthz").status, 200);
}

#[test]
fn the_tube_page_pages_through_list_jobs() {
    let (srv, port) = dashboard(&[]);
    let mut p = srv.conn();
    p.cmd("use many");
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(p.put(0, 0, 60, format!("job {i}").as_bytes()));
    }
    let mut b = Client::new(port);
    let mut seen = Vec::new();
    let mut path = "/tube/many?state=ready&limit=100".to_string();
    loop {
        let page = b.get(&path).text();
        for part in page.split("<a href=\"/job/").skip(1) {
            seen.push(part.split('"').next().unwrap().parse::<u64>().unwrap());
        }
        match page.split("id=\"next\" rel=\"next\" href=\"").nth(1) {
            Some(rest) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}
