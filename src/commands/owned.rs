//! The options of what image-mirror owns (`run` and `prune`): the ledger of what it wrote,
//! pruning what no mapping wants any more, and the `min-age` quarantine of new tags. Apart
//! from `cli.rs` so that each file stays a size one can read; flattened into
//! [`super::cli::RunArgs`].

use std::time::Duration;

use clap::{ArgAction, Args};

use super::cli::parse_bool;
use crate::ledger::valve::MaxPrune;

/// `--prune-after` when not given.
pub const DEFAULT_PRUNE_AFTER: Duration = Duration::from_secs(3 * 86_400);

#[derive(Debug, Clone, Args)]
pub struct OwnedArgs {
    /// Keep a ledger of what is written (HOST/REPO, file:DIR).
    ///
    /// Record what this run writes (per destination tag: digest, source, mapping line, first
    /// written, last confirmed) in a ledger kept in this registry repository (one OCI
    /// artifact per writer, tagged `ledger-all` or `ledger-shard-I-of-N`), or in the
    /// directory `file:DIR`. Off unless given; `--prune` and `prune` need it. A dry run
    /// reads it but writes nothing.
    #[arg(help_heading = "What to copy", long, value_name = "WHERE")]
    pub ledger: Option<String>,

    /// Delete unwanted tags the ledger names.
    ///
    /// After copying, delete the destination tags the ledger says image-mirror wrote and no
    /// current mapping produces, once unwanted for --prune-after; never a tag the ledger does
    /// not name, one holding another digest than we wrote, or a digest another tag points
    /// at. Their signatures, attestations, SBOMs and referrers go with them. The dry run
    /// lists what would be pruned.
    #[arg(help_heading = "What to copy", long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool, action = ArgAction::Set, requires = "ledger")]
    pub prune: bool,

    /// How long a tag stays unwanted before it is pruned.
    ///
    /// How long a tag must have been produced by no mapping before prune deletes it (`3d`,
    /// `36h`, `90m`, `1w`): a line removed by mistake and put back within it costs nothing.
    /// [default: 3d]
    // No clap default: given without --prune to `run`, it is an error, not silently unused.
    #[arg(help_heading = "What to copy", hide_short_help = true, long, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub prune_after: Option<Duration>,

    /// Refuse to prune more than N tags, or P%, in one run [default: 10 or 50%].
    ///
    /// Refuse to prune more than N tags, or P% of the tags the ledger names for this run's
    /// destinations, in one run: nothing is deleted, the list is printed and the exit code
    /// is 2. Default: 10, or 50% when that is more. A mapping directory emptied by mistake
    /// makes everything due at once: more than half of the mirror going is refused, while a
    /// small mirror may still prune a few tags (the --prune-after grace period protects it
    /// too). `100%` lifts the limit, `0` prunes nothing.
    #[arg(
        help_heading = "What to copy",
        hide_short_help = true,
        long,
        value_name = "N|P%",
        value_parser = MaxPrune::parse
    )]
    pub max_prune: Option<MaxPrune>,

    /// Mirror a new source tag only once seen this long.
    ///
    /// Mirror a new source tag (one the destination does not hold) only once it has been
    /// seen at the source, at the same digest, for this long (`3d`, `12h`); a tag that moves
    /// restarts its clock. Until then it is `waiting` (not failed). Tags already mirrored
    /// are updated as ever. A line's `min-age=` option wins. Needs --ledger (first
    /// sightings are kept there).
    #[arg(
        help_heading = "What to copy",
        hide_short_help = true,
        long,
        value_name = "DURATION",
        value_parser = crate::duration::parse
    )]
    pub min_age: Option<Duration>,
}

impl OwnedArgs {
    /// `--prune-after`, or its default.
    pub fn prune_after(&self) -> Duration {
        self.prune_after.unwrap_or(DEFAULT_PRUNE_AFTER)
    }

    /// A prune's own options given to a `run` that does not prune: each would do nothing.
    pub fn without_prune(&self) -> Option<&'static str> {
        if self.prune {
            None
        } else if self.max_prune.is_some() {
            Some("--max-prune")
        } else if self.prune_after.is_some() {
            Some("--prune-after")
        } else {
            None
        }
    }
}
