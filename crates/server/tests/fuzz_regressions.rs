//! Crashes found by the fuzz targets under fuzz/ (see fuzz/README.md), replayed through the
//! same code paths as plain tests. The minimized inputs are committed under fuzz/crashes/
//! (a flags byte, 0 here, then the file; `cargo run --example make_seeds` in fuzz/ writes
//! them); each test checks that it builds the same bytes.

mod common;

use std::path::Path;

use common::*;
use sprout_engine::{Effects, Engine, Input, Output, SECOND};
use sprout_protocol::command::PutHeader;
use sprout_storage::{beanstalkd, record, recover};

const NOW: u64 = 1_700_000_000 * SECOND;
const BEANSTALKD_MAX_ID: &str = "beanstalkd-max-id";
const BEANSTALKD_MAX_ID_JOB: &str = "beanstalkd-max-id-job";
const SEGMENT_MAX_ID_DELETE: &str = "segment-max-id-delete";
const SEGMENT_HEADER_NEXT_ID_MAX: &str = "segment-header-next-id-max";

/// A committed crash input without its flags byte.
fn crash_input(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/crashes/binlog_reader")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(data[0], 0, "flags byte");
    data[1..].to_vec()
}

/// beanstalkd v7: version 7, then one short record (name length 0) deleting job 2^64-1.
fn beanstalkd_max_id_binlog() -> Vec<u8> {
    let mut b = 7u32.to_le_bytes().to_vec();
    b.extend_from_slice(&0u32.to_le_bytes());
    let mut jr = [0u8; 80];
    jr[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&jr);
    b
}

/// A sprout segment header, then one DELETE record of job 2^64-1.
fn segment_max_id_delete() -> Vec<u8> {
    let mut b = v1_header(1, 1).to_vec();
    record::encode(&mut b, &record::Record::Delete { id: u64::MAX });
    b
}

/// A segment header in format version 1 (as when the crashes were found; still read).
fn v1_header(seq: u32, next_id: u64) -> [u8; record::HEADER_LEN] {
    let mut h = record::header(seq, next_id);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// A put on the engine gets a usable answer (no panic, never job id 0).
fn put(e: &mut Engine) {
    let mut fx = Effects::default();
    e.apply(NOW, Input::Connect, &mut fx);
    let Output::Conn(c) = fx.output else {
        panic!("connect")
    };
    e.apply(NOW, Input::PutHeader(c), &mut fx);
    let Output::Job(id) = fx.output else {
        panic!("put header")
    };
    let h = PutHeader {
        pri: 0,
        delay: 0,
        ttr: 1,
        bytes: 1,
    };
    let r = match e.put_admit(c, id, h, bytes::Bytes::from_static(b"x"), NOW) {
        Ok(p) => {
            e.apply(NOW, Input::Put(p), &mut fx);
            match fx.output {
                Output::Reply(r) => r,
                o => panic!("put gave {o:?}"),
            }
        }
        Err(r) => r,
    };
    if let sprout_protocol::Reply::Inserted(got) = r {
        assert_ne!(got, 0, "job id 0 handed out");
    }
    e.check_invariants().unwrap();
}

/// sproutd starts on `dir` and answers a put without handing out job id 0.
fn start_and_put(dir: &Path) {
    let s = Server::start(&["-b", dir.to_str().unwrap()]);
    let mut c = s.conn();
    let r = c.put_raw(0, 0, 60, b"x");
    assert!(r.starts_with("INSERTED ") || r == "OUT_OF_MEMORY", "{r}");
    assert_ne!(r, "INSERTED 0");
    assert_eq!(c.cmd("list-tube-used"), "USING default");
}

#[test]
fn beanstalkd_binlog_with_job_id_u64_max() {
    let dir = TempDir::new("bean-max");
    let file = beanstalkd_max_id_binlog();
    assert_eq!(file, crash_input(BEANSTALKD_MAX_ID));
    std::fs::write(dir.path().join("binlog.1"), file).unwrap();
    // The reader itself is fine; it is the id arithmetic after it.
    let (jobs, max_id, _) = beanstalkd::read(dir.path());
    assert!(jobs.is_empty());
    assert_eq!(max_id, u64::MAX);
    start_and_put(dir.path());
}

#[test]
fn restore_job_id_u64_max() {
    let dir = TempDir::new("bean-max-job");
    // The same record, but a live job: name "default", state ready, body "a".
    let mut b = 7u32.to_le_bytes().to_vec();
    b.extend_from_slice(&7u32.to_le_bytes());
    b.extend_from_slice(b"default");
    let mut jr = [0u8; 80];
    jr[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    jr[24..32].copy_from_slice(&(SECOND as i64).to_le_bytes()); // ttr
    jr[32..36].copy_from_slice(&3u32.to_le_bytes()); // body size with CRLF
    jr[76] = 1; // ready
    b.extend_from_slice(&jr);
    b.extend_from_slice(b"a\r\n");
    assert_eq!(b, crash_input(BEANSTALKD_MAX_ID_JOB));
    std::fs::write(dir.path().join("binlog.1"), &b).unwrap();
    let (jobs, _, warnings) = beanstalkd::read(dir.path());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(jobs.len(), 1);
    let mut e = Engine::new();
    for j in jobs {
        e.restore(j, NOW);
    }
    e.check_invariants().unwrap();
    put(&mut e);
}

// The same arithmetic in sprout's own reader (found reviewing the first crash; the fuzz
// input is the flags byte 0x00 then these 41 bytes): a segment header followed by one
// DELETE record of job 2^64-1.
#[test]
fn segment_record_with_job_id_u64_max() {
    let dir = TempDir::new("seg-max");
    assert_eq!(segment_max_id_delete(), crash_input(SEGMENT_MAX_ID_DELETE));
    std::fs::write(
        recover::segment_path(dir.path(), 1),
        segment_max_id_delete(),
    )
    .unwrap();
    if let Ok(rec) = recover::recover(dir.path(), false) {
        let mut e = Engine::new();
        for j in rec.jobs {
            e.restore(j, NOW);
        }
        e.set_next_job_id(rec.next_id);
        put(&mut e);
    }
    std::fs::write(
        recover::segment_path(dir.path(), 1),
        segment_max_id_delete(),
    )
    .unwrap();
    start_and_put(dir.path());
}

// Also found reviewing the first crash (fuzz input: flags 0x00, then the 24-byte header):
// a segment header (it has no checksum) whose next job id is 2^64-1, and no records. The
// server starts, the first put gets job id u64::MAX and `next_job += 1`
// (`Engine::put_header`; a saturating add since) overflows: a panic with overflow checks; in
// a release build the next put gets job id 0, whose FULL record recovery then rejects
// ("job id 0"), so the following start fails without --binlog-salvage.
#[test]
fn segment_header_next_id_u64_max() {
    let dir = TempDir::new("seg-next");
    let header = v1_header(1, u64::MAX);
    assert_eq!(header.to_vec(), crash_input(SEGMENT_HEADER_NEXT_ID_MAX));
    std::fs::write(recover::segment_path(dir.path(), 1), header).unwrap();
    start_and_put(dir.path());
}

// Found reviewing recover's torn-write check while writing the binlog_reader target (too big
// for the fuzzer's 4 KiB inputs): a record in the newest segment whose checksum fails, with
// only zeros after the length it claims, is a torn write only if no valid record starts
// anywhere after it, and `valid_record_after` (crates/storage/src/recover.rs) tries `decode` at
// every later offset, checksumming up to the length read there. A large job body of binary
// data (here 1 MiB of the u32 0x00400000) cut short by a crash in a 10 MiB segment makes that
// about 800k checksums of 4 MiB each: 41 s in a release build for this input, ~40 s per MiB
// of torn body, growing with the body and the segment size. Startup after such a crash
// takes minutes to hours.
#[test]
fn torn_large_binary_record_recovers_quickly() {
    let dir = TempDir::new("torn-large");
    let mut seg = record::header(1, 1).to_vec();
    // A FULL record claiming 8 MiB (its checksum cannot match what reached the disk) ...
    seg.extend_from_slice(&(8u32 << 20).to_le_bytes());
    seg.extend_from_slice(&0u32.to_le_bytes());
    // ... of which 1 MiB was written ...
    for _ in 0..(1 << 18) {
        seg.extend_from_slice(&0x0040_0000u32.to_le_bytes());
    }
    // ... in a preallocated 10 MiB segment.
    seg.resize(10 << 20, 0);
    let seg_path = recover::segment_path(dir.path(), 1);
    std::fs::write(&seg_path, &seg).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(recover::recover(&d, false).map(|r| r.jobs.len()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(r) => assert_eq!(
            r.map_err(|e| e.to_string()),
            Ok(0),
            "the torn record is cut off"
        ),
        Err(_) => panic!("recovering a 10 MiB segment with a torn record took over 10 s"),
    }
}
