//! `list-jobs <tube> <state> <after-id> <limit>`: the ids of the tube's jobs in a state,
//! ascending, after `after-id`: O(limit) after an O(log n) seek in the tube's id set for
//! that state.

use sprout_protocol::{ListState, Reply};

use crate::queue::{BURIED, DELAYED, READY, RESERVED};
use crate::{Engine, JobId, Reveal};

impl Engine {
    pub(super) fn list_jobs(
        &mut self,
        name: &str,
        state: ListState,
        after: JobId,
        limit: u32,
    ) -> Reply {
        self.s.ext.list_jobs += 1;
        // It shows which jobs are in a state: wait until everything logged so far is
        // durable (an inspection command; a delete just made must not be undone).
        self.reveal = Reveal::All;
        let Some(t) = self.q.tubes.find(name) else {
            return Reply::Ids(Vec::new());
        };
        let set = match state {
            ListState::Ready => READY,
            ListState::Delayed => DELAYED,
            ListState::Buried => BURIED,
            ListState::Reserved => RESERVED,
        };
        let Some(first) = after.checked_add(1) else {
            return Reply::Ids(Vec::new());
        };
        let mut it = self.q.tubes.get(t).ids[set].iter();
        it.advance_to(first);
        Reply::Ids(it.take(limit as usize).collect())
    }
}
