//! A tube's ready queue: a binary min-heap of job slots ordered by (priority, id). Each job
//! records its position (`heap_pos`), so removing a job from the middle is O(log n). Four
//! bytes per ready job.

use super::table::JobTable;

fn key(jobs: &JobTable, slot: u32) -> (u32, u64) {
    let j = jobs.at(slot);
    (j.pri, j.id)
}

fn set(heap: &mut [u32], jobs: &mut JobTable, i: usize, slot: u32) {
    heap[i] = slot;
    jobs.at_mut(slot).heap_pos = i as u32;
}

fn sift_up(heap: &mut [u32], jobs: &mut JobTable, mut i: usize) {
    let slot = heap[i];
    let k = key(jobs, slot);
    while i > 0 {
        let parent = (i - 1) / 2;
        if key(jobs, heap[parent]) <= k {
            break;
        }
        let p = heap[parent];
        set(heap, jobs, i, p);
        i = parent;
    }
    set(heap, jobs, i, slot);
}

fn sift_down(heap: &mut [u32], jobs: &mut JobTable, mut i: usize) {
    let n = heap.len();
    let slot = heap[i];
    let k = key(jobs, slot);
    loop {
        let l = 2 * i + 1;
        if l >= n {
            break;
        }
        let r = l + 1;
        let c = if r < n && key(jobs, heap[r]) < key(jobs, heap[l]) {
            r
        } else {
            l
        };
        if key(jobs, heap[c]) >= k {
            break;
        }
        let cs = heap[c];
        set(heap, jobs, i, cs);
        i = c;
    }
    set(heap, jobs, i, slot);
}

pub(crate) fn push(heap: &mut Vec<u32>, jobs: &mut JobTable, slot: u32) {
    heap.push(slot);
    let i = heap.len() - 1;
    sift_up(heap, jobs, i);
}

/// Removes the slot at position `i`.
pub(crate) fn remove(heap: &mut Vec<u32>, jobs: &mut JobTable, i: usize) {
    let Some(last) = heap.pop() else { return };
    if i < heap.len() {
        set(heap, jobs, i, last);
        sift_down(heap, jobs, i);
        let j = jobs.at(last).heap_pos as usize;
        sift_up(heap, jobs, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::job::{Job, JobState};

    fn job(id: u64, pri: u32) -> Job {
        Job {
            id,
            created: 0,
            lsn: 0,
            deadline: 0,
            seq: 0,
            reserves: 0,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
            pri,
            tube: 0,
            delay: 0,
            ttr: 1,
            file: 0,
            heap_pos: 0,
            state: JobState::Ready,
            body: Body::new(b""),
        }
    }

    #[test]
    fn orders_by_pri_then_id_and_removes_from_the_middle() {
        let mut jobs = JobTable::default();
        let mut heap = Vec::new();
        let pris = [5u32, 1, 5, 0, 1, 9, 3, 3, 7, 0];
        for (i, &p) in pris.iter().enumerate() {
            let id = i as u64 + 1;
            jobs.insert(id, job(id, p));
            let slot = jobs.slot(id).unwrap();
            push(&mut heap, &mut jobs, slot);
        }
        // Remove job 6 (pri 9) and job 3 (pri 5) from wherever they are.
        for id in [6u64, 3] {
            let pos = jobs.get(&id).unwrap().heap_pos as usize;
            remove(&mut heap, &mut jobs, pos);
        }
        let mut out = vec![];
        while let Some(&top) = heap.first() {
            out.push(jobs.at(top).id);
            remove(&mut heap, &mut jobs, 0);
        }
        assert_eq!(out, vec![4, 10, 2, 5, 7, 8, 1, 9]);
    }
}
