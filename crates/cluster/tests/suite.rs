//! openraft's storage conformance suite against sprout's log and state machine storage.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use sprout_cluster::log::LogStore;
use sprout_cluster::sm::{Apply, StateMachine};
use sprout_cluster::{NodeId, TypeConfig};

/// Applies by remembering what it was given.
#[derive(Default)]
struct Record(Vec<(u64, u64, NodeId, Vec<u8>)>);

impl Apply for Record {
    fn apply(&mut self, index: u64, now: u64, origin: NodeId, item: &[u8]) {
        self.0.push((index, now, origin, item.to_vec()));
    }
    fn snapshot(&mut self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = serde_json::from_slice(s).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A directory removed when the test is done.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "sprout-cluster-suite-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Record>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine<Record>), StorageError<NodeId>> {
        let dir = temp_dir();
        let log = LogStore::open(&dir.0).expect("open the log");
        let sm = StateMachine::open(Record::default(), &dir.0).expect("open the state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the suite passes");
}
