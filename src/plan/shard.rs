//! Splitting a plan between the pods of an Indexed Job: disjoint parts that together cover
//! it, chosen by a stable hash of the destination repository.

use super::Plan;
use crate::model::reference::Repository;

/// One of COUNT disjoint parts of a plan. Batches are assigned by a stable hash of the
/// destination repository, so every pod of an Indexed Job agrees without talking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".to_owned());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {} (0..{count})",
                crate::plural::count(count, "shard")
            ));
        }
        Ok(Shard { index, count })
    }

    /// `INDEX/COUNT`, e.g. `0/4`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("expected INDEX/COUNT, got {text:?}"))?;
        let index = index
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index in {text:?}"))?;
        let count = count
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count in {text:?}"))?;
        Shard::new(index, count)
    }

    /// This shard's index (0-based), e.g. for a metrics grouping key.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn owns(&self, repository: &Repository) -> bool {
        self.owns_named(&repository.to_string())
    }

    /// [`Self::owns`] for a repository as its name is written (`host/path`), as the ledger
    /// keeps it.
    pub fn owns_named(&self, repository: &str) -> bool {
        stable_hash(repository.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a: fixed forever, unlike std's hasher, so shards agree across versions and hosts.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Plan {
    /// Only the batches this shard owns.
    pub fn shard(self, shard: Shard) -> Plan {
        Plan {
            batches: self
                .batches
                .into_iter()
                .filter(|b| shard.owns(&b.repository))
                .collect(),
            selections: self.selections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs() {
        assert_eq!(Shard::parse("1/4"), Shard::new(1, 4));
        assert!(Shard::parse("4/4").unwrap_err().contains("out of range"));
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("x").is_err());
    }

    #[test]
    fn the_assignment_is_fixed_forever() {
        // FNV-1a's published test vectors: a repository's shard never changes between
        // versions.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
