//! What `verify` found, and its two views: the text on stdout and the JSON report
//! (`verify --report PATH`). One model for both modes: walking destination repositories
//! (every tag complete), and comparing each image a mapping names with its source (digest,
//! completeness, what is attached).

use crate::model::attached::Attachment;
use std::collections::HashMap;

use crate::model::diagnostics::Location;
use crate::model::image::{SourceImage, Target};
use crate::model::reference::{Digest, Repository};
use crate::plural::{count, count_as};
use crate::redact::redact;
use crate::report::json::JsonAttached;
use crate::report::outcome::ListingFailure;

/// What is wrong with a destination tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The destination has no such tag (or digest).
    Missing,
    /// The source now points at another image than the destination holds.
    Moved,
    /// The source no longer has the image.
    SourceMissing,
    /// A manifest, index child or blob the destination's image references is missing.
    Incomplete,
    /// Something attached to the image at the source is missing at the destination.
    AttachedMissing,
    /// Something attached at the source has another digest at the destination.
    AttachedDiffers,
    /// A registry did not answer what the check needed: nothing could be concluded.
    Unchecked,
}

/// One problem, under the tag (or `@digest`) it was found for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tag: String,
    pub kind: ProblemKind,
    pub message: String,
    /// The attachment concerned, for `attached_missing` / `attached_differs`.
    pub attachment: Option<Attachment>,
}

/// One destination tag compared with the source a mapping names.
#[derive(Debug, Clone)]
pub struct ImageCheck {
    pub destination: Target,
    pub source: SourceImage,
    pub origin: Location,
    pub source_digest: Option<Digest>,
    pub destination_digest: Option<Digest>,
    /// How the destination's index was rewritten from the source's (`platforms=…`,
    /// `--filter-by-os …`): its digest differs from the source's by design.
    pub rewritten: Option<String>,
    /// What is attached at the source and was found the same at the destination.
    pub attached: Vec<Attachment>,
    pub problems: Vec<Problem>,
}

/// The tags checked in one destination repository, and what was found.
#[derive(Debug, Clone)]
pub struct RepositoryCheck {
    pub repository: String,
    pub tags: usize,
    /// Attached manifests found as at the source (comparing mode).
    pub attached: usize,
    pub problems: Vec<Problem>,
    /// The repository could not be walked at all (walking mode).
    pub error: Option<String>,
}

/// Everything `verify` has to say.
#[derive(Debug, Default)]
pub struct VerifyResult {
    pub repositories: Vec<RepositoryCheck>,
    /// Per image, in comparing mode (empty when walking repositories).
    pub images: Vec<ImageCheck>,
    pub listing_failures: Vec<ListingFailure>,
    /// Requests sent to registries (token requests included).
    pub requests: u64,
}

impl VerifyResult {
    /// Whether anything is wrong (exit 1).
    pub fn failed(&self) -> bool {
        !self.listing_failures.is_empty()
            || self
                .repositories
                .iter()
                .any(|r| !r.problems.is_empty() || r.error.is_some())
    }

    /// Groups image checks by destination repository, in the order of the images.
    pub fn from_images(images: Vec<ImageCheck>) -> VerifyResult {
        let mut repositories: Vec<RepositoryCheck> = Vec::new();
        let mut at: HashMap<&Repository, usize> = HashMap::new();
        for image in &images {
            let i = *at.entry(&image.destination.repository).or_insert_with(|| {
                repositories.push(RepositoryCheck {
                    repository: image.destination.repository.to_string(),
                    tags: 0,
                    attached: 0,
                    problems: Vec::new(),
                    error: None,
                });
                repositories.len() - 1
            });
            let entry = &mut repositories[i];
            entry.tags += 1;
            entry.attached += image.attached.len();
            entry.problems.extend(image.problems.iter().cloned());
        }
        VerifyResult {
            repositories,
            images,
            ..VerifyResult::default()
        }
    }
}

/// The text view: a line per repository, a line per problem under it, listing failures,
/// and in comparing mode a last line with the totals.
pub fn text(result: &VerifyResult) -> String {
    let mut out = String::new();
    for r in &result.repositories {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {}\n", r.repository, redact(e)));
            continue;
        }
        let attached = if r.attached > 0 {
            format!(
                ", {} as at the source",
                count(r.attached, "attached manifest")
            )
        } else {
            String::new()
        };
        if r.problems.is_empty() {
            out.push_str(&format!(
                "{}: {}, all complete{attached}\n",
                r.repository,
                count(r.tags, "tag")
            ));
            continue;
        }
        out.push_str(&format!(
            "{}: {}, {}{attached}\n",
            r.repository,
            count(r.tags, "tag"),
            count(r.problems.len(), "problem")
        ));
        for p in &r.problems {
            out.push_str(&format!("  {}: {}\n", p.tag, redact(&p.message)));
        }
    }
    for f in &result.listing_failures {
        out.push_str(&format!(
            "{}: cannot list tags ({}): {}\n",
            f.source,
            f.origin,
            f.error_text()
        ));
    }
    if !result.images.is_empty() || !result.listing_failures.is_empty() {
        let problems: usize = result.repositories.iter().map(|r| r.problems.len()).sum();
        let attached: usize = result.repositories.iter().map(|r| r.attached).sum();
        let verdict = if result.failed() {
            count(problems + result.listing_failures.len(), "problem")
        } else {
            "all as at the source".to_owned()
        };
        out.push_str(&format!(
            "verified {} against the sources ({} checked): {verdict}; {} sent\n",
            count(result.images.len(), "image"),
            count(attached, "attached manifest"),
            count(result.requests as usize, "request")
        ));
    } else if !result.repositories.is_empty() {
        // Repository mode: the same last line, of what was checked there.
        let problems: usize = result.repositories.iter().map(|r| r.problems.len()).sum();
        let errors = result
            .repositories
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        let tags: usize = result.repositories.iter().map(|r| r.tags).sum();
        let verdict = if problems + errors == 0 {
            "no problem".to_owned()
        } else {
            count(problems + errors, "problem")
        };
        out.push_str(&format!(
            "verified {} in {}: {verdict}; {} sent\n",
            count(tags, "tag"),
            count_as(result.repositories.len(), "repository", "repositories"),
            count(result.requests as usize, "request")
        ));
    }
    out
}

#[derive(Debug, serde::Serialize)]
pub struct JsonVerify<'a> {
    pub version: u32,
    pub totals: JsonTotals,
    pub repositories: Vec<JsonRepository<'a>>,
    pub images: Vec<JsonImage<'a>>,
    pub listing_failures: Vec<JsonListingFailure<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonTotals {
    pub repositories: usize,
    pub tags: usize,
    pub problems: usize,
    pub attached_checked: usize,
    pub requests: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonRepository<'a> {
    pub repository: &'a str,
    pub tags: usize,
    pub error: Option<String>,
    pub problems: Vec<JsonProblem<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonProblem<'a> {
    pub tag: &'a str,
    pub kind: ProblemKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<JsonAttached<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonImage<'a> {
    pub destination: String,
    pub source: String,
    pub file: &'a str,
    pub line: u32,
    pub source_digest: Option<&'a str>,
    pub destination_digest: Option<&'a str>,
    pub rewritten: Option<&'a str>,
    pub attached: Vec<JsonAttached<'a>>,
    pub problems: Vec<JsonProblem<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonListingFailure<'a> {
    pub source: &'a str,
    pub file: &'a str,
    pub line: u32,
    pub error: String,
}

fn json_problem(p: &Problem) -> JsonProblem<'_> {
    JsonProblem {
        tag: &p.tag,
        kind: p.kind,
        message: redact(&p.message),
        attachment: p.attachment.as_ref().map(JsonAttached::of),
    }
}

/// The JSON view.
pub fn json(result: &VerifyResult) -> JsonVerify<'_> {
    JsonVerify {
        version: 1,
        totals: JsonTotals {
            repositories: result.repositories.len(),
            tags: result.repositories.iter().map(|r| r.tags).sum(),
            problems: result
                .repositories
                .iter()
                .map(|r| r.problems.len())
                .sum::<usize>()
                + result.listing_failures.len(),
            attached_checked: result.repositories.iter().map(|r| r.attached).sum(),
            requests: result.requests,
        },
        repositories: result
            .repositories
            .iter()
            .map(|r| JsonRepository {
                repository: &r.repository,
                tags: r.tags,
                error: r.error.as_deref().map(redact),
                problems: r.problems.iter().map(json_problem).collect(),
            })
            .collect(),
        images: result
            .images
            .iter()
            .map(|i| JsonImage {
                destination: i.destination.to_string(),
                source: i.source.to_string(),
                file: &i.origin.file,
                line: i.origin.line,
                source_digest: i.source_digest.as_ref().map(|d| d.as_str()),
                destination_digest: i.destination_digest.as_ref().map(|d| d.as_str()),
                rewritten: i.rewritten.as_deref(),
                attached: i.attached.iter().map(JsonAttached::of).collect(),
                problems: i.problems.iter().map(json_problem).collect(),
            })
            .collect(),
        listing_failures: result
            .listing_failures
            .iter()
            .map(|f| JsonListingFailure {
                source: &f.source,
                file: &f.origin.file,
                line: f.origin.line,
                error: f.error_text(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attached::Kind;
    use crate::model::reference::{ManifestRef, Tag, parse_name};

    fn check(destination: &str, tag: &str, problems: usize, attached: usize) -> ImageCheck {
        let repository = parse_name(destination).unwrap_or_else(|e| panic!("{e}"));
        let tag = Tag::parse(tag).unwrap_or_else(|e| panic!("{e}"));
        let digest = Digest::of(b"image");
        let attachment = Attachment {
            digest: Digest::of(b"signature"),
            kind: Kind::Signature,
            artifact_type: None,
            subject: digest.clone(),
        };
        ImageCheck {
            destination: Target {
                repository: repository.clone(),
                reference: ManifestRef::Tag(tag.clone()),
            },
            source: SourceImage::tagged(repository, tag.clone()),
            origin: Location {
                file: "mapping".into(),
                line: 1,
                column: 1,
            },
            source_digest: Some(digest.clone()),
            destination_digest: Some(digest),
            rewritten: None,
            attached: vec![attachment.clone(); attached],
            problems: (0..problems)
                .map(|i| Problem {
                    tag: tag.to_string(),
                    kind: ProblemKind::AttachedMissing,
                    message: format!("problem {i}"),
                    attachment: Some(attachment.clone()),
                })
                .collect(),
        }
    }

    #[test]
    fn images_are_grouped_by_destination_repository_and_counted() {
        let result = VerifyResult::from_images(vec![
            check("r.io/a", "1", 0, 2),
            check("r.io/b", "1", 1, 0),
            check("r.io/a", "2", 0, 1),
        ]);
        assert!(result.failed());
        assert_eq!(
            text(&result),
            "r.io/a: 2 tags, all complete, 3 attached manifests as at the source\n\
             r.io/b: 1 tag, 1 problem\n  1: problem 0\n\
             verified 3 images against the sources (3 attached manifests checked): 1 problem; 0 requests sent\n"
        );
        let json = json(&result);
        assert_eq!(json.totals.tags, 3);
        assert_eq!(json.totals.problems, 1);
        assert_eq!(json.totals.attached_checked, 3);
        assert_eq!(
            json.repositories[1].problems[0].kind,
            ProblemKind::AttachedMissing
        );
        let all_well = VerifyResult::from_images(vec![check("r.io/a", "1", 0, 0)]);
        assert!(!all_well.failed());
    }
}
