//! What the ledger holds and the pure steps on it: its JSON form (with a format number a
//! newer writer raises, so that an older reader refuses it rather than misreads it), the
//! merge of the objects several writers (the shards of an Indexed Job) left, what a run
//! adds to it, and which of its tags no mapping wants any more.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::reference::Digest;
use crate::report::outcome::{Outcome, Status};

/// The format this build writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// The media type of the ledger's JSON (the artifact's config) and its `artifactType`.
pub const MEDIA_TYPE: &str = "application/vnd.image-mirror.ledger.v1+json";

/// A point in time: whole seconds since the Unix epoch (what a ledger compares; a clock a
/// test sets is one number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stamp(pub u64);

impl Stamp {
    /// How long from `self` to `later` (zero when `later` is earlier).
    pub fn until(self, later: Stamp) -> Duration {
        Duration::from_secs(later.0.saturating_sub(self.0))
    }

    pub fn plus(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(d.as_secs()))
    }
}

/// One destination tag (or digest push) image-mirror wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// What it wrote there: a tag holding anything else is not ours any more.
    pub digest: Digest,
    /// The source it was copied from, as the mapping named it.
    pub source: String,
    /// The mapping line (`file:line:column`) that asked for it.
    pub origin: String,
    pub first_written: Stamp,
    /// The last run that saw it hold `digest`.
    pub last_confirmed: Stamp,
    /// The last run in which a mapping produced it: unwanted since then.
    pub last_wanted: Stamp,
    /// When prune deleted it (kept so that an older object of another writer, merged in,
    /// does not bring it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Stamp>,
}

impl Written {
    /// The latest thing that happened to the entry: of two copies, the later one wins.
    fn last_event(&self) -> Stamp {
        self.last_wanted
            .max(self.last_confirmed)
            .max(self.pruned.unwrap_or(Stamp(0)))
    }
}

/// A selected source tag: when it was first seen at the digest it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub digest: Digest,
    pub first_seen: Stamp,
}

/// Everything the ledger knows. Keys are the names as the report writes them: destination
/// repositories (`host/path`), within each a tag or a digest; source tags `host/path:tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    pub destinations: BTreeMap<String, BTreeMap<String, Written>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Seen>,
}

/// One ledger object as stored: who wrote it, when (unless that is beside it, see
/// [`AsOf`]), in which format.
#[derive(Debug, Serialize, Deserialize)]
struct Document {
    format: u32,
    writer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<Stamp>,
    #[serde(flatten)]
    ledger: Ledger,
}

/// Where an object says when it was written. An entry's `last_confirmed` and `last_wanted`
/// are left out of the JSON when they are that time (every tag a run wrote or still wants),
/// so that a run that changed nothing writes the same JSON as the run before: a registry
/// then already holds the blob (no upload, and nothing new left behind for its garbage
/// collection but a small manifest), when the time is kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// In the JSON (`written`): a file, replaced each run.
    Inside,
    /// Beside the JSON (a registry object's manifest annotation, [`AS_OF_ANNOTATION`]).
    Beside,
}

/// The manifest annotation of a registry object that says when it was written (seconds
/// since 1970): the time its entries' left-out stamps stand for.
pub const AS_OF_ANNOTATION: &str = "vnd.image-mirror.ledger.written";

/// The stamps of an entry that are left out when they are the object's time.
const IMPLICIT_STAMPS: [&str; 2] = ["last_confirmed", "last_wanted"];

/// Why a ledger object could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error(
        "it was written in ledger format {0}, newer than this image-mirror reads ({FORMAT}): \
         upgrade image-mirror (nothing is pruned, and this object is left as it is)"
    )]
    Newer(u32),
    #[error("it is not a ledger ({0}); it is rebuilt from what this run sees")]
    Corrupt(String),
}

/// The JSON of one writer's object, written `now`.
pub fn encode(ledger: &Ledger, writer: &str, now: Stamp, as_of: AsOf) -> Vec<u8> {
    let doc = Document {
        format: FORMAT,
        writer: writer.to_owned(),
        written: (as_of == AsOf::Inside).then_some(now),
        ledger: ledger.clone(),
    };
    // A map of strings and numbers always serializes.
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    for entry in entries_mut(&mut value) {
        entry.retain(|key, v| {
            !(IMPLICIT_STAMPS.contains(&key.as_str()) && v.as_u64() == Some(now.0))
        });
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Reads one object: the format is looked at first, so that a newer one is refused
/// whatever else it holds. `beside` is the time kept beside the JSON (a registry object's
/// annotation), used when the JSON holds none.
pub fn decode(bytes: &[u8], beside: Option<Stamp>) -> Result<Ledger, Unreadable> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::Corrupt(e.to_string()))?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(f) if f > u64::from(FORMAT) => {
            return Err(Unreadable::Newer(u32::try_from(f).unwrap_or(u32::MAX)));
        }
        Some(_) => {}
        None => return Err(Unreadable::Corrupt("no format number".to_owned())),
    }
    let as_of = value
        .get("written")
        .and_then(serde_json::Value::as_u64)
        .or(beside.map(|s| s.0))
        .ok_or_else(|| Unreadable::Corrupt("no time of writing".to_owned()))?;
    for entry in entries_mut(&mut value) {
        for key in IMPLICIT_STAMPS {
            entry.entry(key).or_insert(serde_json::Value::from(as_of));
        }
    }
    let doc: Document =
        serde_json::from_value(value).map_err(|e| Unreadable::Corrupt(e.to_string()))?;
    Ok(doc.ledger)
}

/// Every destination entry of an object's JSON (what is not an object is left for the
/// typed reading to refuse).
fn entries_mut(
    value: &mut serde_json::Value,
) -> impl Iterator<Item = &mut serde_json::Map<String, serde_json::Value>> {
    value
        .get_mut("destinations")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|repositories| repositories.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|entries| entries.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
}

impl Ledger {
    /// Adds another writer's object: per entry, the copy with the latest event wins (a
    /// deletion included); a source tag keeps its earliest sighting at the digest it holds
    /// in the later copy.
    pub fn merge(&mut self, other: Ledger) {
        for (repository, entries) in other.destinations {
            let mine = self.destinations.entry(repository).or_default();
            for (reference, theirs) in entries {
                match mine.get(&reference) {
                    Some(ours) if !wins(&theirs, ours) => {}
                    _ => {
                        mine.insert(reference, theirs);
                    }
                }
            }
        }
        for (tag, theirs) in other.sources {
            match self.sources.get_mut(&tag) {
                Some(ours) if ours.digest == theirs.digest => {
                    ours.first_seen = ours.first_seen.min(theirs.first_seen);
                }
                Some(ours) if ours.first_seen >= theirs.first_seen => {}
                _ => {
                    self.sources.insert(tag, theirs);
                }
            }
        }
    }

    /// What a run saw: each tag it wrote, or found holding what it would write, is ours at
    /// that digest (confirmed now); a tag a mapping asked for that it could not write is
    /// still wanted. Each selected source tag is first seen now unless known at its digest.
    pub fn record(&mut self, outcomes: &[Outcome], now: Stamp) {
        for outcome in outcomes {
            let job = &outcome.job;
            let repository = job.destination.repository.to_string();
            let reference = job.destination.reference.as_str().to_owned();
            let entries = self.destinations.entry(repository).or_default();
            let written = match (outcome.status, &outcome.source_digest) {
                (Status::Copied | Status::Unchanged, Some(digest)) => Some(digest),
                _ => None,
            };
            match (entries.get_mut(&reference), written) {
                (Some(entry), Some(digest))
                    if entry.digest == *digest && entry.pruned.is_none() =>
                {
                    entry.last_confirmed = now;
                    entry.last_wanted = now;
                }
                (_, Some(digest)) => {
                    entries.insert(
                        reference,
                        Written {
                            digest: digest.clone(),
                            source: job.source.to_string(),
                            origin: format!("{}:{}", job.origin.file, job.origin.line),
                            first_written: now,
                            last_confirmed: now,
                            last_wanted: now,
                            pruned: None,
                        },
                    );
                }
                (Some(entry), None) => entry.last_wanted = now,
                (None, None) => {}
            }
            if let (Some(tag), Some(digest)) = (job.source.tag(), &outcome.source_digest) {
                self.saw(
                    format!("{}:{tag}", job.source.repository),
                    digest.clone(),
                    now,
                );
            }
        }
        self.destinations.retain(|_, entries| !entries.is_empty());
    }

    /// A source tag seen at `digest` now: its clock starts unless it was seen there before.
    pub fn saw(&mut self, tag: String, digest: Digest, now: Stamp) {
        match self.sources.get(&tag) {
            Some(seen) if seen.digest == digest => {}
            _ => {
                self.sources.insert(
                    tag,
                    Seen {
                        digest,
                        first_seen: now,
                    },
                );
            }
        }
    }

    /// Marks destination tags wanted by the current mappings although nothing was copied
    /// (`prune` alone copies nothing): they are not unwanted.
    pub fn want(&mut self, wanted: &HashSet<(String, String)>, now: Stamp) {
        for (repository, entries) in &mut self.destinations {
            for (reference, entry) in entries.iter_mut() {
                if entry.pruned.is_none()
                    && wanted.contains(&(repository.clone(), reference.clone()))
                {
                    entry.last_wanted = now;
                }
            }
        }
    }

    /// Tags no mapping produces any more, in repositories `owns` accepts: those unwanted
    /// for at least `grace` (due) and the others, with the time each has left.
    pub fn unwanted(
        &self,
        wanted: &HashSet<(String, String)>,
        owns: impl Fn(&str) -> bool,
        now: Stamp,
        grace: Duration,
    ) -> Unwanted {
        let mut result = Unwanted::default();
        for (repository, entries) in &self.destinations {
            if !owns(repository) {
                continue;
            }
            for (reference, entry) in entries {
                if entry.pruned.is_some() {
                    continue;
                }
                result.named += 1;
                if wanted.contains(&(repository.clone(), reference.clone())) {
                    continue;
                }
                let candidate = Candidate {
                    repository: repository.clone(),
                    reference: reference.clone(),
                    entry: entry.clone(),
                };
                let unwanted_for = entry.last_wanted.until(now);
                if unwanted_for >= grace {
                    result.due.push(candidate);
                } else {
                    result.waiting.push((candidate, grace - unwanted_for));
                }
            }
        }
        result
    }

    /// Records that prune deleted (or found gone) a destination tag.
    pub fn pruned(&mut self, repository: &str, reference: &str, now: Stamp) {
        if let Some(entry) = self
            .destinations
            .get_mut(repository)
            .and_then(|e| e.get_mut(reference))
        {
            entry.pruned = Some(now);
        }
    }

    /// The part one writer stores: the destination repositories it owns (a shard's), and
    /// the first sightings of the source tags its plan selects (`sources`): a tag no line
    /// selects any more is forgotten, and starts its clock again if selected later.
    pub fn owned_part(&self, owns: impl Fn(&str) -> bool, sources: &HashSet<String>) -> Ledger {
        Ledger {
            destinations: self
                .destinations
                .iter()
                .filter(|(repository, _)| owns(repository))
                .map(|(r, e)| (r.clone(), e.clone()))
                .collect(),
            sources: self
                .sources
                .iter()
                .filter(|(tag, _)| sources.contains(*tag))
                .map(|(t, s)| (t.clone(), s.clone()))
                .collect(),
        }
    }
}

/// `min-age`: when each source tag was first seen at its digest (from the ledger as read
/// before the copies), and the time now.
#[derive(Debug, Clone)]
pub struct Quarantine {
    seen: BTreeMap<String, Seen>,
    now: Stamp,
    /// `--min-age`: for lines without their own `min-age=`.
    pub default: Option<Duration>,
}

impl Quarantine {
    pub fn new(ledger: &Ledger, now: Stamp, default: Option<Duration>) -> Quarantine {
        Quarantine {
            seen: ledger.sources.clone(),
            now,
            default,
        }
    }

    /// How long the source tag `tag` (`host/path:tag`) at `digest` must still wait to have
    /// been seen for `min_age`, or `None` when it has. A tag never seen, or seen at another
    /// digest (it moved), starts its clock now.
    pub fn left(&self, tag: &str, digest: &Digest, min_age: Duration) -> Option<Duration> {
        let seen_for = match self.seen.get(tag) {
            Some(seen) if seen.digest == *digest => seen.first_seen.until(self.now),
            _ => Duration::ZERO,
        };
        (seen_for < min_age).then(|| min_age - seen_for)
    }
}

/// Whether `theirs` replaces `ours`: its latest event is later, or as late and a deletion.
fn wins(theirs: &Written, ours: &Written) -> bool {
    match theirs.last_event().cmp(&ours.last_event()) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => theirs.pruned.is_some() && ours.pruned.is_none(),
    }
}

/// One destination tag (or digest push) the ledger names and no mapping produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub repository: String,
    pub reference: String,
    pub entry: Written,
}

/// What [`Ledger::unwanted`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unwanted {
    /// Unwanted for the whole grace period: to prune.
    pub due: Vec<Candidate>,
    /// Unwanted for less, with the time left.
    pub waiting: Vec<(Candidate, Duration)>,
    /// Every tag (and digest push) the ledger names in those repositories, wanted or not,
    /// pruned ones aside: what a `--max-prune` share is of.
    pub named: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn written(n: u8, wanted: u64) -> Written {
        Written {
            digest: digest(n),
            source: "src.io/a:1".to_owned(),
            origin: "m:1".to_owned(),
            first_written: Stamp(1),
            last_confirmed: Stamp(wanted),
            last_wanted: Stamp(wanted),
            pruned: None,
        }
    }

    fn one(repository: &str, reference: &str, w: Written) -> Ledger {
        let mut ledger = Ledger::default();
        ledger
            .destinations
            .entry(repository.to_owned())
            .or_default()
            .insert(reference.to_owned(), w);
        ledger
    }

    #[test]
    fn a_ledger_reads_back_what_was_written() {
        let ledger = one("dst.io/a", "1", written(1, 5));
        for as_of in [AsOf::Inside, AsOf::Beside] {
            let bytes = encode(&ledger, "all", Stamp(9), as_of);
            let beside = (as_of == AsOf::Beside).then_some(Stamp(9));
            assert_eq!(decode(&bytes, beside), Ok(ledger.clone()));
        }
    }

    /// An hourly no-op run writes the JSON of the run before: a registry already holds it.
    #[test]
    fn a_run_that_changed_nothing_writes_the_same_bytes_as_the_run_before() {
        let mut first = one("dst.io/a", "1", written(1, 100));
        first
            .destinations
            .entry("dst.io/a".to_owned())
            .or_default()
            .insert("old".to_owned(), written(2, 50));
        let before = encode(&first, "all", Stamp(100), AsOf::Beside);
        assert_eq!(decode(&before, Some(Stamp(100))), Ok(first.clone()));
        // An hour on: the same tags confirmed and wanted again, "old" still unwanted.
        let mut next = first.clone();
        if let Some(entry) = next
            .destinations
            .get_mut("dst.io/a")
            .and_then(|e| e.get_mut("1"))
        {
            entry.last_confirmed = Stamp(3700);
            entry.last_wanted = Stamp(3700);
        }
        let after = encode(&next, "all", Stamp(3700), AsOf::Beside);
        assert_eq!(
            String::from_utf8_lossy(&after),
            String::from_utf8_lossy(&before)
        );
        assert_eq!(decode(&after, Some(Stamp(3700))), Ok(next));
        // A file keeps its time inside, so its bytes move with it.
        assert_ne!(
            encode(&first, "all", Stamp(100), AsOf::Inside),
            encode(&first, "all", Stamp(3700), AsOf::Inside)
        );
    }

    #[test]
    fn a_newer_format_is_refused_and_garbage_is_corrupt() {
        let newer = br#"{"format": 2, "writer": "all", "written": 1, "destinations": "whatever"}"#;
        let e = decode(newer, None).unwrap_err();
        assert_eq!(e, Unreadable::Newer(2));
        assert!(e.to_string().contains("format 2, newer"), "{e}");
        assert!(matches!(
            decode(b"\x00\x01", None),
            Err(Unreadable::Corrupt(_))
        ));
        assert!(matches!(decode(b"{}", None), Err(Unreadable::Corrupt(_))));
        let bad_digest = br#"{"format":1,"writer":"a","written":1,"destinations":{"d/a":{"1":{"digest":"md5:x","source":"s","origin":"o","first_written":1,"last_confirmed":1,"last_wanted":1}}}}"#;
        assert!(matches!(
            decode(bad_digest, None),
            Err(Unreadable::Corrupt(_))
        ));
        // A registry object's time is beside it: without it, its left-out stamps mean nothing.
        let timeless = br#"{"format":1,"writer":"a","destinations":{}}"#;
        assert!(matches!(
            decode(timeless, None),
            Err(Unreadable::Corrupt(_))
        ));
        assert!(decode(timeless, Some(Stamp(1))).is_ok());
    }

    /// Two shards write their objects at once: the reader merges both and loses neither.
    #[test]
    fn merging_two_writers_loses_nothing_and_the_later_event_wins() {
        let mut a = one("dst.io/a", "1", written(1, 5));
        let b = one("dst.io/b", "1", written(2, 5));
        a.merge(b);
        assert_eq!(a.destinations.len(), 2);

        let mut old = one("dst.io/a", "1", written(1, 5));
        let mut deleted = written(1, 5);
        deleted.pruned = Some(Stamp(8));
        old.merge(one("dst.io/a", "1", deleted.clone()));
        assert_eq!(
            old.destinations["dst.io/a"]["1"], deleted,
            "a deletion stays deleted"
        );
        let mut newer = one("dst.io/a", "1", deleted.clone());
        newer.merge(one("dst.io/a", "1", written(1, 5)));
        assert_eq!(
            newer.destinations["dst.io/a"]["1"], deleted,
            "an older copy loses"
        );
        let mut rewritten = one("dst.io/a", "1", deleted);
        rewritten.merge(one("dst.io/a", "1", written(3, 9)));
        assert_eq!(rewritten.destinations["dst.io/a"]["1"].digest, digest(3));
    }

    #[test]
    fn a_source_tag_keeps_its_first_sighting_until_it_moves() {
        let mut ledger = Ledger::default();
        ledger.saw("s/a:1".into(), digest(1), Stamp(10));
        ledger.saw("s/a:1".into(), digest(1), Stamp(20));
        assert_eq!(ledger.sources["s/a:1"].first_seen, Stamp(10));
        ledger.saw("s/a:1".into(), digest(2), Stamp(30));
        assert_eq!(
            ledger.sources["s/a:1"].first_seen,
            Stamp(30),
            "moved: clock restarts"
        );
        let mut other = Ledger::default();
        other.saw("s/a:1".into(), digest(2), Stamp(25));
        ledger.merge(other);
        assert_eq!(ledger.sources["s/a:1"].first_seen, Stamp(25));
    }

    #[test]
    fn min_age_holds_a_new_tag_back_and_a_moved_tag_restarts_its_clock() {
        let mut ledger = Ledger::default();
        ledger.saw("s/a:1".into(), digest(1), Stamp(100));
        let day = Duration::from_secs(86_400);
        let at = |now| Quarantine::new(&ledger, Stamp(now), None);
        assert_eq!(at(100).left("s/a:1", &digest(1), day), Some(day));
        assert_eq!(
            at(100 + 3600).left("s/a:1", &digest(1), day),
            Some(day - Duration::from_secs(3600))
        );
        assert_eq!(at(100 + 86_400).left("s/a:1", &digest(1), day), None);
        assert_eq!(
            at(100 + 86_400).left("s/a:1", &digest(2), day),
            Some(day),
            "moved: its clock starts again"
        );
        assert_eq!(
            at(100).left("s/b:1", &digest(1), day),
            Some(day),
            "never seen"
        );
        assert_eq!(at(100).left("s/b:1", &digest(1), Duration::ZERO), None);
    }

    #[test]
    fn only_tags_unwanted_for_the_grace_period_are_due() {
        let mut ledger = one("dst.io/a", "old", written(1, 100));
        ledger.merge(one("dst.io/a", "kept", written(1, 100)));
        ledger.merge(one("dst.io/a", "recent", written(1, 190)));
        ledger.merge(one("other.io/b", "old", written(1, 100)));
        let wanted: HashSet<_> = [("dst.io/a".to_owned(), "kept".to_owned())].into();
        let grace = Duration::from_secs(50);
        let found = ledger.unwanted(&wanted, |r| r.starts_with("dst.io"), Stamp(200), grace);
        let due: Vec<_> = found.due.iter().map(|c| c.reference.as_str()).collect();
        assert_eq!(due, ["old"]);
        assert_eq!(found.waiting.len(), 1);
        assert_eq!(found.waiting[0].1, Duration::from_secs(40));
        assert_eq!(found.named, 3, "the owned repository's, wanted or not");
        ledger.pruned("dst.io/a", "old", Stamp(200));
        let after = ledger.unwanted(&wanted, |_| true, Stamp(300), grace);
        let due: Vec<_> = after
            .due
            .iter()
            .map(|c| format!("{}:{}", c.repository, c.reference))
            .collect();
        assert_eq!(due, ["dst.io/a:recent", "other.io/b:old"]);
        ledger.want(
            &[("dst.io/a".to_owned(), "recent".to_owned())].into(),
            Stamp(300),
        );
        assert_eq!(
            ledger.destinations["dst.io/a"]["recent"].last_wanted,
            Stamp(300)
        );
        ledger.saw("s/a:1".into(), digest(1), Stamp(1));
        ledger.saw("s/gone:1".into(), digest(1), Stamp(1));
        let part = ledger.owned_part(|r| r == "dst.io/a", &["s/a:1".to_owned()].into());
        assert_eq!(part.destinations.keys().collect::<Vec<_>>(), ["dst.io/a"]);
        assert_eq!(part.sources.keys().collect::<Vec<_>>(), ["s/a:1"]);
    }

    #[test]
    fn a_run_records_what_it_wrote_and_what_it_still_wants() {
        let parsed = crate::inputs::mapping::parse_text(
            &std::sync::Arc::from("m"),
            "src.io/a:1 dst.io/a:1\nsrc.io/a:2 dst.io/a:2",
        );
        let (plan, _) = crate::plan::plan(
            &crate::plan::expand_all(parsed.mappings, &std::collections::HashMap::new()).mappings,
            &std::collections::HashMap::new(),
        );
        let jobs = &plan.batches[0].jobs;
        let outcome = |i: usize, status, d: Option<u8>| Outcome {
            status,
            source_digest: d.map(digest),
            ..Outcome::new(jobs[i].clone())
        };
        let mut ledger = Ledger::default();
        ledger.record(
            &[
                outcome(0, Status::Copied, Some(1)),
                outcome(1, Status::Failed, None),
            ],
            Stamp(10),
        );
        let entries = &ledger.destinations["dst.io/a"];
        assert_eq!(entries.len(), 1, "a failed first copy is not ours");
        assert_eq!(entries["1"].digest, digest(1));
        assert_eq!(entries["1"].origin, "m:1");
        assert_eq!(entries["1"].source, "src.io/a:1");
        assert_eq!(ledger.sources["src.io/a:1"].first_seen, Stamp(10));

        ledger.record(&[outcome(0, Status::Unchanged, Some(1))], Stamp(20));
        let entry = &ledger.destinations["dst.io/a"]["1"];
        assert_eq!(
            (entry.first_written, entry.last_confirmed),
            (Stamp(10), Stamp(20))
        );
        ledger.record(&[outcome(0, Status::Failed, None)], Stamp(30));
        let entry = &ledger.destinations["dst.io/a"]["1"];
        assert_eq!(
            (entry.last_confirmed, entry.last_wanted),
            (Stamp(20), Stamp(30))
        );
        ledger.record(&[outcome(0, Status::Copied, Some(2))], Stamp(40));
        let entry = &ledger.destinations["dst.io/a"]["1"];
        assert_eq!(
            (&entry.digest, entry.first_written),
            (&digest(2), Stamp(40))
        );
    }
}
