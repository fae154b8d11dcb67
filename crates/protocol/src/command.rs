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
    Release { id: JobId, pri: u32, delay: u32 },
    Bury { id: JobId, pri: u32 },
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
    PauseTube { tube: String, delay: u32 },
    Quit,
}

/// The arguments of `put <pri> <delay> <ttr> <bytes>`; delay and ttr in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutHeader {
    pub pri: u32,
    pub delay: u32,
    pub ttr: u32,
    pub bytes: u32,
}

impl Command {
    /// The command's name as it appears on the wire (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::Use(_) => "use",
            Command::Reserve => "reserve",
            Command::ReserveWithTimeout(_) => "reserve-with-timeout",
            Command::ReserveJob(_) => "reserve-job",
            Command::Delete(_) => "delete",
            Command::Release { .. } => "release",
            Command::Bury { .. } => "bury",
            Command::Touch(_) => "touch",
            Command::Watch(_) => "watch",
            Command::Ignore(_) => "ignore",
            Command::Peek(_) => "peek",
            Command::PeekReady => "peek-ready",
            Command::PeekDelayed => "peek-delayed",
            Command::PeekBuried => "peek-buried",
            Command::Kick(_) => "kick",
            Command::KickJob(_) => "kick-job",
            Command::StatsJob(_) => "stats-job",
            Command::StatsTube(_) => "stats-tube",
            Command::Stats => "stats",
            Command::ListTubes => "list-tubes",
            Command::ListTubeUsed => "list-tube-used",
            Command::ListTubesWatched => "list-tubes-watched",
            Command::PauseTube { .. } => "pause-tube",
            Command::Quit => "quit",
        }
    }
}
