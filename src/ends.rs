//! The two ends of one copy or one comparison: a repository at its source store and one at
//! its destination store. The copy algorithm writes from one to the other, `verify`
//! compares them. Depends on [`crate::model`] only (the stores are whatever the caller
//! holds: `dyn Source`, or an `Arc` of a store when a transfer outlives a borrow).

use crate::model::reference::Repository;

/// A source repository and a destination repository, each with its store.
pub struct Ends<'a, S: ?Sized, D: ?Sized> {
    pub src: &'a S,
    pub dst: &'a D,
    pub src_repo: &'a Repository,
    pub dst_repo: &'a Repository,
}

impl<S: ?Sized, D: ?Sized> Clone for Ends<'_, S, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: ?Sized, D: ?Sized> Copy for Ends<'_, S, D> {}
