//! Writes the seed corpora: `cargo run --example make_seeds` (from fuzz/).
//!
//! - corpus/parse_line: real command lines, put with bodies, pipelines, framing errors;
//! - corpus/engine: scripts of typical sessions (encoded in `arbitrary`'s format and
//!   checked to decode back to the same script);
//! - corpus/binlog_reader: sprout segments made with `storage::record::encode`, and a
//!   beanstalkd v7 binlog made by running `/usr/bin/beanstalkd -b` (if installed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use sprout_fuzz::engine::{Cmd, Encode, Op, PutArgs, RestoreArgs, Script};
use sprout_storage::record::{self, Record, Snapshot};

fn corpus(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(target: &str, name: &str, data: &[u8]) {
    let p = corpus(target).join(format!("seed-{name}"));
    std::fs::write(&p, data).unwrap();
    println!("{} ({} bytes)", p.display(), data.len());
}

// ----- parse_line --------------------------------------------------------------------

/// max_job_size selector (index into the target's SIZES), split points, stream; also fed
/// byte by byte unless the stream is long.
fn line_seed(name: &str, size: u8, cuts: &[u16], stream: &[u8]) {
    let bytewise = if stream.len() <= 256 { 8 } else { 0 };
    let mut d = vec![size, cuts.len() as u8 | bytewise];
    for c in cuts {
        d.extend_from_slice(&c.to_le_bytes());
    }
    d.extend_from_slice(stream);
    write("parse_line", name, &d);
}

fn parse_line_seeds() {
    const Z65535: u8 = 5;
    const Z10: u8 = 3;
    line_seed("put", Z65535, &[3, 15], b"put 0 0 60 5\r\nhello\r\n");
    line_seed(
        "put-body-with-crlf-nul",
        Z65535,
        &[14, 16],
        b"put 1024 5 120 6\r\na\r\n\0b\r\r\n",
    );
    let all = b"use emails\r\nput 100 0 30 3\r\nabc\r\nwatch emails\r\nignore default\r\n\
reserve\r\nreserve-with-timeout 0\r\nreserve-job 1\r\ndelete 1\r\nrelease 2 10 3\r\n\
bury 2 5\r\ntouch 2\r\npeek 1\r\npeek-ready\r\npeek-delayed\r\npeek-buried\r\nkick 10\r\n\
kick-job 2\r\nstats-job 2\r\nstats-tube emails\r\nstats\r\nlist-tubes\r\nlist-tube-used\r\n\
list-tubes-watched\r\npause-tube emails 10\r\nquit\r\n";
    line_seed("every-command", Z65535, &[1, 30, 31, 200], all);
    line_seed(
        "put-too-big",
        Z10,
        &[10],
        b"put 0 0 0 20\r\n01234567890123456789\r\nstats\r\n",
    );
    line_seed(
        "put-expected-crlf",
        Z65535,
        &[],
        b"put 0 0 0 1\r\nabc\r\nput 0 0 0 1 x\r\nput 1 2\r\n",
    );
    let mut long = vec![b'x'; 300];
    long.extend_from_slice(b"\r\nlist-tube-used\r\n");
    let mut edge = vec![b'b'; 223];
    edge.extend_from_slice(b"\r\nstats\r\n");
    long.extend_from_slice(&edge);
    line_seed("long-lines", Z65535, &[224, 225, 447], &long);
    line_seed(
        "numbers",
        Z65535,
        &[5],
        b"kick -1\r\nkick +3x\r\ndelete 18446744073709551615\r\ndelete 18446744073709551616\r\n\
reserve-with-timeout 2147483648\r\nput 4294967295 4294967295 4294967295 0\r\n\r\n\
pause-tubedefault 0\r\nstats\rx\r\n",
    );
}

// ----- engine ------------------------------------------------------------------------

fn put(conn: u8, pri: u8, delay: u8, ttr: u8, len: u8) -> Op {
    Op::Put {
        conn,
        args: PutArgs {
            pri,
            delay,
            ttr,
            len,
            fill: b'j',
        },
    }
}

fn cmd(conn: u8, cmd: Cmd) -> Op {
    Op::Cmd { conn, cmd }
}

/// Tick(3) is one second, Tick(5) two, Tick(16 * n + 6) n seconds.
fn secs(n: u16) -> u16 {
    16 * n + 6
}

fn script(start: u32, restored: Vec<RestoreArgs>, ops: Vec<Op>) -> Script {
    let mut r: [Option<RestoreArgs>; 6] = Default::default();
    for (slot, a) in r.iter_mut().zip(restored) {
        *slot = Some(a);
    }
    Script {
        start,
        restored: r,
        ops,
    }
}

fn engine_seed(name: &str, s: Script) {
    let mut data = Vec::new();
    s.encode(&mut data);
    let back = Script::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
    assert_eq!(
        format!("{back:?}"),
        format!("{s:?}"),
        "{name}: the encoding does not decode back"
    );
    // The seed must pass the harness.
    sprout_fuzz::engine::run(&back);
    write("engine", name, &data);
}

fn engine_seeds() {
    use Cmd::*;
    engine_seed(
        "put-reserve-delete",
        script(
            1_700_000_000,
            vec![],
            vec![
                Op::Connect,
                Op::Connect,
                put(0, 10, 0, 60, 5),
                cmd(1, Reserve),
                cmd(1, StatsJob(1)),
                cmd(1, Delete(1)),
                cmd(1, Stats),
            ],
        ),
    );
    engine_seed(
        "waiting-worker",
        script(
            1000,
            vec![],
            vec![
                Op::Connect,
                Op::Connect,
                cmd(1, Watch(1)),
                cmd(1, Ignore(0)),
                cmd(1, Reserve),
                cmd(0, Use(1)),
                put(0, 5, 0, 10, 3),
                cmd(
                    1,
                    Release {
                        id: 1,
                        pri: 7,
                        delay: 2,
                    },
                ),
                cmd(1, PeekDelayed),
                Op::Tick(5),
                cmd(1, ReserveWithTimeout(0)),
                cmd(1, Bury { id: 1, pri: 3 }),
                cmd(0, PeekBuried),
                cmd(0, Kick(1)),
                cmd(0, PeekReady),
                cmd(1, ReserveJob(1)),
                cmd(1, Bury { id: 1, pri: 3 }),
                cmd(0, KickJob(1)),
                cmd(0, StatsTube(1)),
                cmd(0, ListTubes),
                cmd(1, ListTubesWatched),
                cmd(0, ListTubeUsed),
            ],
        ),
    );
    engine_seed(
        "ttr-and-deadline-soon",
        script(
            5,
            vec![],
            vec![
                Op::Connect,
                put(0, 1, 0, 1, 1),
                put(0, 2, 0, 3, 1),
                cmd(0, Reserve),
                cmd(0, Reserve),
                cmd(0, Touch(1)),
                cmd(0, Reserve),
                Op::Sleep(1),
                Op::Tick(3),
                Op::Tick(5),
                cmd(0, Reserve),
                cmd(0, ReserveWithTimeout(2)),
                Op::Tick(secs(3)),
                Op::Tick(secs(3)),
            ],
        ),
    );
    engine_seed(
        "pause-tube",
        script(
            77,
            vec![],
            vec![
                Op::Connect,
                Op::Connect,
                Op::Connect,
                cmd(0, Use(2)),
                cmd(1, Watch(2)),
                cmd(2, Watch(2)),
                cmd(0, PauseTube { tube: 2, delay: 2 }),
                put(0, 0, 0, 5, 2),
                cmd(1, Reserve),
                cmd(2, ReserveWithTimeout(5)),
                Op::Tick(3),
                Op::Tick(5),
                cmd(0, PauseTube { tube: 2, delay: 0 }),
                put(0, 0, 0, 5, 2),
                Op::Tick(1),
                Op::CancelWait(2),
                cmd(0, StatsTube(2)),
            ],
        ),
    );
    engine_seed(
        "restored-and-disconnect",
        script(
            3600,
            vec![
                RestoreArgs {
                    id: 3,
                    tube: 1,
                    state: 2,
                    pri: 5,
                    delay: 0,
                    ttr: 10,
                    deadline: 0,
                    bury_seq: 4,
                    len: 3,
                },
                RestoreArgs {
                    id: 5,
                    tube: 1,
                    state: 3,
                    pri: 1,
                    delay: 2,
                    ttr: 10,
                    deadline: 8,
                    bury_seq: 0,
                    len: 4,
                },
                RestoreArgs {
                    id: 7,
                    tube: 0,
                    state: 1,
                    pri: 17,
                    delay: 0,
                    ttr: 1,
                    deadline: -4,
                    bury_seq: 0,
                    len: 0,
                },
            ],
            vec![
                Op::Connect,
                Op::Connect,
                cmd(0, Watch(1)),
                cmd(0, Reserve),
                cmd(0, Reserve),
                Op::PutHeader {
                    conn: 1,
                    args: PutArgs {
                        pri: 0,
                        delay: 0,
                        ttr: 4,
                        len: 9,
                        fill: b'z',
                    },
                },
                cmd(1, Reserve),
                Op::PutBody(1),
                Op::Disconnect(0),
                Op::RefusePut(8),
                Op::RefusePut(3),
                Op::Tick(secs(2)),
                Op::Connect,
                cmd(1, Kick(255)),
                Op::SetLimits {
                    jobs: Some(2),
                    bytes: None,
                },
                put(1, 0, 0, 0, 1),
                Op::SetDraining,
                put(1, 0, 0, 0, 1),
                Op::CountPut,
                Op::Disconnect(1),
                Op::Disconnect(0),
            ],
        ),
    );
    engine_seed(
        "large-bodies",
        script(
            9,
            vec![],
            vec![
                Op::Connect,
                Op::Connect,
                cmd(1, Reserve),
                put(0, 0, 0, 9, 250),
                put(0, 0, 0, 9, 251),
                put(0, 0, 0, 9, 252),
                cmd(0, Peek(2)),
                cmd(1, Delete(1)),
                cmd(1, Reserve),
                cmd(
                    1,
                    Release {
                        id: 2,
                        pri: 0,
                        delay: 0,
                    },
                ),
                Op::Disconnect(1),
                cmd(0, PeekReady),
            ],
        ),
    );
    engine_seed(
        "protocol-internal",
        script(
            0,
            vec![],
            vec![
                Op::Connect,
                cmd(
                    0,
                    Put(PutArgs {
                        pri: 0,
                        delay: 0,
                        ttr: 0,
                        len: 0,
                        fill: 0,
                    }),
                ),
                cmd(0, Quit),
                cmd(0, Ignore(0)),
                cmd(0, Peek(254)),
                cmd(0, Delete(255)),
            ],
        ),
    );
}

// ----- binlog_reader -----------------------------------------------------------------

fn snap(state: u8, pri: u32, deadline: u64, bury_seq: u64) -> Snapshot {
    Snapshot {
        state,
        pri,
        delay: 0,
        deadline,
        bury_seq,
        reserves: 1,
        timeouts: 0,
        releases: 0,
        buries: u32::from(state == record::STATE_BURIED),
        kicks: 0,
    }
}

fn full(id: u64, tube: &str, state: u8, body: &[u8]) -> Record {
    Record::Full {
        id,
        snap: snap(state, 100, 5_000_000_000_000, 0),
        ttr: 60,
        created: 1_000_000_000,
        tube: tube.into(),
        body: Bytes::copy_from_slice(body),
    }
}

/// flags byte (see the target), then the file.
fn binlog_seed(name: &str, flags: u8, file: &[u8]) {
    let mut d = vec![flags];
    d.extend_from_slice(file);
    write("binlog_reader", name, &d);
}

fn segment(records: &[Record]) -> Vec<u8> {
    let mut seg = record::header(1, 1).to_vec();
    for r in records {
        record::encode(&mut seg, r);
    }
    seg
}

fn binlog_seeds() {
    let records = vec![
        full(1, "default", record::STATE_READY, b"hello"),
        full(2, "emails", record::STATE_DELAYED, b"a\r\n\0b"),
        full(3, "emails", record::STATE_READY, b""),
        Record::Update {
            id: 3,
            snap: snap(record::STATE_BURIED, 7, 0, 4),
        },
        Record::Update {
            id: 1,
            snap: snap(record::STATE_RESERVED, 100, 9_000_000_000, 0),
        },
        Record::Delete { id: 2 },
        full(4, "x", record::STATE_READY, &[0xff; 40]),
    ];
    let seg = segment(&records);
    let mut padded = seg.clone();
    padded.extend_from_slice(&[0; 48]);
    binlog_seed("sprout-segment", 0, &padded);
    // The same records, with the header supplied by flag bit 0.
    binlog_seed("sprout-records", 1 | 16, &seg[record::HEADER_LEN..]);
    // Torn last record: cut in the middle of the last FULL record, zeros after.
    let mut torn = seg[..seg.len() - 20].to_vec();
    torn.extend_from_slice(&[0; 40]);
    binlog_seed("sprout-torn", 0, &torn);
    // Damage in the middle, and not the newest segment (bit 2).
    let mut bad = seg.clone();
    bad[record::HEADER_LEN + 30] ^= 0x10;
    binlog_seed("sprout-damaged-middle", 4, &bad);
    match beanstalkd_binlog() {
        Ok(b) => binlog_seed("beanstalkd-v7", 16, &b),
        Err(e) => eprintln!("no beanstalkd seed: {e}"),
    }
}

/// Runs beanstalkd with a binlog, puts, reserves, buries, releases and deletes a few
/// jobs, stops it, and returns binlog.1 (without its zero-filled tail).
fn beanstalkd_binlog() -> Result<Vec<u8>, String> {
    let exe = "/usr/bin/beanstalkd";
    if !Path::new(exe).exists() {
        return Err(format!("{exe} not installed"));
    }
    let dir = std::env::temp_dir().join(format!("sprout-seed-bean-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = Command::new(exe)
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-f0",
            "-s",
            "65536",
            "-b",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = (|| -> Result<(), String> {
        let t0 = Instant::now();
        let s = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("connect: {e}")),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut send = |line: &[u8], body_lines: usize| -> Result<String, String> {
            w.write_all(line).map_err(|e| e.to_string())?;
            let mut reply = String::new();
            r.read_line(&mut reply).map_err(|e| e.to_string())?;
            for _ in 0..body_lines {
                let mut l = String::new();
                r.read_line(&mut l).map_err(|e| e.to_string())?;
            }
            Ok(reply)
        };
        send(b"put 100 0 60 5\r\nhello\r\n", 0)?; // 1
        send(b"use emails\r\n", 0)?;
        send(b"put 5 0 30 5\r\na\r\n\0b\r\n", 0)?; // 2
        send(b"put 1 100 30 5\r\nlater\r\n", 0)?; // 3 delayed
        send(b"put 2 0 30 3\r\nbye\r\n", 0)?; // 4
        send(b"watch emails\r\n", 0)?;
        let res = send(b"reserve-job 2\r\n", 1)?;
        if !res.starts_with("RESERVED") {
            return Err(format!("reserve-job: {res}"));
        }
        send(b"bury 2 9\r\n", 0)?;
        send(b"reserve-job 4\r\n", 1)?;
        send(b"release 4 3 0\r\n", 0)?;
        send(b"delete 1\r\n", 0)?;
        send(b"put 0 0 10 0\r\n\r\n", 0)?; // 5: empty body
        let _ = send(b"quit\r\n", 0);
        Ok(())
    })();
    // -f0 synced every record: a SIGKILL loses nothing.
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let mut data = Vec::new();
    std::fs::File::open(dir.join("binlog.1"))
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| format!("binlog.1: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    data.truncate(end);
    Ok(data)
}

// ----- minimized crash inputs (crates/server/tests/fuzz_regressions.rs replays them) -

fn crash(target: &str, name: &str, flags: u8, file: &[u8]) {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crashes")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    let mut data = vec![flags];
    data.extend_from_slice(file);
    std::fs::write(d.join(name), &data).unwrap();
    println!("{} ({} bytes)", d.join(name).display(), data.len());
}

fn crashes() {
    // beanstalkd binlog: version 7, name length 0, a job record with id u64::MAX.
    let mut b = 7u32.to_le_bytes().to_vec();
    b.extend_from_slice(&0u32.to_le_bytes());
    let mut jr = [0u8; 80];
    jr[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&jr);
    crash("binlog_reader", "beanstalkd-max-id", 0, &b);
    // The same as a live job: tube "default", ttr 1 s, body "a", ready.
    let mut b = 7u32.to_le_bytes().to_vec();
    b.extend_from_slice(&7u32.to_le_bytes());
    b.extend_from_slice(b"default");
    jr[24..32].copy_from_slice(&1_000_000_000i64.to_le_bytes());
    jr[32..36].copy_from_slice(&3u32.to_le_bytes());
    jr[76] = 1;
    b.extend_from_slice(&jr);
    b.extend_from_slice(b"a\r\n");
    crash("binlog_reader", "beanstalkd-max-id-job", 0, &b);
    // sprout segment: header, DELETE of job u64::MAX.
    let seg = segment(&[Record::Delete { id: u64::MAX }]);
    crash("binlog_reader", "segment-max-id-delete", 0, &seg);
    // sprout segment header saying the next job id is u64::MAX.
    crash(
        "binlog_reader",
        "segment-header-next-id-max",
        0,
        &record::header(1, u64::MAX),
    );
}

fn main() {
    parse_line_seeds();
    engine_seeds();
    binlog_seeds();
    crashes();
}
