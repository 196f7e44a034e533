//! How many transfers one registry gets at once in one direction (reads from it as a source,
//! writes to it as a destination), decided from what its answers show: a pure state machine
//! fed one [`Sample`] per answer, with no clock and no I/O of its own, so that its decisions
//! are tested with synthetic observations. The limiter's `Slots` applies its decisions to
//! a semaphore. A leaf: depends on nothing of the project.
//!
//! Six transfers at once (oc's number) keep a LAN busy, and far from it over a long path: each
//! transfer waits a round trip for its first byte and another for its commit. So, unless
//! `--max-per-registry` fixes the number, the limit starts at six and follows the path:
//!
//! * **Grows while latency holds.** Answers are counted in rounds: a round ends once as many
//!   answers as the limit have come back to requests sent since it began (so at least a
//!   round trip later, and judging the limit of that round, not the one before). At the end
//!   of a round, TCP Vegas's estimate of the requests queued at the registry or on the path
//!   is `limit × (1 − no-load round trip / the round's lower-quartile round trip)`: by
//!   Little's law, more in flight that only lengthens the round trip adds nothing to
//!   throughput. Queued under `alpha` (about `3 log10 limit`, as Netflix's concurrency-limits
//!   Vegas does): the limit doubles in a first phase (slow start, as TCP's), then grows by
//!   its square root per round (as Gradient2 does); between `alpha` and `beta = 2 alpha` it
//!   holds; above `beta` it shrinks by a quarter, never below the start. A round in which
//!   the limit was not used (fewer in flight than three quarters of it) changes nothing:
//!   there was no demand to measure.
//! * **Shrinks when the registry says so.** A `429`, a `503` or a connection reset halves the
//!   limit (down to one), and each run of as many good answers as the limit raises it by one
//!   again, up to the start: additive increase, multiplicative decrease, as before this
//!   controller existed. A registry that has refused (`429`, `503`) is not pushed beyond the
//!   start again in the run: growth is for registries that never said no.
//! * **Stays within its ceiling**: `--max-per-registry N` when given (then the limit starts
//!   at N too, oc's meaning), else [`DEFAULT_CEILING`].
//!
//! What the controller reached and why it stopped growing ([`Reached`]) is what the report
//! and the metrics show per registry.

use std::time::{Duration, Instant};

/// Transfers at once a registry starts with in each direction: oc's default.
pub const START: u32 = 6;

/// Most transfers at once in one direction when `--max-per-registry` is not given. Measured
/// with `bench/wan.sh` (README, "Benchmarks"): at 80 ms round trip a cold mirror's source
/// limit reached the former ceiling of 32 and, given 64, grew to about 50, and the run was
/// faster side by side; at 0 ms the limit holds near the start (round trips lengthen under
/// load first), so the ceiling costs nothing there. Growth beyond the start stops for good
/// at a registry's first refusal, so a limiting registry never sees more than before.
pub const DEFAULT_CEILING: u32 = 64;

/// Samples kept per round for its quartile: enough to be robust, bounded in memory.
const ROUND_SAMPLES: usize = 256;

/// How a store's limit on transfers is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Starts at [`START`] and follows the path up to the ceiling.
    Adaptive { ceiling: u32 },
    /// At most this many (`--max-per-registry N`): starts there, lowered while the registry
    /// refuses, never higher.
    AtMost(u32),
}

impl Limit {
    /// The default: adaptive within [`DEFAULT_CEILING`].
    pub fn adaptive() -> Limit {
        Limit::Adaptive {
            ceiling: DEFAULT_CEILING,
        }
    }
}

impl Default for Limit {
    fn default() -> Limit {
        Limit::adaptive()
    }
}

/// What an answer said, as far as the limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Any answer but the ones below (a 404 is an answer too: the registry coped).
    Fine,
    /// `429 Too Many Requests`.
    Throttled,
    /// `503 Service Unavailable`.
    Unavailable,
    /// The connection was reset or closed before an answer.
    Reset,
}

/// One answer: when it came, how long after its request was sent (for answers whose time
/// is a round trip: no request body worth counting), and what it said.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub round_trip: Option<Duration>,
    pub signal: Signal,
}

/// Why the limit is where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    /// Nothing has held it back (yet): the run ended first, or it is still growing.
    #[default]
    Growing,
    /// At its ceiling (the default one or `--max-per-registry`).
    Ceiling,
    /// The work never used the limit it had: more would not have run.
    Demand,
    /// Round trips lengthened: more in flight would only queue.
    Latency,
    /// The registry answered `429`.
    Throttled,
    /// The registry answered `503`.
    Unavailable,
    /// Connections were reset.
    Resets,
}

impl Stop {
    /// A label value for metrics and JSON: one word.
    pub fn label(self) -> &'static str {
        match self {
            Stop::Growing => "growing",
            Stop::Ceiling => "ceiling",
            Stop::Demand => "demand",
            Stop::Latency => "latency",
            Stop::Throttled => "throttled",
            Stop::Unavailable => "unavailable",
            Stop::Resets => "resets",
        }
    }
}

/// What a controller reached in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reached {
    /// The highest limit it had.
    pub limit: u32,
    /// The limit now.
    pub now: u32,
    /// The most transfers in flight at once.
    pub in_flight: u32,
    /// The ceiling it could not pass.
    pub ceiling: u32,
    /// Why it stopped growing (the last reason seen).
    pub stop: Stop,
}

/// The answers of the round under way.
#[derive(Debug, Default)]
struct Round {
    started: Option<Instant>,
    answers: u32,
    round_trips: Vec<Duration>,
    /// The most transfers in flight during the round.
    in_flight: u32,
}

/// One registry's limit in one direction; see the module doc.
#[derive(Debug)]
pub struct Controller {
    limit: u32,
    /// Where it starts; latency never takes it below, and refusals' recovery goes back here.
    start: u32,
    ceiling: u32,
    adaptive: bool,
    slow_start: bool,
    /// A `429` or `503` was seen: no growth beyond the start any more.
    refused: bool,
    /// The shortest round trip seen: the path without load.
    no_load: Option<Duration>,
    round: Round,
    /// Good answers since the limit last changed (for recovery after a refusal).
    streak: u32,
    in_flight: u32,
    reached: Reached,
}

impl Controller {
    pub fn new(limit: Limit) -> Controller {
        let (start, ceiling, adaptive) = match limit {
            Limit::Adaptive { ceiling } => {
                let ceiling = ceiling.max(1);
                (START.min(ceiling), ceiling, true)
            }
            Limit::AtMost(n) => (n.max(1), n.max(1), false),
        };
        Controller {
            limit: start,
            start,
            ceiling,
            adaptive,
            slow_start: true,
            refused: false,
            no_load: None,
            round: Round::default(),
            streak: 0,
            in_flight: 0,
            reached: Reached {
                limit: start,
                now: start,
                in_flight: 0,
                ceiling,
                stop: if adaptive || start < ceiling {
                    Stop::Growing
                } else {
                    Stop::Ceiling
                },
            },
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn reached(&self) -> Reached {
        self.reached
    }

    /// The shortest round trip seen: the path without load.
    pub fn no_load(&self) -> Option<Duration> {
        self.no_load
    }

    /// Transfers in flight now (after one was taken or given back).
    pub fn in_flight(&mut self, now: u32) {
        self.in_flight = now;
        self.round.in_flight = self.round.in_flight.max(now);
        self.reached.in_flight = self.reached.in_flight.max(now);
    }

    /// Learns from one answer; returns the new limit when it changed.
    pub fn observe(&mut self, sample: Sample) -> Option<u32> {
        let old = self.limit;
        match sample.signal {
            Signal::Throttled => self.refusal(Stop::Throttled, true),
            Signal::Unavailable => self.refusal(Stop::Unavailable, true),
            Signal::Reset => self.refusal(Stop::Resets, false),
            Signal::Fine => self.fine(sample),
        }
        self.reached.now = self.limit;
        self.reached.limit = self.reached.limit.max(self.limit);
        (self.limit != old).then_some(self.limit)
    }

    /// Halves the limit; a refusal also ends growth beyond the start for the run.
    fn refusal(&mut self, why: Stop, refused: bool) {
        self.limit = (self.limit / 2).max(1);
        self.refused |= refused;
        self.slow_start = false;
        self.streak = 0;
        self.reached.stop = why;
        self.round = Round::default();
    }

    fn fine(&mut self, sample: Sample) {
        let sent = sample
            .round_trip
            .and_then(|rtt| sample.at.checked_sub(rtt))
            .unwrap_or(sample.at);
        if let Some(rtt) = sample.round_trip {
            self.no_load = Some(self.no_load.map_or(rtt, |n| n.min(rtt)));
        }
        self.streak += 1;
        if self.limit < self.start {
            // Recovering from a refusal: one more per run of as many good answers as the
            // limit (additive increase).
            if self.streak >= self.limit {
                self.limit += 1;
                self.streak = 0;
            }
            return;
        }
        if !self.adaptive || self.refused {
            return;
        }
        // Only answers to requests sent since the round began tell what the limit of this
        // round does: a decision waits for them (a round trip at least), so that a new
        // limit is judged by its own effect, as TCP judges a window once per round trip.
        let started = *self.round.started.get_or_insert(sent);
        if sent < started {
            return;
        }
        if let Some(rtt) = sample.round_trip
            && self.round.round_trips.len() < ROUND_SAMPLES
        {
            self.round.round_trips.push(rtt);
        }
        self.round.answers += 1;
        if self.round.answers >= self.limit {
            self.end_round(sample.at);
        }
    }

    /// The Vegas decision at the end of a round; then a new round starts.
    fn end_round(&mut self, at: Instant) {
        let round = std::mem::replace(
            &mut self.round,
            Round {
                started: Some(at),
                in_flight: self.in_flight,
                ..Round::default()
            },
        );
        let (Some(no_load), Some(typical)) = (self.no_load, quartile(round.round_trips)) else {
            return;
        };
        if round.in_flight < self.limit - self.limit / 4 {
            if self.limit < self.ceiling {
                self.reached.stop = Stop::Demand;
            }
            return;
        }
        let limit = f64::from(self.limit);
        let queued = limit * (1.0 - no_load.as_secs_f64() / typical.as_secs_f64().max(1e-9));
        let alpha = (3.0 * limit.log10()).max(2.0);
        if queued <= alpha {
            if self.limit >= self.ceiling {
                self.reached.stop = Stop::Ceiling;
                return;
            }
            let grown = if self.slow_start {
                self.limit * 2
            } else {
                self.limit + self.limit.isqrt()
            };
            self.limit = grown.min(self.ceiling);
            self.reached.stop = if self.limit == self.ceiling {
                Stop::Ceiling
            } else {
                Stop::Growing
            };
        } else {
            self.slow_start = false;
            self.reached.stop = Stop::Latency;
            if queued >= 2.0 * alpha {
                self.limit = (self.limit - (self.limit / 4).max(1)).max(self.start);
            }
        }
    }
}

/// The lower quartile of some round trips: what most requests of a round took, without the
/// outliers that say nothing about queueing (a new connection's handshakes, a slow blob).
fn quartile(mut values: Vec<Duration>) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let at = values.len() / 4;
    let (_, q, _) = values.select_nth_unstable(at);
    Some(*q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `n` rounds of answers at round trip `rtt`: each round as many requests as the
    /// limit, sent together and answered a round trip later; the limit is in use (as many
    /// in flight as it allows) unless `busy` is false. Returns the limit after each round.
    fn rounds(
        c: &mut Controller,
        t: &mut Instant,
        rtt: Duration,
        busy: bool,
        n: usize,
    ) -> Vec<u32> {
        let mut limits = Vec::new();
        for _ in 0..n {
            let limit = c.limit();
            c.in_flight(if busy { limit } else { 1 });
            let sent = *t;
            for k in 1..=limit {
                let at = sent + Duration::from_micros(u64::from(k)) + rtt;
                c.observe(Sample {
                    at,
                    round_trip: Some(rtt),
                    signal: Signal::Fine,
                });
                *t = at;
            }
            limits.push(c.limit());
        }
        limits
    }

    fn refuse(c: &mut Controller, t: Instant, signal: Signal) -> Option<u32> {
        c.observe(Sample {
            at: t,
            round_trip: None,
            signal,
        })
    }

    #[test]
    fn a_long_path_that_does_not_queue_grows_to_the_ceiling() {
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        assert_eq!(c.limit(), 6);
        let limits = rounds(&mut c, &mut t, 80 * MS, true, 6);
        assert_eq!(limits[..4], [12, 24, 48, 64]);
        assert_eq!(c.limit(), 64);
        assert_eq!(c.reached().stop, Stop::Ceiling);
        assert_eq!(c.reached().limit, 64);
        assert_eq!(c.reached().in_flight, 64);
    }

    #[test]
    fn lengthening_round_trips_stop_the_growth_and_shrink_it_to_the_start_at_most() {
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        rounds(&mut c, &mut t, 20 * MS, true, 2);
        assert_eq!(c.limit(), 24);
        // 20 ms -> 25 ms at 24 in flight: about 5 queued, between alpha and beta: held.
        rounds(&mut c, &mut t, 25 * MS, true, 1);
        assert_eq!(c.limit(), 24);
        assert_eq!(c.reached().stop, Stop::Latency);
        // Ten times the no-load round trip: 90% of the limit queued, above beta: a quarter
        // less per round, never under the start.
        let limits = rounds(&mut c, &mut t, 200 * MS, true, 8);
        assert_eq!(limits[..3], [18, 14, 11]);
        assert_eq!(c.limit(), 6);
        assert_eq!(c.reached().limit, 24);
        // Latency back down: growth again, by the limit's square root per round (slow start
        // is over).
        assert_eq!(rounds(&mut c, &mut t, 20 * MS, true, 3), [8, 10, 13]);
    }

    #[test]
    fn a_new_limit_is_judged_by_answers_to_requests_sent_under_it() {
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        rounds(&mut c, &mut t, 80 * MS, true, 1);
        assert_eq!(c.limit(), 12);
        // Answers to requests sent before the doubling, however many: no decision.
        c.in_flight(12);
        for k in 1..=30u32 {
            c.observe(Sample {
                at: t + Duration::from_micros(u64::from(k)),
                round_trip: Some(80 * MS),
                signal: Signal::Fine,
            });
        }
        assert_eq!(c.limit(), 12);
        rounds(&mut c, &mut t, 80 * MS, true, 1);
        assert_eq!(c.limit(), 24);
    }

    #[test]
    fn a_loaded_lan_holds_at_the_start() {
        // 0.2 ms without load, 1 ms with six in flight: the requests queue at the server.
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        c.observe(Sample {
            at: t,
            round_trip: Some(MS / 5),
            signal: Signal::Fine,
        });
        rounds(&mut c, &mut t, MS, true, 10);
        assert_eq!(c.limit(), 6);
        assert_eq!(c.reached().stop, Stop::Latency);
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        rounds(&mut c, &mut t, 80 * MS, false, 5);
        assert_eq!(c.limit(), 6);
        assert_eq!(c.reached().stop, Stop::Demand);
    }

    #[test]
    fn a_429_halves_and_the_limit_recovers_to_the_start_only() {
        let mut c = Controller::new(Limit::adaptive());
        let mut t = Instant::now();
        rounds(&mut c, &mut t, 80 * MS, true, 2);
        assert_eq!(c.limit(), 24);
        assert_eq!(refuse(&mut c, t, Signal::Throttled), Some(12));
        assert_eq!(refuse(&mut c, t, Signal::Throttled), Some(6));
        assert_eq!(refuse(&mut c, t, Signal::Throttled), Some(3));
        assert_eq!(c.reached().stop, Stop::Throttled);
        // Three good answers at 3: 4; four more: 5; then 6, and no further however long
        // the path looks idle.
        rounds(&mut c, &mut t, 80 * MS, true, 20);
        assert_eq!(c.limit(), 6);
        assert_eq!(c.reached().stop, Stop::Throttled);
        assert_eq!(c.reached().limit, 24);
    }

    #[test]
    fn a_503_and_resets_halve_too() {
        let mut c = Controller::new(Limit::adaptive());
        let t = Instant::now();
        assert_eq!(refuse(&mut c, t, Signal::Unavailable), Some(3));
        assert_eq!(c.reached().stop, Stop::Unavailable);
        let mut c = Controller::new(Limit::adaptive());
        assert_eq!(refuse(&mut c, t, Signal::Reset), Some(3));
        assert_eq!(c.reached().stop, Stop::Resets);
        // After resets alone the limit may grow again beyond the start, one per round.
        let mut t = t;
        rounds(&mut c, &mut t, 80 * MS, true, 12);
        assert!(c.limit() > 6, "{}", c.limit());
    }

    #[test]
    fn an_explicit_limit_is_a_hard_ceiling() {
        let mut c = Controller::new(Limit::AtMost(3));
        let mut t = Instant::now();
        assert_eq!(c.limit(), 3);
        rounds(&mut c, &mut t, 80 * MS, true, 10);
        assert_eq!(c.limit(), 3);
        assert_eq!(refuse(&mut c, t, Signal::Throttled), Some(1));
        rounds(&mut c, &mut t, 80 * MS, true, 10);
        assert_eq!(c.limit(), 3);
        assert_eq!(c.reached().limit, 3);
        let mut c = Controller::new(Limit::AtMost(64));
        assert_eq!(c.limit(), 64, "oc's meaning: N at once from the start");
        rounds(&mut c, &mut t, 80 * MS, true, 3);
        assert_eq!(c.limit(), 64);
        assert_eq!(c.reached().stop, Stop::Ceiling);
    }

    #[test]
    fn the_quartile_ignores_outliers() {
        let mut rtts = vec![80 * MS; 6];
        rtts.extend([240 * MS, 240 * MS]);
        assert_eq!(quartile(rtts), Some(80 * MS));
        assert_eq!(quartile(Vec::new()), None);
    }
}
