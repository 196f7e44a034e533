//! What is left of a registry's pull quota, kept per registry and per credential, and spent
//! on whole images.
//!
//! Docker Hub counts manifest GETs (a HEAD is free): one per image, one more per child of an
//! index. A [`Quota`] takes one unit before each manifest GET and refuses when none is left,
//! so nothing is sent that the registry would answer 429. Before an image is started, what it
//! will need is reserved ([`Quota::reserve`]: 1 for a manifest, 1 + one per child for an
//! index), so that a quota never ends with half an index fetched — GETs spent, nothing
//! gained. An index's children are known only once it is fetched; until then its cost is
//! estimated from the largest image seen so far, and the reservation is grown to the exact
//! cost ([`Quota::grow`]) before the children are fetched.
//!
//! What is left is counted down as GETs are sent, and lowered to the registry's own count
//! from the headers of every answer (see [`super::published`]) when that is lower; within a
//! run it only goes down. A registry that
//! publishes nothing has an unknown quota: nothing is refused until it answers a quota 429
//! ([`Quota::spent_by_refusal`]), then every further manifest GET is.
//!
//! Shards (`--shard I/N`, the pods of an Indexed Job) pulling with one account share one
//! quota without talking: each takes its 1/N part of what is left when it first learns it
//! ([`Share::part`]), so together they never ask for more than there was.
//!
//! Pure: no clock, no I/O; the controller owns a [`Quotas`] per registry: a `Quota` per
//! account ([`Account`], never a secret).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::published::Published;

/// What an index is expected to cost before any index was read: itself and two children
/// (a multi-arch image's usual amd64 and arm64).
pub const FIRST_INDEX: u64 = 3;

/// A shard's part of a quota its sibling shards share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// 0-based, as `--shard I/N` writes it.
    pub index: u32,
    pub count: u32,
}

impl Share {
    /// An unsharded run's: all of it.
    pub const WHOLE: Share = Share { index: 0, count: 1 };

    /// This shard's part of `left` units: `left / N`, the remainder going one each to the
    /// first shards, so the parts add up to exactly `left`.
    pub fn part(self, left: u64) -> u64 {
        let count = u64::from(self.count.max(1));
        let base = left / count;
        base + u64::from(u64::from(self.index) < left % count)
    }

    fn is_whole(self) -> bool {
        self.count <= 1
    }
}

/// Units set aside for one image: taken by its manifest GETs, the rest given back when it is
/// done ([`Quota::release`]). Not `Clone`: a reservation is spent once.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    units: u64,
}

impl Reservation {
    /// Units still set aside.
    pub fn units(&self) -> u64 {
        self.units
    }
}

/// Why manifest GETs stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The registry answered a quota 429.
    Refused,
}

/// Why an image was not started (or a manifest GET not sent): the quota cannot cover it. Its
/// text is what the report shows, e.g. `docker.io: pull quota spent, 0 of 100 left, window 1 h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub registry: String,
    /// Units left when it was refused (this shard's, when sharded).
    pub left: Option<u64>,
    /// The quota of the window (this shard's part, when sharded).
    pub limit: Option<u64>,
    pub window: Option<Duration>,
    /// Units the image needed, when it was not started for lack of them.
    pub needed: Option<u64>,
    pub share: Share,
    /// The registry said 429 (rather than its published count saying nothing is left).
    pub refused: bool,
}

impl fmt::Display for Deferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = if self.share.is_whole() {
            String::new()
        } else {
            format!(
                "shard {}/{}'s share of the ",
                self.share.index, self.share.count
            )
        };
        match (self.needed, self.left) {
            (Some(needed), Some(left)) if left > 0 => write!(
                f,
                "{}: {whose}pull quota too low for this image ({needed} needed)",
                self.registry
            )?,
            _ => write!(f, "{}: {whose}pull quota spent", self.registry)?,
        }
        match (self.left, self.limit) {
            (Some(left), Some(limit)) => write!(f, ", {left} of {limit} left")?,
            (Some(left), None) => write!(f, ", {left} left")?,
            _ => {}
        }
        if let Some(window) = self.window {
            write!(f, ", window {}", window_text(window))?;
        }
        if self.refused && self.limit.is_none() {
            write!(f, " (the registry answered 429 and publishes no limit)")?;
        }
        Ok(())
    }
}

/// A window as a person writes it: `1 h`, `6 h`, `30 min`, `90 s`.
pub fn window_text(window: Duration) -> String {
    let secs = window.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// What a run knew of one quota at its end: a plain value of [`crate::stats`], which the
/// report reads without reaching into the registry client.
pub use crate::stats::QuotaState;

/// What is left of one quota (one registry, one credential), as this run sees it.
#[derive(Debug, Clone)]
pub struct Quota {
    registry: String,
    share: Share,
    limit: Option<u64>,
    window: Option<Duration>,
    /// The registry's last count, less the GETs sent since it was given; `None` until known.
    left: Option<u64>,
    /// This shard's part, less what it took; `None` unsharded or until known.
    allowance: Option<u64>,
    /// GETs sent and not yet answered.
    in_flight: u64,
    /// Units set aside by reservations, not yet taken.
    reserved: u64,
    stop: Option<Stop>,
    taken: u64,
    refused: u64,
    /// The most units one image has needed so far (an index's estimate).
    largest_image: u64,
}

impl Quota {
    pub fn new(registry: impl Into<String>, share: Share) -> Quota {
        Quota {
            registry: registry.into(),
            share,
            limit: None,
            window: None,
            left: None,
            allowance: None,
            in_flight: 0,
            reserved: 0,
            stop: None,
            taken: 0,
            refused: 0,
            largest_image: 1,
        }
    }

    /// Learns from an answer's published quota. The registry's count includes the GETs it
    /// answered; those still in flight are taken off it.
    pub fn observe(&mut self, published: &Published) {
        let Some(q) = published.quota() else { return };
        if q.quota.is_some() {
            self.limit = q.quota;
        }
        if q.window.is_some() {
            self.window = q.window;
        }
        let Some(remaining) = q.remaining else { return };
        // Ours is counted down as GETs are sent; the registry's may lag behind (answers
        // come back out of order, GETs are in flight) or be lower (another client of the
        // same account): the lower wins. Within a run it only goes down: a count that went
        // up is as likely an earlier answer as a window that moved on (the next run reads it
        // anew). At first sight, the GETs sent before it was known and still in flight are
        // not in the registry's count yet.
        self.left = Some(match self.left {
            Some(left) => left.min(remaining),
            None => remaining.saturating_sub(self.in_flight),
        });
        if !self.share.is_whole() && self.allowance.is_none() {
            // What was left before this shard took anything, shared; less what it took.
            let before = remaining + self.taken.saturating_sub(self.in_flight);
            self.allowance = Some(self.share.part(before).saturating_sub(self.taken));
        }
    }

    /// A manifest GET was answered (whatever the answer).
    pub fn answered(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The registry answered a quota 429: no more manifest GETs this run.
    pub fn spent_by_refusal(&mut self) {
        self.stop = Some(Stop::Refused);
    }

    /// Whether manifest GETs have stopped.
    pub fn is_spent(&self) -> bool {
        self.stop.is_some() || self.usable() == Some(0)
    }

    /// Units this run may still spend: the registry's count, or this shard's part if lower;
    /// `None` while unknown.
    fn usable(&self) -> Option<u64> {
        match (self.left, self.allowance) {
            (Some(l), Some(a)) => Some(l.min(a)),
            (l, a) => l.or(a),
        }
    }

    /// Units neither spent nor set aside; `None` while unknown.
    pub fn available(&self) -> Option<u64> {
        if self.stop.is_some() {
            return Some(0);
        }
        self.usable().map(|u| u.saturating_sub(self.reserved))
    }

    /// What an image is expected to cost before its manifest is fetched: 1 for a manifest;
    /// for an index, the largest image seen so far, at least [`FIRST_INDEX`].
    pub fn estimate(&self, index: bool) -> u64 {
        if index {
            self.largest_image.max(FIRST_INDEX)
        } else {
            1
        }
    }

    /// An image turned out to cost `units` in all (an index read: itself and its children).
    pub fn note_image(&mut self, units: u64) {
        self.largest_image = self.largest_image.max(units);
    }

    /// Whether the registry published a quota (or enforced one): only then are images
    /// reserved by their kind.
    pub fn is_known(&self) -> bool {
        self.left.is_some() || self.limit.is_some() || self.stop.is_some()
    }

    /// What an image is expected to cost before anything of it is fetched: the largest
    /// image seen so far (1 before any).
    pub fn estimate_image(&self) -> u64 {
        self.largest_image
    }

    /// Sets aside `units` for an image about to start; refuses (the image is deferred) when
    /// fewer are available. An unknown quota refuses nothing.
    pub fn reserve(&mut self, units: u64) -> Result<Reservation, Deferral> {
        if let Some(available) = self.available()
            && available < units
        {
            return Err(self.deferral(Some(units)));
        }
        self.reserved += units;
        Ok(Reservation { units })
    }

    /// Grows `reservation` to hold at least `units`, once an index's children are known;
    /// refuses (leaving it as it was) when the quota cannot cover them.
    pub fn grow(&mut self, reservation: &mut Reservation, units: u64) -> Result<(), Deferral> {
        let more = units.saturating_sub(reservation.units);
        if more == 0 {
            return Ok(());
        }
        if let Some(available) = self.available()
            && available < more
        {
            return Err(self.deferral(Some(units)));
        }
        self.reserved += more;
        reservation.units += more;
        Ok(())
    }

    /// Takes one unit for a manifest GET about to be sent: from `reservation` when it has
    /// any, else from what is available. Refuses when the quota is spent; a reserved unit is
    /// refused only when the registry's own count says nothing is left.
    pub fn take(&mut self, reservation: Option<&mut Reservation>) -> Result<(), Deferral> {
        let reserved = reservation.filter(|r| r.units > 0);
        let refuse = match &reserved {
            _ if self.stop.is_some() => true,
            Some(_) => self.usable() == Some(0),
            None => self.available() == Some(0),
        };
        if refuse {
            self.refused += 1;
            return Err(self.deferral(None));
        }
        if let Some(r) = reserved {
            r.units -= 1;
            self.reserved = self.reserved.saturating_sub(1);
        }
        self.left = self.left.map(|l| l.saturating_sub(1));
        self.allowance = self.allowance.map(|a| a.saturating_sub(1));
        self.in_flight += 1;
        self.taken += 1;
        Ok(())
    }

    /// Gives back what `reservation` did not spend; `cost`: the units the image needed in
    /// all, learned for [`Quota::estimate`].
    pub fn release(&mut self, reservation: Reservation, cost: u64) {
        self.reserved = self.reserved.saturating_sub(reservation.units);
        self.largest_image = self.largest_image.max(cost);
    }

    /// Why the quota cannot cover `needed` units (or one more GET).
    pub fn deferral(&self, needed: Option<u64>) -> Deferral {
        let sharded = !self.share.is_whole();
        Deferral {
            registry: self.registry.clone(),
            left: if self.stop.is_some() && self.left.is_none() {
                None
            } else {
                self.available()
            },
            limit: if sharded {
                self.limit.map(|l| self.share.part(l))
            } else {
                self.limit
            },
            window: self.window,
            needed,
            share: self.share,
            refused: self.stop == Some(Stop::Refused),
        }
    }

    /// What the report and metrics show.
    pub fn state(&self) -> QuotaState {
        QuotaState {
            limit: self.limit,
            left: self.usable(),
            window: self.window,
            taken: self.taken,
            refused: self.refused,
            spent: self.is_spent(),
        }
    }
}

/// Whose quota a manifest GET spends: the account the registry counts it against (Docker
/// Hub counts per user, anonymous pulls per address). Named by what a person would say —
/// `user alice`, where the credential came from when it names no user, or anonymous —
/// never by the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Account(Option<String>);

impl Account {
    pub const ANONYMOUS: Account = Account(None);

    pub fn anonymous() -> Account {
        Account::ANONYMOUS
    }

    /// An account named `label` (a user name, or where its credential came from).
    pub fn named(label: impl Into<String>) -> Account {
        Account(Some(label.into()))
    }

    /// How a message names the quota: the registry, and the account unless anonymous
    /// (`docker.io`, `docker.io (user alice)`).
    fn label(&self, registry: &str) -> String {
        match &self.0 {
            None => registry.to_owned(),
            Some(name) => format!("{registry} ({name})"),
        }
    }
}

/// One registry's quotas, one per account (two credentials of one registry spend two
/// quotas, as Docker Hub counts them).
#[derive(Debug)]
pub struct Quotas {
    registry: String,
    share: Share,
    by_account: HashMap<Account, Quota>,
}

impl Quotas {
    pub fn new(registry: impl Into<String>, share: Share) -> Quotas {
        Quotas {
            registry: registry.into(),
            share,
            by_account: HashMap::new(),
        }
    }

    /// The quota of `account`, created on first use.
    pub fn of(&mut self, account: &Account) -> &mut Quota {
        let (registry, share) = (&self.registry, self.share);
        self.by_account
            .entry(account.clone())
            .or_insert_with(|| Quota::new(account.label(registry), share))
    }

    /// What the report shows of the registry: the quota with the least left among those
    /// that saw a limit or stopped GETs; `None` when none did.
    pub fn state(&self) -> Option<QuotaState> {
        self.by_account
            .values()
            .map(Quota::state)
            .filter(|s| s.limit.is_some() || s.left.is_some() || s.spent)
            .min_by_key(|s| (s.left, !s.spent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::control::published::Limit;

    fn hub(limit: u64, remaining: u64) -> Published {
        Published {
            limits: vec![Limit {
                name: String::new(),
                quota: Some(limit),
                window: Some(Duration::from_secs(3600)),
                remaining: Some(remaining),
                reset: None,
            }],
            source: None,
        }
    }

    fn taken(q: &mut Quota, n: u64) -> u64 {
        (0..n).filter(|_| q.take(None).is_ok()).count() as u64
    }

    #[test]
    fn a_get_takes_one_unit_and_none_is_sent_past_zero() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        q.observe(&hub(100, 3));
        assert_eq!(taken(&mut q, 5), 3);
        let refused = q.take(None).err().map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io: pull quota spent, 0 of 100 left, window 1 h")
        );
        assert!(q.is_spent());
        assert_eq!(q.state().refused, 3);
    }

    #[test]
    fn an_unknown_quota_refuses_nothing_until_a_quota_429() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        assert_eq!(taken(&mut q, 50), 50);
        assert!(q.reserve(30).is_ok());
        q.spent_by_refusal();
        let refused = q.take(None).err().map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io: pull quota spent (the registry answered 429 and publishes no limit)")
        );
        assert!(q.reserve(1).is_err());
    }

    #[test]
    fn our_count_and_the_registrys_the_lower_wins() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        // A GET sent before anything was known, in flight when a HEAD tells 10.
        assert!(q.take(None).is_ok());
        q.observe(&hub(100, 10));
        assert_eq!(q.available(), Some(9));
        assert_eq!(taken(&mut q, 4), 4);
        // Late answers with the registry's older counts change nothing.
        q.answered();
        q.observe(&hub(100, 9));
        q.observe(&hub(100, 10));
        assert_eq!(q.available(), Some(5));
        // Another client of the account spent some meanwhile: the registry's count wins.
        q.answered();
        q.observe(&hub(100, 2));
        assert_eq!(q.available(), Some(2));
    }

    #[test]
    fn a_whole_index_is_reserved_or_nothing_of_it_is_started() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        q.observe(&hub(100, 7));
        // Two images of an index of 3 children (4 GETs each) fit; the third does not.
        let mut first = q.reserve(4).unwrap_or_else(|d| panic!("{d}"));
        let mut second = q.reserve(4);
        assert!(second.is_err(), "only 3 left for the second");
        for _ in 0..4 {
            assert!(q.take(Some(&mut first)).is_ok());
        }
        q.release(first, 4);
        assert_eq!(q.available(), Some(3));
        second = q.reserve(q.estimate(true));
        let deferral = second.err().map(|d| d.to_string());
        assert_eq!(
            deferral.as_deref(),
            Some(
                "docker.io: pull quota too low for this image (4 needed), 3 of 100 left, window 1 h"
            )
        );
        // A single manifest still fits.
        assert!(q.reserve(q.estimate(false)).is_ok());
    }

    #[test]
    fn reserved_units_are_not_given_to_others() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        q.observe(&hub(100, 3));
        let mut r = q.reserve(3).unwrap_or_else(|d| panic!("{d}"));
        assert!(q.take(None).is_err(), "all 3 are set aside");
        assert!(q.take(Some(&mut r)).is_ok());
        // Growing past what is there is refused and changes nothing.
        assert!(q.grow(&mut r, 4).is_err());
        assert_eq!(r.units(), 2);
        assert!(q.take(Some(&mut r)).is_ok());
        assert!(q.take(Some(&mut r)).is_ok());
        assert!(q.take(Some(&mut r)).is_err());
    }

    #[test]
    fn an_index_estimate_grows_to_the_largest_image_seen() {
        let mut q = Quota::new("docker.io", Share::WHOLE);
        assert_eq!(q.estimate(true), FIRST_INDEX);
        let mut r = q.reserve(2).unwrap_or_else(|d| panic!("{d}"));
        assert!(q.grow(&mut r, 5).is_ok());
        q.release(r, 5);
        assert_eq!(q.estimate(true), 5);
        assert_eq!(q.estimate(false), 1);
    }

    #[test]
    fn shards_take_their_part_and_together_no_more_than_there_was() {
        for left in [0u64, 1, 7, 60, 101] {
            let parts: u64 = (0..4)
                .map(|i| Share { index: i, count: 4 }.part(left))
                .sum();
            assert_eq!(parts, left);
        }
        let mut total = 0;
        for index in 0..4 {
            let share = Share { index, count: 4 };
            let mut q = Quota::new("docker.io", share);
            q.observe(&hub(100, 60));
            total += taken(&mut q, 100);
        }
        assert_eq!(total, 60);
        let mut q = Quota::new("docker.io", Share { index: 1, count: 4 });
        q.observe(&hub(100, 60));
        taken(&mut q, 15);
        // Later answers count the other shards' pulls too; this shard's part stays its own.
        q.answered();
        q.observe(&hub(100, 40));
        let said = q.take(None).err().map(|d| d.to_string());
        assert_eq!(
            said.as_deref(),
            Some("docker.io: shard 1/4's share of the pull quota spent, 0 of 25 left, window 1 h")
        );
    }

    #[test]
    fn quotas_are_kept_per_account() {
        let mut quotas = Quotas::new("docker.io", Share::WHOLE);
        let (anonymous, alice) = (Account::anonymous(), Account::named("user alice"));
        quotas.of(&anonymous).observe(&hub(10, 1));
        quotas.of(&alice).observe(&hub(100, 80));
        assert!(quotas.of(&anonymous).take(None).is_ok());
        let refused = quotas
            .of(&anonymous)
            .take(None)
            .err()
            .map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io: pull quota spent, 0 of 10 left, window 1 h")
        );
        assert!(quotas.of(&alice).take(None).is_ok(), "alice's is her own");
        assert_eq!(quotas.of(&alice).available(), Some(79));
        // The report shows the one with least left.
        let state = quotas.state();
        assert_eq!(state.map(|s| (s.left, s.limit)), Some((Some(0), Some(10))));
        quotas.of(&alice).spent_by_refusal();
        let refused = quotas.of(&alice).take(None).err().map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io (user alice): pull quota spent, 0 of 100 left, window 1 h")
        );
        assert_eq!(Quotas::new("quay.io", Share::WHOLE).state(), None);
    }

    #[test]
    fn windows_read_as_people_write_them() {
        assert_eq!(window_text(Duration::from_secs(3600)), "1 h");
        assert_eq!(window_text(Duration::from_secs(21600)), "6 h");
        assert_eq!(window_text(Duration::from_secs(1800)), "30 min");
        assert_eq!(window_text(Duration::from_secs(90)), "90 s");
    }
}
