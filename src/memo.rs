//! Work done once however many callers need it (copies, checks, attachment walks): one cell
//! per key, the first caller computes, the others wait for its result. Depends on nothing of
//! the crate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::OnceCell;

pub struct Memo<K, V> {
    cells: std::sync::Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash, V> Default for Memo<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, V> Memo<K, V> {
    pub fn new() -> Self {
        Self {
            cells: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn cell(&self, key: K) -> Arc<OnceCell<V>> {
        let mut cells = match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cells.entry(key).or_default().clone()
    }

    /// The value, if some caller has computed it already.
    pub fn value(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        let cells = match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cells.get(key)?.get().cloned()
    }
}
