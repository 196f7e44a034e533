//! `--max-prune`, the valve of `prune`: how many deletions one run may make before the
//! whole prune is refused (a count, or a share of the tags the ledger names; by default 10,
//! or half when that is more), and how a refusal names the limit. Pure.

/// `--max-prune`: how many deletions one run may make before the whole prune is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxPrune {
    /// `N`: at most N.
    Count(usize),
    /// `P%`: at most P% (rounded down) of the tags the ledger names for the run's
    /// destinations.
    Share(u8),
    /// Not given: [`MaxPrune::DEFAULT_COUNT`], or [`MaxPrune::DEFAULT_SHARE`]% of what the
    /// ledger names when that is more. A mapping directory emptied by mistake makes
    /// everything due at once: more than half is refused, while a small mirror may still
    /// prune a few tags a run.
    #[default]
    Default,
}

impl MaxPrune {
    pub const DEFAULT_COUNT: usize = 10;
    pub const DEFAULT_SHARE: u8 = 50;

    /// `N` or `P%` (0 to 100).
    pub fn parse(text: &str) -> Result<MaxPrune, String> {
        let text = text.trim();
        if let Some(share) = text.strip_suffix('%') {
            return match share.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxPrune::Share(p)),
                _ => Err(format!(
                    "{text:?} is not a share: write P% with P a whole number from 0 to 100"
                )),
            };
        }
        text.parse::<usize>().map(MaxPrune::Count).map_err(|_| {
            format!("{text:?} is neither a number of tags (N) nor a share (P%, e.g. 50%)")
        })
    }

    /// How many deletions are allowed when the ledger names `named` tags.
    pub fn limit(self, named: usize) -> usize {
        let share = |p: u8| named.saturating_mul(usize::from(p)) / 100;
        match self {
            MaxPrune::Count(n) => n,
            MaxPrune::Share(p) => share(p),
            MaxPrune::Default => Self::DEFAULT_COUNT.max(share(Self::DEFAULT_SHARE)),
        }
    }

    /// How the refusal names the limit.
    pub fn describe(self, named: usize) -> String {
        let limit = self.limit(named);
        let of = format!(
            "{} the ledger names for this run's destinations",
            crate::plural::count(named, "tag")
        );
        match self {
            MaxPrune::Count(n) => format!("--max-prune {n}"),
            MaxPrune::Share(p) => format!("--max-prune {p}% ({limit} of the {of})"),
            MaxPrune::Default => format!(
                "the default --max-prune ({}, or {}% of the {of} when that is more: {limit})",
                Self::DEFAULT_COUNT,
                Self::DEFAULT_SHARE
            ),
        }
    }
}

/// The valve closed: more were due than `--max-prune` allows, and nothing was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valve {
    /// How many deletions were allowed.
    pub limit: usize,
    /// How many were due.
    pub due: usize,
    /// The limit as the user reads it (`--max-prune 2`, the default's share, …).
    pub said: String,
}

#[cfg(test)]
mod tests {
    use super::MaxPrune;

    #[test]
    fn max_prune_is_a_count_or_a_share_and_by_default_ten_or_half() {
        assert_eq!(MaxPrune::parse("3"), Ok(MaxPrune::Count(3)));
        assert_eq!(MaxPrune::parse("50%"), Ok(MaxPrune::Share(50)));
        assert_eq!(MaxPrune::parse("0"), Ok(MaxPrune::Count(0)));
        for bad in ["101%", "-1", "half", "%", "1.5%", ""] {
            assert!(MaxPrune::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(MaxPrune::Count(3).limit(1000), 3);
        assert_eq!(MaxPrune::Share(50).limit(5), 2);
        assert_eq!(MaxPrune::Share(100).limit(7), 7);
        assert_eq!(
            MaxPrune::Default.limit(4),
            10,
            "a small mirror prunes a few"
        );
        assert_eq!(MaxPrune::Default.limit(12), 10);
        assert_eq!(MaxPrune::Default.limit(30), 15, "more than half is refused");
    }
}
