//! Tag lists: every tag of a repository, following `Link` pagination (or `last=` for
//! registries that page without it) — for wildcards, and for what a destination holds.

use anyhow::Result;
use reqwest::StatusCode;
use reqwest::header::LINK;

use super::auth::Access;
use super::client::RegistryClient;
use super::control::CostClass;
use super::error::is_registry_error;
use super::pipeline::Request;
use crate::model::failure::{ErrorKind, failure};
use crate::model::reference::Repository;

const TAGS_PAGE_SIZE: usize = 1000;

/// What a tag listing came to.
enum Listing {
    Tags(Vec<String>),
    /// The registry said the repository does not exist (a 404 with a registry error): the
    /// error, for a caller that needed tags from it.
    NoRepository(anyhow::Error),
    /// A 404 that is no registry error: the registry has no tag listing at all.
    Unsupported,
}

impl RegistryClient {
    /// Every tag of a repository, following pagination (`Link: <...>; rel="next"`). A
    /// repository that does not exist, or a registry without tag listing, is an error: a
    /// wildcard or a tagless source needs the list.
    pub async fn list_tags(&self, repository: &Repository) -> Result<Vec<String>> {
        match self.tag_listing(repository).await? {
            Listing::Tags(tags) => Ok(tags),
            Listing::NoRepository(e) => Err(e),
            Listing::Unsupported => Err(failure(
                ErrorKind::Permanent,
                format!(
                    "listing tags of {repository}: {} has no tag listing (GET /v2/{}/tags/list answered 404 without a registry error); a wildcard or a source without tag needs it, so name the tags instead",
                    self.host,
                    repository.path()
                ),
            )),
        }
    }

    /// The tags a destination repository holds: none when it does not exist yet; `None` when
    /// the registry has no tag listing (then every tag is asked for by a HEAD).
    pub async fn held_tags(&self, repository: &Repository) -> Result<Option<Vec<String>>> {
        Ok(match self.tag_listing(repository).await? {
            Listing::Tags(tags) => Some(tags),
            Listing::NoRepository(_) => Some(Vec::new()),
            Listing::Unsupported => None,
        })
    }

    async fn tag_listing(&self, repository: &Repository) -> Result<Listing> {
        let access = Access::pull(repository.path());
        let what = format!("listing tags of {repository}");
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut url = self.tags_url(repository, None);
        loop {
            let answer = self
                .fetch(
                    &Request::new(reqwest::Method::GET, url.clone(), CostClass::Check, &what)
                        .access(&access),
                )
                .await?;
            if answer.status == StatusCode::NOT_FOUND && tags.is_empty() {
                return Ok(if is_registry_error(&answer.body) {
                    Listing::NoRepository(self.refused(&what, &access, &answer))
                } else {
                    Listing::Unsupported
                });
            }
            if !answer.status.is_success() {
                return Err(self.refused(&what, &access, &answer));
            }
            let next = answer
                .headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: TagsPage = serde_json::from_slice(&answer.body).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!("{what}: unreadable answer: {e}"),
                )
            })?;
            let page = page.tags.unwrap_or_default();
            let full_page = page.len() >= TAGS_PAGE_SIZE;
            let last = page.last().cloned();
            let before = tags.len();
            tags.extend(page.into_iter().filter(|t| seen.insert(t.clone())));
            // A registry that ignores `n`/`last` (distribution 2.8 does) answers the same
            // list again: a page with nothing new ends the listing.
            if tags.len() == before {
                break;
            }
            match (next, last) {
                (Some(next), _) => url = self.absolute(&next)?,
                // Registries that page without a Link header: ask for what follows the last
                // tag until a page comes back short.
                (None, Some(last)) if full_page => url = self.tags_url(repository, Some(&last)),
                _ => break,
            }
        }
        Ok(Listing::Tags(tags))
    }

    /// The first page of a tag list, or the page after `last`.
    fn tags_url(&self, repository: &Repository, last: Option<&str>) -> reqwest::Url {
        let mut url = self.url(repository, &["tags", "list"]);
        match last {
            Some(last) => url.set_query(Some(&format!("n={TAGS_PAGE_SIZE}&last={last}"))),
            None => url.set_query(Some(&format!("n={TAGS_PAGE_SIZE}"))),
        }
        url
    }
}

/// One page of a `tags/list` answer.
#[derive(serde::Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// `<url>; rel="next"` from a Link header.
pub(super) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=b&n=2>; rel=\"next\""),
            Some("/v2/a/tags/list?last=b&n=2".to_owned())
        );
        assert_eq!(
            next_link("<https://x/v2/a/tags/list?n=1>; rel=next"),
            Some("https://x/v2/a/tags/list?n=1".to_owned())
        );
        assert_eq!(next_link("</a>; rel=\"prev\""), None);
    }
}
