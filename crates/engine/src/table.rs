//! All jobs: a slab of job records and an index from id to slot. The index stores only
//! 4-byte slot numbers and finds entries by hashing the id stored in the slot, so the
//! per-job cost of the index is about 10 bytes.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::job::{Job, JobId};

#[derive(Default)]
pub(crate) struct JobTable {
    slots: Vec<Option<Job>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: FxBuildHasher,
    /// Jobs deleted by `flush-tube` whose memory is not freed yet (a few thousand at a
    /// time, see `Engine::free_dead`): every lookup treats them as gone.
    dead: roaring::RoaringTreemap,
    /// `dead.len()`, kept so that lookups test a number, not the set (the put path).
    dead_n: u64,
}

impl std::fmt::Debug for JobTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobTable({} jobs)", self.index.len())
    }
}

impl JobTable {
    fn hash(&self, id: JobId) -> u64 {
        self.hasher.hash_one(id)
    }

    #[inline]
    fn slot_of(&self, id: JobId) -> Option<u32> {
        if self.dead_n != 0 && self.dead.contains(id) {
            return None;
        }
        self.any_slot_of(id)
    }

    /// `slot_of`, dead jobs included.
    #[inline]
    fn any_slot_of(&self, id: JobId) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(id), |&s| {
                slots[s as usize].as_ref().is_some_and(|j| j.id == id)
            })
            .copied()
    }

    pub(crate) fn get(&self, id: &JobId) -> Option<&Job> {
        let s = self.slot_of(*id)?;
        self.slots[s as usize].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        let s = self.slot_of(*id)?;
        self.slots[s as usize].as_mut()
    }

    /// The job in a slot (for the ready heaps, which hold slots).
    pub(crate) fn at(&self, slot: u32) -> &Job {
        match self.slots.get(slot as usize) {
            Some(Some(j)) => j,
            _ => panic!("engine invariant: job slot {slot} is empty"),
        }
    }

    pub(crate) fn at_mut(&mut self, slot: u32) -> &mut Job {
        match self.slots.get_mut(slot as usize) {
            Some(Some(j)) => j,
            _ => panic!("engine invariant: job slot {slot} is empty"),
        }
    }

    pub(crate) fn slot(&self, id: JobId) -> Option<u32> {
        self.slot_of(id)
    }

    pub(crate) fn contains_key(&self, id: &JobId) -> bool {
        self.slot_of(*id).is_some()
    }

    /// Inserts a job whose id is not present.
    pub(crate) fn insert(&mut self, id: JobId, job: Job) {
        debug_assert_eq!(id, job.id);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(job);
                s
            }
            None => {
                self.slots.push(Some(job));
                (self.slots.len() - 1) as u32
            }
        };
        let h = self.hash(id);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(h, slot, |&s| {
            hasher.hash_one(slots[s as usize].as_ref().map_or(0, |j| j.id))
        });
    }

    /// Inserts `job` unless a job with its id is present (then hands it back): one hash
    /// lookup for both.
    pub(crate) fn try_insert(&mut self, job: Job) -> Result<(), Job> {
        let id = job.id;
        let h = self.hash(id);
        let (slots, hasher) = (&self.slots, &self.hasher);
        let entry = self.index.entry(
            h,
            |&s| slots[s as usize].as_ref().is_some_and(|j| j.id == id),
            |&s| hasher.hash_one(slots[s as usize].as_ref().map_or(0, |j| j.id)),
        );
        let hashbrown::hash_table::Entry::Vacant(v) = entry else {
            return Err(job);
        };
        let slot = match self.free.last() {
            Some(&s) => s,
            None => self.slots.len() as u32,
        };
        v.insert(slot);
        if self.free.pop().is_some() {
            self.slots[slot as usize] = Some(job);
        } else {
            self.slots.push(Some(job));
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, id: &JobId) -> Option<Job> {
        let h = self.hash(*id);
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(h, |&s| {
                slots[s as usize].as_ref().is_some_and(|j| j.id == *id)
            })
            .ok()?;
        let (slot, _) = entry.remove();
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    /// Jobs held, dead ones (not freed yet) included.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Live jobs, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        let (dead, any) = (&self.dead, self.dead_n != 0);
        self.slots
            .iter()
            .flatten()
            .filter(move |j| !any || !dead.contains(j.id))
            .map(|j| (&j.id, j))
    }

    /// Every job held, dead ones (not freed yet) included.
    pub(crate) fn iter_all(&self) -> impl Iterator<Item = &Job> {
        self.slots.iter().flatten()
    }

    /// From now on these jobs are gone to every lookup; their memory is freed later by
    /// `free_dead`.
    pub(crate) fn kill(&mut self, ids: roaring::RoaringTreemap) {
        self.dead |= ids;
        self.dead_n = self.dead.len();
    }

    pub(crate) fn dead_count(&self) -> u64 {
        self.dead_n
    }

    /// Frees up to `max` dead jobs, handing them to `out` (lowest ids first).
    pub(crate) fn free_dead(&mut self, max: usize, out: &mut Vec<Job>) {
        let ids: Vec<JobId> = self.dead.iter().take(max).collect();
        for id in ids {
            if self.dead.remove(id) {
                self.dead_n -= 1;
            }
            if let Some(j) = self.remove(&id) {
                out.push(j);
            }
        }
    }

    /// The slots (empty ones included), the free list and the dead set, for a snapshot.
    pub(crate) fn parts(&self) -> (&[Option<Job>], &[u32], &roaring::RoaringTreemap) {
        (&self.slots, &self.free, &self.dead)
    }

    /// The table a snapshot's parts describe: every job in its slot, the index rebuilt.
    pub(crate) fn from_parts(
        slots: Vec<Option<Job>>,
        free: Vec<u32>,
        dead: roaring::RoaringTreemap,
    ) -> Self {
        let mut t = JobTable {
            slots,
            free,
            dead_n: dead.len(),
            dead,
            ..Default::default()
        };
        for (s, j) in t.slots.iter().enumerate() {
            if let Some(j) = j {
                let h = t.hasher.hash_one(j.id);
                let (slots, hasher) = (&t.slots, &t.hasher);
                t.index.insert_unique(h, s as u32, |&s| {
                    hasher.hash_one(slots[s as usize].as_ref().map_or(0, |j| j.id))
                });
            }
        }
        t
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &JobId> {
        self.iter().map(|(id, _)| id)
    }
}
