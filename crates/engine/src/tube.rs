//! Tubes: per-tube job sets, waiting connections, pause state, and the registry that creates
//! tubes on demand and drops them when nothing refers to them.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::conn::ConnId;
use super::job::JobId;

pub(crate) type TubeId = u32;

/// The `default` tube always exists.
pub(crate) const DEFAULT_TUBE: TubeId = 0;

#[derive(Debug)]
pub(crate) struct Tube {
    pub(crate) name: Arc<str>,
    /// Index in the registry's `list-tubes` order.
    pub(crate) list_pos: usize,
    /// Ready jobs: a heap of job slots by (priority, id); see `heap`.
    pub(crate) ready: Vec<u32>,
    /// The ready jobs' ready times, bucketed (for the oldest-ready-age metric).
    pub(crate) ages: super::ages::ReadyAges,
    /// Delayed jobs by (ready time, id).
    pub(crate) delayed: BTreeSet<(u64, JobId)>,
    /// Buried jobs in bury order.
    pub(crate) buried: BTreeSet<(u64, JobId)>,
    pub(crate) urgent: u64,
    pub(crate) reserved: u64,
    /// The tube's job ids in each state (indexed by `JobState as usize`), in id order:
    /// `list-jobs` pages through them, `flush-tube` hands them over whole.
    pub(crate) ids: [roaring::RoaringTreemap; 4],
    /// Jobs a flush deleted that are not freed yet: the tube lives until they are.
    pub(crate) dead_jobs: u64,
    /// `put-unique` keys of the tube's jobs (an entry may name a job a flush deleted:
    /// such a key is free).
    pub(crate) unique: FxHashMap<Arc<str>, JobId>,
    /// The tube's policy, if it has one (the tube lives while it does).
    pub(crate) policy: Option<Box<crate::Policy>>,
    /// Session state: this node's connections using, watching and waiting on the tube.
    pub(crate) sess: TubeSessions,
    /// Requested pause in ns; 0 when not paused.
    pub(crate) pause: u64,
    pub(crate) unpause_at: Option<u64>,
    pub(crate) total_jobs: u64,
    pub(crate) cmd_delete: u64,
    pub(crate) cmd_pause: u64,
    pub counters: super::metrics::TubeCounters,
}

/// The part of a tube that is session state (see `Sessions`): a tube lives while it
/// holds jobs or while a connection uses or watches it.
#[derive(Debug, Default)]
pub(crate) struct TubeSessions {
    pub(crate) using: u64,
    pub(crate) watching: u64,
    /// Connections blocked in reserve that watch this tube, by arrival.
    pub(crate) waiters: BTreeSet<(u64, ConnId)>,
    /// This tube's entry in the engine's candidate set, if it has one.
    pub(crate) candidate: Option<(u32, JobId)>,
}

impl Tube {
    fn new(name: Arc<str>, list_pos: usize) -> Self {
        Tube {
            name,
            list_pos,
            ready: Vec::new(),
            ages: Default::default(),
            delayed: BTreeSet::new(),
            buried: BTreeSet::new(),
            urgent: 0,
            reserved: 0,
            ids: Default::default(),
            dead_jobs: 0,
            unique: FxHashMap::default(),
            policy: None,
            sess: TubeSessions::default(),
            pause: 0,
            unpause_at: None,
            total_jobs: 0,
            cmd_delete: 0,
            cmd_pause: 0,
            counters: Default::default(),
        }
    }

    pub(crate) fn job_count(&self) -> u64 {
        self.ready.len() as u64
            + self.delayed.len() as u64
            + self.buried.len() as u64
            + self.reserved
    }

    pub(crate) fn unreferenced(&self) -> bool {
        self.sess.using == 0
            && self.sess.watching == 0
            && self.job_count() == 0
            && self.dead_jobs == 0
            && self.policy.is_none()
    }
}

/// All tubes, addressable by id and by name, with beanstalkd's `list-tubes` order (creation
/// order, with the last tube moved into the place of a removed one).
#[derive(Debug, Default)]
pub(crate) struct Tubes {
    slots: Vec<Option<Tube>>,
    free: Vec<TubeId>,
    by_name: FxHashMap<Arc<str>, TubeId>,
    list: Vec<TubeId>,
}

impl Tubes {
    pub fn new() -> Self {
        let mut t = Tubes::default();
        t.find_or_make("default");
        t
    }

    pub(crate) fn find(&self, name: &str) -> Option<TubeId> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn find_or_make(&mut self, name: &str) -> TubeId {
        if let Some(id) = self.find(name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        let tube = Tube::new(name.clone(), self.list.len());
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(tube);
                id
            }
            None => {
                self.slots.push(Some(tube));
                (self.slots.len() - 1) as TubeId
            }
        };
        self.by_name.insert(name, id);
        self.list.push(id);
        id
    }

    /// Removes the tube. The caller has checked that nothing refers to it.
    pub(crate) fn remove(&mut self, id: TubeId) -> Option<Tube> {
        let tube = self.slots.get_mut(id as usize)?.take()?;
        self.by_name.remove(&tube.name);
        let pos = tube.list_pos;
        self.list.swap_remove(pos);
        if let Some(&moved) = self.list.get(pos) {
            self.get_mut(moved).list_pos = pos;
        }
        self.free.push(id);
        Some(tube)
    }

    /// The tube with this id. Ids held by jobs and connections always name live tubes.
    pub(crate) fn get(&self, id: TubeId) -> &Tube {
        match self.slots.get(id as usize) {
            Some(Some(t)) => t,
            _ => panic!("engine invariant: tube {id} does not exist"),
        }
    }

    /// The tube with this id, if there is one.
    pub(crate) fn try_get(&self, id: TubeId) -> Option<&Tube> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn try_get_mut(&mut self, id: TubeId) -> Option<&mut Tube> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    pub(crate) fn get_mut(&mut self, id: TubeId) -> &mut Tube {
        match self.slots.get_mut(id as usize) {
            Some(Some(t)) => t,
            _ => panic!("engine invariant: tube {id} does not exist"),
        }
    }

    /// The slots (empty ones included), the free list and the `list-tubes` order, for a
    /// snapshot.
    pub(crate) fn parts(&self) -> (&[Option<Tube>], &[TubeId], &[TubeId]) {
        (&self.slots, &self.free, &self.list)
    }

    /// The registry a snapshot's parts describe (the name index rebuilt).
    pub(crate) fn from_parts(
        slots: Vec<Option<Tube>>,
        free: Vec<TubeId>,
        list: Vec<TubeId>,
    ) -> Self {
        let by_name = slots
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (t.name.clone(), i as TubeId)))
            .collect();
        Tubes {
            slots,
            free,
            by_name,
            list,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Tube ids in `list-tubes` order.
    pub(crate) fn ids(&self) -> &[TubeId] {
        &self.list
    }
}
