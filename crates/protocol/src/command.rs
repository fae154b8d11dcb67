//! One variant per protocol command, carrying its parsed arguments.

/// A job id as the client sent it (u64, like beanstalkd).
pub(crate) type JobId = u64;

/// A parsed command line. `put`'s body is read separately by the [`crate::Decoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Put(PutHeader),
    Use(String),
    Reserve,
    ReserveWithTimeout(u32),
    ReserveJob(JobId),
    Delete(JobId),
    Release {
        id: JobId,
        pri: u32,
        delay: u32,
    },
    Bury {
        id: JobId,
        pri: u32,
    },
    Touch(JobId),
    Watch(String),
    Ignore(String),
    Peek(JobId),
    PeekReady,
    PeekDelayed,
    PeekBuried,
    Kick(u32),
    KickJob(JobId),
    StatsJob(JobId),
    StatsTube(String),
    Stats,
    ListTubes,
    ListTubeUsed,
    ListTubesWatched,
    PauseTube {
        tube: String,
        delay: u32,
    },
    Quit,
    // sprout's own commands (COMPAT.md; `--strict` turns them off).
    /// `flush-tube <tube>`
    FlushTube(String),
    /// `reserve-batch <max> <timeout>`
    ReserveBatch {
        max: u32,
        timeout: u32,
    },
    /// `list-jobs <tube> <state> <after-id> <limit>`
    ListJobs {
        tube: String,
        state: ListState,
        after: JobId,
        limit: u32,
    },
    /// `put-unique <key> <pri> <delay> <ttr> <bytes>`: its body follows, as for `put`.
    PutUnique {
        key: String,
        header: PutHeader,
    },
    /// `reprioritize <id> <pri>`
    Reprioritize {
        id: JobId,
        pri: u32,
    },
    /// `move-job <id> <tube>`
    MoveJob {
        id: JobId,
        tube: String,
    },
    /// `tube-policy <tube> [<key> <value>]`
    TubePolicy {
        tube: String,
        set: Option<PolicySet>,
    },
    /// `cluster-add <id> <host:port>`: a cluster node adds a member (answered by the
    /// node, through the leader; never logged as a command).
    ClusterAdd {
        id: u64,
        addr: String,
    },
    /// `cluster-remove <id>`
    ClusterRemove(u64),
    /// `cluster-transfer-leader <id>`
    ClusterTransferLeader(u64),
}

/// The job states `list-jobs` can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListState {
    Ready,
    Delayed,
    Buried,
    Reserved,
}

impl ListState {
    pub fn name(self) -> &'static str {
        match self {
            ListState::Ready => "ready",
            ListState::Delayed => "delayed",
            ListState::Buried => "buried",
            ListState::Reserved => "reserved",
        }
    }
}

/// What happens to a job that has been reserved `max-reserves` times and would become
/// ready again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Exhaust {
    #[default]
    Bury,
    Delete,
    /// Moved, ready, to this (dead-letter) tube.
    Tube(String),
}

/// The delay given to a job returned to ready by TTR timeout, disconnect or a release
/// with delay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backoff {
    #[default]
    None,
    /// Always this many seconds.
    Fixed(u32),
    /// `base * 2^(reserves-1)` seconds, at most `cap`, with jitter.
    Exp { base: u32, cap: u32 },
}

/// One `tube-policy <tube> <key> <value>` setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicySet {
    /// 0: off.
    MaxReserves(u32),
    OnExhaust(Exhaust),
    RetryBackoff(Backoff),
    /// 0: off.
    MaxReady(u64),
}

/// The arguments of `put <pri> <delay> <ttr> <bytes>`; delay and ttr in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutHeader {
    pub pri: u32,
    pub delay: u32,
    pub ttr: u32,
    pub bytes: u32,
}

/// What the layers above need to know about a command: one row per command, in
/// [`COMMANDS`], instead of lists repeated where commands are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// As on the wire.
    pub name: &'static str,
    /// Its success reply acknowledges a change to the queue: the reply is sent once the
    /// change is durable, and the command is refused while the log cannot be written.
    pub acknowledges: bool,
    /// Its reply can show a job, its state or its absence: the reply is sent once what it
    /// shows is durable.
    pub reveals: bool,
    /// Not a beanstalkd 1.13 command.
    pub extension: bool,
}

const fn row(name: &'static str, acknowledges: bool, reveals: bool) -> Info {
    Info {
        name,
        acknowledges,
        reveals,
        extension: false,
    }
}

const fn ext(name: &'static str, acknowledges: bool, reveals: bool) -> Info {
    Info {
        name,
        acknowledges,
        reveals,
        extension: true,
    }
}

/// Every command, in the order of [`Command`]'s variants.
pub const COMMANDS: [Info; 35] = [
    row("put", true, false),
    row("use", false, false),
    row("reserve", false, true),
    row("reserve-with-timeout", false, true),
    row("reserve-job", false, true),
    row("delete", true, true),
    row("release", true, true),
    row("bury", true, true),
    row("touch", false, true),
    row("watch", false, false),
    row("ignore", false, false),
    row("peek", false, true),
    row("peek-ready", false, true),
    row("peek-delayed", false, true),
    row("peek-buried", false, true),
    row("kick", true, false),
    row("kick-job", true, true),
    row("stats-job", false, true),
    // Counters may run ahead of the log (see COMPAT.md); a tube's absence is shown.
    row("stats-tube", false, true),
    row("stats", false, false),
    row("list-tubes", false, false),
    row("list-tube-used", false, false),
    row("list-tubes-watched", false, false),
    row("pause-tube", false, true),
    row("quit", false, false),
    ext("flush-tube", true, true),
    ext("reserve-batch", false, true),
    ext("list-jobs", false, true),
    ext("put-unique", true, true),
    ext("reprioritize", true, true),
    ext("move-job", true, true),
    ext("tube-policy", true, true),
    ext("cluster-add", false, false),
    ext("cluster-remove", false, false),
    ext("cluster-transfer-leader", false, false),
];

impl Command {
    /// The command's row in [`COMMANDS`].
    pub fn info(&self) -> &'static Info {
        let i = match self {
            Command::Put(_) => 0,
            Command::Use(_) => 1,
            Command::Reserve => 2,
            Command::ReserveWithTimeout(_) => 3,
            Command::ReserveJob(_) => 4,
            Command::Delete(_) => 5,
            Command::Release { .. } => 6,
            Command::Bury { .. } => 7,
            Command::Touch(_) => 8,
            Command::Watch(_) => 9,
            Command::Ignore(_) => 10,
            Command::Peek(_) => 11,
            Command::PeekReady => 12,
            Command::PeekDelayed => 13,
            Command::PeekBuried => 14,
            Command::Kick(_) => 15,
            Command::KickJob(_) => 16,
            Command::StatsJob(_) => 17,
            Command::StatsTube(_) => 18,
            Command::Stats => 19,
            Command::ListTubes => 20,
            Command::ListTubeUsed => 21,
            Command::ListTubesWatched => 22,
            Command::PauseTube { .. } => 23,
            Command::Quit => 24,
            Command::FlushTube(_) => 25,
            Command::ReserveBatch { .. } => 26,
            Command::ListJobs { .. } => 27,
            Command::PutUnique { .. } => 28,
            Command::Reprioritize { .. } => 29,
            Command::MoveJob { .. } => 30,
            Command::TubePolicy { .. } => 31,
            Command::ClusterAdd { .. } => 32,
            Command::ClusterRemove(_) => 33,
            Command::ClusterTransferLeader(_) => 34,
        };
        &COMMANDS[i]
    }

    /// A membership command (`cluster-add`, `cluster-remove`, `cluster-transfer-leader`):
    /// answered by the server itself, never by the engine.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Command::ClusterAdd { .. }
                | Command::ClusterRemove(_)
                | Command::ClusterTransferLeader(_)
        )
    }

    /// The command's name as it appears on the wire (for logs).
    pub fn name(&self) -> &'static str {
        self.info().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_line;

    /// Each row names its command: the line `name` (with an argument where one is needed)
    /// parses to a command whose row it is.
    #[test]
    fn rows_match_commands() {
        for info in COMMANDS {
            let line = match info.name {
                "put" => "put 0 0 1 1".to_string(),
                "use" | "watch" | "ignore" | "stats-tube" => format!("{} t", info.name),
                "pause-tube" => "pause-tube t 1".to_string(),
                "reserve-with-timeout" | "kick" => format!("{} 1", info.name),
                "release" => "release 1 1 1".to_string(),
                "bury" => "bury 1 1".to_string(),
                "reserve-job" | "delete" | "touch" | "peek" | "kick-job" | "stats-job" => {
                    format!("{} 1", info.name)
                }
                "flush-tube" | "tube-policy" => format!("{} t", info.name),
                "reserve-batch" => "reserve-batch 2 0".to_string(),
                "list-jobs" => "list-jobs t ready 0 10".to_string(),
                "put-unique" => "put-unique k 0 0 1 1".to_string(),
                "reprioritize" => "reprioritize 1 1".to_string(),
                "move-job" => "move-job 1 t".to_string(),
                "cluster-add" => "cluster-add 4 127.0.0.1:7000".to_string(),
                "cluster-remove" | "cluster-transfer-leader" => format!("{} 2", info.name),
                n => n.to_string(),
            };
            let cmd = parse_line(line.as_bytes(), 100).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(cmd.info(), &info, "{line}");
        }
    }
}
