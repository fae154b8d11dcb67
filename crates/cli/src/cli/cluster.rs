//! `sprout cluster status`: a cluster node's view of its cluster, from sproutd's own
//! `cluster-status` command (answered by cluster nodes only); `sprout cluster add`,
//! `remove` and `transfer-leader`: membership changes, through sproutd's `cluster-add`,
//! `cluster-remove` and `cluster-transfer-leader` (carried out by the leader).

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::client::{Client, Error, Result};
use super::text::{self, Align};
use super::yaml::Stats;
use crate::conn::Target;

/// One member's row: id, address, role, matched index and lag (the last two known on the
/// leader only).
struct Member {
    id: u64,
    addr: String,
    role: &'static str,
    matched: Option<u64>,
    lag: Option<u64>,
}

fn members(s: &Stats) -> Vec<Member> {
    let leader = s.num("leader-id");
    s.get("members")
        .unwrap_or("")
        .split(',')
        .filter_map(|id| id.parse::<u64>().ok())
        .map(|id| {
            let key = |k: &str| format!("member-{id}-{k}");
            let opt = |k: &str| s.get(&key(k)).and_then(|v| v.parse().ok());
            Member {
                id,
                addr: s.get(&key("addr")).unwrap_or("").to_string(),
                role: if id == leader {
                    "leader"
                } else if s.get(&key("voter")) == Some("true") {
                    "voter"
                } else {
                    "learner"
                },
                matched: opt("matched-index"),
                lag: opt("lag"),
            }
        })
        .collect()
}

const HEAD: [&str; 8] = [
    "node-id",
    "role",
    "leader-id",
    "term",
    "commit-index",
    "applied-index",
    "last-log-index",
    "leader-changes",
];

pub fn status(t: &Target, json: bool) -> Result<()> {
    let mut c = Client::connect(t)?;
    let s = c.stats("cluster-status")?;
    let ms = members(&s);
    if json {
        let mut m = Map::new();
        for k in HEAD {
            let v = match k {
                "role" => Value::String(s.get(k).unwrap_or("").to_string()),
                _ => Value::from(s.num(k)),
            };
            m.insert(k.to_string(), v);
        }
        let list: Vec<Value> = ms
            .iter()
            .map(|x| {
                json!({"id": x.id, "addr": x.addr, "role": x.role,
                       "matched-index": x.matched, "lag": x.lag})
            })
            .collect();
        m.insert("members".into(), Value::Array(list));
        return text::emit_json(&Value::Object(m));
    }
    let mut out = format!(
        "node {} ({}), leader {}, term {}, commit {}, applied {}\n",
        s.num("node-id"),
        s.get("role").unwrap_or("?"),
        match s.num("leader-id") {
            0 => "unknown".to_string(),
            l => l.to_string(),
        },
        s.num("term"),
        s.num("commit-index"),
        s.num("applied-index"),
    );
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = ms
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                x.addr.clone(),
                x.role.to_string(),
                x.matched.map_or_else(dash, |v| v.to_string()),
                x.lag.map_or_else(dash, |v| v.to_string()),
            ]
        })
        .collect();
    out.push_str(&text::table(
        &["id", "address", "role", "matched", "lag"],
        &[
            Align::Right,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
        ],
        &rows,
    ));
    text::emit_str(&out)
}

/// How long a membership change may take: adding a node waits for it to catch up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// `ID=HOST:PORT`, as in `--cluster`.
pub fn parse_member(s: &str) -> std::result::Result<(u64, String), String> {
    let bad = || format!("{s:?}: expected ID=HOST:PORT, e.g. 4=10.0.0.4:7000");
    let (id, addr) = s.split_once('=').ok_or_else(bad)?;
    let id: u64 = id.parse().map_err(|_| bad())?;
    let port = addr.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
    match port {
        Some((h, Ok(_))) if id > 0 && !h.is_empty() && !addr.contains(char::is_whitespace) => {
            Ok((id, addr.to_string()))
        }
        _ => Err(bad()),
    }
}

/// Sends a membership command; `want` is its success reply.
fn change(t: &Target, name: &str, line: &str, want: &str, done: &str) -> Result<()> {
    let mut c = Client::connect(t)?;
    c.set_limit(CHANGE_TIMEOUT);
    let r = c.call(line)?;
    if r.head == want {
        return text::emit_str(&format!("{done}\n"));
    }
    if r.unsupported() {
        return Err(c.unsupported(name, &r));
    }
    Err(Error::server(line, &r.head))
}

/// `sprout cluster add ID=HOST:PORT`.
pub fn add(t: &Target, id: u64, addr: &str) -> Result<()> {
    change(
        t,
        "cluster-add",
        &format!("cluster-add {id} {addr}"),
        "ADDED",
        &format!("node {id} ({addr}) added as a voter"),
    )
}

/// `sprout cluster remove ID`.
pub fn remove(t: &Target, id: u64) -> Result<()> {
    change(
        t,
        "cluster-remove",
        &format!("cluster-remove {id}"),
        "REMOVED",
        &format!("node {id} removed"),
    )
}

/// `sprout cluster transfer-leader ID`.
pub fn transfer_leader(t: &Target, id: u64) -> Result<()> {
    change(
        t,
        "cluster-transfer-leader",
        &format!("cluster-transfer-leader {id}"),
        "TRANSFERRED",
        &format!("node {id} is the leader"),
    )
}
