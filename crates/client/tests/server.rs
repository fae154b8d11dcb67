//! The client against a real sproutd (`target/<profile>/sproutd`, built by `cargo build
//! --bins`, or `$SPROUTD`): every command, pipelining, a unix socket, TLS and tokens.
//! Every wait is bounded; nothing sleeps to synchronise.

#[path = "../../server/tests/common/mod.rs"]
mod common;
#[path = "../../server/tests/pki/mod.rs"]
mod pki;

use std::time::Duration;

use common::{free_port, Server, TempDir};
use pki::{Pki, TlsServer, TOKEN};
use sprout_client::{
    Client, Connector, Error, JobState, PutOutcome, ReleaseOutcome, Response, ServerError, Tls,
    UniqueOutcome,
};

/// Every call of a test is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn addr(s: &Server) -> String {
    match &s.addr {
        common::Addr::Tcp(p) => format!("127.0.0.1:{p}"),
        common::Addr::Unix(p) => format!("unix:{}", p.display()),
    }
}

async fn connect(s: &Server) -> Client {
    Connector::new(&addr(s))
        .timeout(LIMIT)
        .connect()
        .await
        .expect("connect")
}

fn server_err<T: std::fmt::Debug>(r: Result<T, Error>) -> ServerError {
    match r {
        Err(Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn every_beanstalkd_command() {
    let s = Server::start(&[]);
    let mut c = connect(&s).await;
    tokio::time::timeout(LIMIT, async {
        assert_eq!(c.use_tube("t1").await.unwrap(), "t1");
        assert_eq!(c.list_tube_used().await.unwrap(), "t1");
        let a = c.put(5, 0, 60, b"a\r\nbody").await.unwrap();
        let PutOutcome::Inserted(a) = a else {
            panic!("{a:?}")
        };
        let b = c.put(1, 100, 60, b"b").await.unwrap().id();
        assert_eq!(c.peek(a).await.unwrap().body, b"a\r\nbody");
        assert_eq!(c.peek_ready().await.unwrap().id, a);
        assert_eq!(c.peek_delayed().await.unwrap().id, b);
        assert_eq!(server_err(c.peek_buried().await), ServerError::NotFound);

        assert_eq!(c.watch("t1").await.unwrap(), 2);
        assert_eq!(c.ignore("default").await.unwrap(), 1);
        assert_eq!(server_err(c.ignore("t1").await), ServerError::NotIgnored);
        assert_eq!(c.list_tubes_watched().await.unwrap(), ["t1"]);
        let mut tubes = c.list_tubes().await.unwrap();
        tubes.sort();
        assert_eq!(tubes, ["default", "t1"]);

        let j = c.reserve().await.unwrap();
        assert_eq!((j.id, &j.body[..]), (a, &b"a\r\nbody"[..]));
        c.touch(a).await.unwrap();
        assert_eq!(c.stats_job(a).await.unwrap().get("state"), Some("reserved"));
        assert_eq!(c.release(a, 7, 0).await.unwrap(), ReleaseOutcome::Released);
        let j = c.reserve_with_timeout(0).await.unwrap();
        assert_eq!(j.id, a);
        c.bury(a, 9).await.unwrap();
        assert_eq!(c.peek_buried().await.unwrap().id, a);
        assert_eq!(c.kick(10).await.unwrap(), 1);
        let j = c.reserve_job(a).await.unwrap();
        c.bury(j.id, 0).await.unwrap();
        c.kick_job(a).await.unwrap();
        assert_eq!(c.stats_job(a).await.unwrap().get("state"), Some("ready"));
        c.delete(b).await.unwrap();
        assert_eq!(server_err(c.delete(b).await), ServerError::NotFound);

        let st = c.stats_tube("t1").await.unwrap();
        assert_eq!(st.get("name"), Some("t1"));
        assert_eq!(st.num("cmd-delete"), 1);
        let st = c.stats().await.unwrap();
        assert!(st.num("cmd-put") >= 2);
        c.pause_tube("t1", 1).await.unwrap();
        assert_eq!(
            server_err(c.pause_tube("nosuch", 1).await),
            ServerError::NotFound
        );
        assert_eq!(server_err(c.stats_job(999).await), ServerError::NotFound);
    })
    .await
    .expect("within the limit");
    c.quit().await.unwrap();
}

#[tokio::test]
async fn timeouts_and_errors_are_typed() {
    let s = Server::start(&["-z", "10"]);
    let mut c = connect(&s).await;
    tokio::time::timeout(LIMIT, async {
        assert_eq!(
            server_err(c.reserve_with_timeout(0).await),
            ServerError::TimedOut
        );
        assert_eq!(
            server_err(c.put(0, 0, 1, &[b'x'; 11]).await),
            ServerError::JobTooBig
        );
        // A raw line for anything else.
        assert_eq!(
            c.command("frobnicate").await.unwrap(),
            Response::Error(ServerError::UnknownCommand)
        );
        assert!(c.command("stats\r\nstats").await.is_err());
        // A job whose time-to-run is about to end: DEADLINE_SOON.
        c.put(0, 0, 1, b"short").await.unwrap();
        c.reserve().await.unwrap();
        assert_eq!(server_err(c.reserve().await), ServerError::DeadlineSoon);
        assert!(matches!(c.use_tube("a b").await, Err(Error::Invalid(_))));
        // Still in step after all that.
        assert_eq!(c.list_tube_used().await.unwrap(), "default");
        // A reply that is valid but not the command's.
        let (tx, rx) = c.parts();
        tx.command("list-tube-used").unwrap();
        tx.flush().await.unwrap();
        match rx.recv_delete().await {
            Err(Error::Unexpected { command, reply }) => {
                assert_eq!((command, reply.as_str()), ("delete", "USING default"))
            }
            other => panic!("{other:?}"),
        }
    })
    .await
    .expect("within the limit");
}

#[tokio::test]
async fn sproutd_extensions() {
    let s = Server::start(&[]);
    let mut c = connect(&s).await;
    tokio::time::timeout(LIMIT, async {
        c.use_tube("x").await.unwrap();
        let ids: Vec<u64> = {
            let mut v = Vec::new();
            for i in 0..5u8 {
                v.push(c.put(0, 0, 60, &[b'0' + i]).await.unwrap().id());
            }
            v
        };
        assert_eq!(
            c.list_jobs("x", JobState::Ready, 0, 3).await.unwrap(),
            ids[..3]
        );
        assert_eq!(
            c.list_jobs("x", JobState::Ready, ids[2], 10).await.unwrap(),
            ids[3..]
        );
        c.watch("x").await.unwrap();
        let batch = c.reserve_batch(2, 0).await.unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!((batch[0].id, &batch[0].body[..]), (ids[0], &b"0"[..]));
        c.reprioritize(ids[2], 100).await.unwrap();
        assert_eq!(c.stats_job(ids[2]).await.unwrap().num("pri"), 100);
        c.move_job(ids[2], "y").await.unwrap();
        assert_eq!(c.stats_job(ids[2]).await.unwrap().get("tube"), Some("y"));

        let u = c.put_unique("k1", 0, 0, 60, b"once").await.unwrap();
        let UniqueOutcome::Inserted(id) = u else {
            panic!("{u:?}")
        };
        assert_eq!(
            c.put_unique("k1", 0, 0, 60, b"twice").await.unwrap(),
            UniqueOutcome::Exists(id)
        );

        c.set_tube_policy("x", "max-reserves", "3").await.unwrap();
        let p = c.tube_policy("x").await.unwrap();
        assert_eq!(p.num("max-reserves"), 3);
        assert!(matches!(
            c.set_tube_policy("x", "max-reserves", "a b").await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            server_err(c.set_tube_policy("x", "colour", "red").await),
            ServerError::BadFormat
        );

        // The two reserved jobs stay; the rest of x (two ready, the unique one) goes.
        assert_eq!(c.flush_tube("x").await.unwrap(), 3);
        assert_eq!(
            c.list_jobs("x", JobState::Reserved, 0, 10).await.unwrap(),
            [ids[0], ids[1]]
        );
        assert_eq!(server_err(c.auth("tok").await), ServerError::UnknownCommand);
    })
    .await
    .expect("within the limit");
}

#[tokio::test]
async fn pipelining_many_commands_in_one_write() {
    let s = Server::start(&[]);
    let mut c = connect(&s).await;
    const N: usize = 2000;
    tokio::time::timeout(LIMIT, async {
        let (tx, rx) = c.parts();
        tx.use_tube("p").unwrap();
        tx.watch("p").unwrap();
        for i in 0..N {
            tx.put(0, 0, 60, format!("job {i}").as_bytes()).unwrap();
        }
        assert!(tx.queued() > N * 10);
        tx.flush().await.unwrap();
        assert_eq!(tx.queued(), 0);
        assert_eq!(rx.recv_use_tube().await.unwrap(), "p");
        assert_eq!(rx.recv_watch().await.unwrap(), 2);
        let mut ids = Vec::new();
        for _ in 0..N {
            ids.push(rx.recv_put().await.unwrap().id());
        }
        // Reserve and delete them all, pipelined through two tasks.
        let (mut tx, mut rx) = c.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..N {
                match rx.recv().await.unwrap() {
                    Response::Reserved(j) => got.push(j),
                    other => panic!("{other:?}"),
                }
            }
            for _ in 0..N {
                assert_eq!(rx.recv().await.unwrap(), Response::Deleted);
            }
            got
        });
        for _ in 0..N {
            tx.reserve().unwrap();
        }
        tx.flush().await.unwrap();
        // Deletes by id, queued before any reply is read.
        for id in &ids {
            tx.delete(*id).unwrap();
        }
        tx.flush().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
        assert_eq!(got[7].body, b"job 7");
    })
    .await
    .expect("within the limit");
}

#[tokio::test]
async fn big_bodies_and_batches_across_reads() {
    let s = Server::start(&["-z", "2000000"]);
    let mut c = connect(&s).await;
    tokio::time::timeout(LIMIT, async {
        let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        let id = c.put(0, 0, 60, &big).await.unwrap().id();
        assert_eq!(c.peek(id).await.unwrap().body, big);
        for _ in 0..20 {
            c.put(0, 0, 60, &big[..50_000]).await.unwrap();
        }
        let jobs = c.reserve_batch(21, 0).await.unwrap();
        assert_eq!(jobs.len(), 21);
        assert_eq!(jobs[0].body, big);
        assert!(jobs[1..].iter().all(|j| j.body == big[..50_000]));
    })
    .await
    .expect("within the limit");
}

#[tokio::test]
async fn unix_socket() {
    let dir = TempDir::new("client-unix");
    let path = dir.join("s.sock");
    let s = Server::start_unix(&path, &[]);
    let mut c = connect(&s).await;
    let id = c.put(0, 0, 60, b"over unix").await.unwrap().id();
    assert_eq!(c.peek(id).await.unwrap().body, b"over unix");
}

#[tokio::test]
async fn a_closed_connection_is_an_io_error() {
    let s = Server::start(&[]);
    let mut c = connect(&s).await;
    let (tx, rx) = c.parts();
    tx.quit().unwrap();
    tx.flush().await.unwrap();
    match tokio::time::timeout(LIMIT, rx.recv()).await.unwrap() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    let refused = Client::connect(&format!("127.0.0.1:{}", free_port())).await;
    assert!(matches!(refused, Err(Error::Io(_))));
}

// ----- TLS and tokens ------------------------------------------------------------------

#[tokio::test]
async fn tls_with_a_token() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "token");
    let tls_addr = s.tls_addr.clone();
    let tls = Tls::builder().ca_file(&pki.ca).unwrap().build().unwrap();
    let conn = Connector::new(&tls_addr).tls(tls.clone()).timeout(LIMIT);
    let mut c = conn.clone().token(TOKEN).unwrap().connect().await.unwrap();
    let id = c.put(0, 0, 60, b"secret job").await.unwrap().id();
    assert_eq!(c.peek(id).await.unwrap().body, b"secret job");
    c.quit().await.unwrap();

    let wrong = conn.clone().token("wrong").unwrap().connect().await;
    assert_eq!(server_err(wrong), ServerError::Unauthorized);
    // No token: the first command is refused.
    let mut c = conn.connect().await.unwrap();
    assert_eq!(server_err(c.stats().await), ServerError::Unauthorized);
    // A name the certificate does not carry.
    let other = tls.with_server_name("elsewhere.example").unwrap();
    let e = Connector::new(&tls_addr).tls(other).connect().await;
    assert!(matches!(e, Err(Error::Io(_))), "{e:?}");
}

#[tokio::test]
async fn mutual_tls() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "mtls");
    let tls_addr = s.tls_addr.clone();
    let tls = Tls::builder()
        .ca_file(&pki.ca)
        .unwrap()
        .client_cert_files(&pki.client_cert, &pki.client_key)
        .unwrap()
        .server_name("localhost")
        .unwrap()
        .resumption(false)
        .build()
        .unwrap();
    let mut c = Connector::new(&tls_addr)
        .tls(tls)
        .timeout(LIMIT)
        .connect()
        .await
        .unwrap();
    assert_eq!(c.use_tube("m").await.unwrap(), "m");
    // Pipelined over TLS too.
    let (tx, rx) = c.parts();
    for _ in 0..100 {
        tx.put(0, 0, 60, b"x").unwrap();
    }
    tx.flush().await.unwrap();
    for _ in 0..100 {
        rx.recv_put().await.unwrap();
    }
    assert_eq!(
        c.stats_tube("m").await.unwrap().num("current-jobs-ready"),
        100
    );
}

#[test]
fn blocking_front() {
    let s = Server::start(&[]);
    let mut c = sprout_client::blocking::Client::connect(&addr(&s)).unwrap();
    let id = c
        .run(async |c| {
            c.use_tube("b").await?;
            c.put(0, 0, 60, b"blocking").await
        })
        .unwrap()
        .id();
    assert_eq!(c.run(async |c| c.peek(id).await).unwrap().body, b"blocking");
    // The time limit: a reserve that waits longer fails with TimedOut.
    c.set_limit(Duration::from_millis(50));
    match c.run(async |c| c.reserve().await) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
        other => panic!("{other:?}"),
    }
}
