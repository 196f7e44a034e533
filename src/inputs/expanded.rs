//! A mapping once its repository wildcards are expanded (`plan::repositories` makes them):
//! an image or a tag wildcard, never a repository wildcard, so nothing after the expansion
//! has a case for one. And the repositories a mapping names, for the walks over them before
//! and after the expansion.

use std::sync::Arc;

use super::mapping::Mapping;
use crate::model::diagnostics::{Located, Location};
use crate::model::image::{SourceImage, Target};
use crate::model::reference::{Repository, TagPattern};
use crate::model::rules::LineRules;

/// [`Mapping`] without its repository-wildcard case: what planning takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandedMapping {
    /// One image to one or more destination tags ([`Mapping::Image`]).
    Image {
        source: Located<SourceImage>,
        targets: Vec<Located<Target>>,
        rules: Arc<LineRules>,
    },
    /// Every tag of `repository` matching `pattern` (and its rules), each keeping its name in
    /// every target ([`Mapping::Wildcard`], or one repository of a repository wildcard).
    Wildcard {
        repository: Located<Repository>,
        pattern: TagPattern,
        targets: Vec<Located<Repository>>,
        rules: Arc<LineRules>,
    },
}

impl ExpandedMapping {
    /// `mapping` as it is, unless it is a repository wildcard (`Err`, to be expanded).
    pub fn of(mapping: Mapping) -> Result<ExpandedMapping, Box<Mapping>> {
        match mapping {
            Mapping::Image {
                source,
                targets,
                rules,
            } => Ok(ExpandedMapping::Image {
                source,
                targets,
                rules,
            }),
            Mapping::Wildcard {
                repository,
                pattern,
                targets,
                rules,
            } => Ok(ExpandedMapping::Wildcard {
                repository,
                pattern,
                targets,
                rules,
            }),
            Mapping::Repositories { .. } => Err(Box::new(mapping)),
        }
    }

    /// Where the line is (its source).
    pub fn location(&self) -> &Location {
        match self {
            ExpandedMapping::Image { source, .. } => &source.location,
            ExpandedMapping::Wildcard { repository, .. } => &repository.location,
        }
    }

    /// What the line's `# image-mirror:` comment says.
    pub fn rules(&self) -> &Arc<LineRules> {
        match self {
            ExpandedMapping::Image { rules, .. } | ExpandedMapping::Wildcard { rules, .. } => rules,
        }
    }

    /// The source repository and the destination repositories.
    pub fn named(&self) -> Named<'_> {
        match self {
            ExpandedMapping::Image {
                source, targets, ..
            } => Named {
                source: &source.value.repository,
                destinations: Destinations::Tags(targets.iter()),
            },
            ExpandedMapping::Wildcard {
                repository,
                targets,
                ..
            } => Named {
                source: &repository.value,
                destinations: Destinations::Repositories(targets.iter()),
            },
        }
    }
}

impl Mapping {
    /// The source repository and the destination repositories; `None` for a repository
    /// wildcard (no repositories until listed).
    pub fn named(&self) -> Option<Named<'_>> {
        match self {
            Mapping::Image {
                source, targets, ..
            } => Some(Named {
                source: &source.value.repository,
                destinations: Destinations::Tags(targets.iter()),
            }),
            Mapping::Wildcard {
                repository,
                targets,
                ..
            } => Some(Named {
                source: &repository.value,
                destinations: Destinations::Repositories(targets.iter()),
            }),
            Mapping::Repositories { .. } => None,
        }
    }
}

/// The repositories one mapping names: its source and where it writes.
pub struct Named<'a> {
    pub source: &'a Repository,
    pub destinations: Destinations<'a>,
}

/// The destination repositories of one mapping, of destination tags or of repositories.
pub enum Destinations<'a> {
    Tags(std::slice::Iter<'a, Located<Target>>),
    Repositories(std::slice::Iter<'a, Located<Repository>>),
}

impl<'a> Iterator for Destinations<'a> {
    type Item = &'a Repository;

    fn next(&mut self) -> Option<&'a Repository> {
        match self {
            Destinations::Tags(targets) => targets.next().map(|t| &t.value.repository),
            Destinations::Repositories(targets) => targets.next().map(|t| &t.value),
        }
    }
}
