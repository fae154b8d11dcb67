//! `sprout cluster status`: a cluster node's view of its cluster, from sproutd's own
//! `cluster-status` command (answered by cluster nodes only).

use serde_json::{json, Map, Value};

use super::client::{Client, Result};
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
