//! A command back to its line (without CRLF): what `parse_line` reads as the same command.
//! A cluster logs commands in this form.

use std::fmt::Write as _;

use crate::command::{Backoff, Command, Exhaust, PolicySet, PutHeader};

fn put(s: &mut String, h: &PutHeader) {
    let _ = write!(s, "{} {} {} {}", h.pri, h.delay, h.ttr, h.bytes);
}

impl Command {
    /// The command as a protocol line, without CRLF.
    pub fn line(&self) -> String {
        use Command as C;
        let mut s = String::new();
        let _ = match self {
            C::Put(h) => {
                s.push_str("put ");
                put(&mut s, h);
                Ok(())
            }
            C::PutUnique { key, header } => {
                let _ = write!(s, "put-unique {key} ");
                put(&mut s, header);
                Ok(())
            }
            C::Use(t) => write!(s, "use {t}"),
            C::Reserve => write!(s, "reserve"),
            C::ReserveWithTimeout(t) => write!(s, "reserve-with-timeout {t}"),
            C::ReserveJob(id) => write!(s, "reserve-job {id}"),
            C::Delete(id) => write!(s, "delete {id}"),
            C::Release { id, pri, delay } => write!(s, "release {id} {pri} {delay}"),
            C::Bury { id, pri } => write!(s, "bury {id} {pri}"),
            C::Touch(id) => write!(s, "touch {id}"),
            C::Watch(t) => write!(s, "watch {t}"),
            C::Ignore(t) => write!(s, "ignore {t}"),
            C::Peek(id) => write!(s, "peek {id}"),
            C::PeekReady => write!(s, "peek-ready"),
            C::PeekDelayed => write!(s, "peek-delayed"),
            C::PeekBuried => write!(s, "peek-buried"),
            C::Kick(n) => write!(s, "kick {n}"),
            C::KickJob(id) => write!(s, "kick-job {id}"),
            C::StatsJob(id) => write!(s, "stats-job {id}"),
            C::StatsTube(t) => write!(s, "stats-tube {t}"),
            C::Stats => write!(s, "stats"),
            C::ListTubes => write!(s, "list-tubes"),
            C::ListTubeUsed => write!(s, "list-tube-used"),
            C::ListTubesWatched => write!(s, "list-tubes-watched"),
            C::PauseTube { tube, delay } => write!(s, "pause-tube {tube} {delay}"),
            C::Quit => write!(s, "quit"),
            C::FlushTube(t) => write!(s, "flush-tube {t}"),
            C::ReserveBatch { max, timeout } => write!(s, "reserve-batch {max} {timeout}"),
            C::ListJobs {
                tube,
                state,
                after,
                limit,
            } => write!(s, "list-jobs {tube} {} {after} {limit}", state.name()),
            C::Reprioritize { id, pri } => write!(s, "reprioritize {id} {pri}"),
            C::MoveJob { id, tube } => write!(s, "move-job {id} {tube}"),
            C::ClusterAdd { id, addr } => write!(s, "cluster-add {id} {addr}"),
            C::ClusterRemove(id) => write!(s, "cluster-remove {id}"),
            C::ClusterTransferLeader(id) => write!(s, "cluster-transfer-leader {id}"),
            C::TubePolicy { tube, set: None } => write!(s, "tube-policy {tube}"),
            C::TubePolicy {
                tube,
                set: Some(set),
            } => {
                let _ = write!(s, "tube-policy {tube} ");
                match set {
                    PolicySet::MaxReserves(n) => write!(s, "max-reserves {n}"),
                    PolicySet::MaxReady(n) => write!(s, "max-ready {n}"),
                    PolicySet::OnExhaust(Exhaust::Bury) => write!(s, "on-exhaust bury"),
                    PolicySet::OnExhaust(Exhaust::Delete) => write!(s, "on-exhaust delete"),
                    PolicySet::OnExhaust(Exhaust::Tube(t)) => write!(s, "on-exhaust tube:{t}"),
                    PolicySet::RetryBackoff(Backoff::None) => write!(s, "retry-backoff none"),
                    PolicySet::RetryBackoff(Backoff::Fixed(n)) => {
                        write!(s, "retry-backoff fixed:{n}")
                    }
                    PolicySet::RetryBackoff(Backoff::Exp { base, cap }) => {
                        write!(s, "retry-backoff exp:{base},{cap}")
                    }
                }
            }
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Backoff, Command, Exhaust, ListState, PolicySet, PutHeader};
    use crate::parse_line;

    #[test]
    fn every_command_reads_back_as_itself() {
        use Command as C;
        let h = PutHeader {
            pri: 5,
            delay: 6,
            ttr: 7,
            bytes: 8,
        };
        let t = || "a-tube".to_string();
        let mut all = vec![
            C::Put(h),
            C::PutUnique {
                key: "k1".into(),
                header: h,
            },
            C::Use(t()),
            C::Reserve,
            C::ReserveWithTimeout(9),
            C::ReserveJob(10),
            C::Delete(11),
            C::Release {
                id: 1,
                pri: 2,
                delay: 3,
            },
            C::Bury { id: 4, pri: 5 },
            C::Touch(12),
            C::Watch(t()),
            C::Ignore(t()),
            C::Peek(13),
            C::PeekReady,
            C::PeekDelayed,
            C::PeekBuried,
            C::Kick(14),
            C::KickJob(15),
            C::StatsJob(16),
            C::StatsTube(t()),
            C::Stats,
            C::ListTubes,
            C::ListTubeUsed,
            C::ListTubesWatched,
            C::PauseTube {
                tube: t(),
                delay: 17,
            },
            C::Quit,
            C::FlushTube(t()),
            C::ReserveBatch {
                max: 18,
                timeout: 19,
            },
            C::Reprioritize { id: 20, pri: 21 },
            C::MoveJob { id: 22, tube: t() },
            C::TubePolicy {
                tube: t(),
                set: None,
            },
            C::ClusterAdd {
                id: 4,
                addr: "10.0.0.4:7000".into(),
            },
            C::ClusterRemove(2),
            C::ClusterTransferLeader(3),
        ];
        for state in [
            ListState::Ready,
            ListState::Delayed,
            ListState::Buried,
            ListState::Reserved,
        ] {
            all.push(C::ListJobs {
                tube: t(),
                state,
                after: 3,
                limit: 4,
            });
        }
        for set in [
            PolicySet::MaxReserves(3),
            PolicySet::MaxReady(4),
            PolicySet::OnExhaust(Exhaust::Bury),
            PolicySet::OnExhaust(Exhaust::Delete),
            PolicySet::OnExhaust(Exhaust::Tube("dead".into())),
            PolicySet::RetryBackoff(Backoff::None),
            PolicySet::RetryBackoff(Backoff::Fixed(5)),
            PolicySet::RetryBackoff(Backoff::Exp { base: 2, cap: 60 }),
        ] {
            all.push(C::TubePolicy {
                tube: t(),
                set: Some(set),
            });
        }
        for c in all {
            let line = c.line();
            assert_eq!(parse_line(line.as_bytes(), 100), Ok(c), "{line}");
        }
    }
}
