//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, an index of the manifests
//! whose `subject` is that digest, paged by `Link`. A registry without it (distribution 2.8)
//! answers 404, which says "no API", not "no referrers": the caller then reads the
//! tag-schema fallback index instead.

use anyhow::Result;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, LINK};

use super::auth::Access;
use super::client::RegistryClient;
use super::control::CostClass;
use super::pipeline::Request;
use super::tags::next_link;
use crate::model::attached::{Referrer, parse_index};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::OCI_INDEX;
use crate::model::reference::{Digest, Repository};

/// Pages followed at most: a registry whose `Link`s go round in circles must not hold a copy.
const MAX_PAGES: usize = 100;

impl RegistryClient {
    /// The referrers of `digest`, every page; `None` when the registry has no referrers API.
    pub async fn list_referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<Vec<Referrer>>> {
        let access = Access::pull(repository.path());
        let what = format!("listing referrers of {repository}@{digest}");
        let mut url = self.url(repository, &["referrers", digest.as_str()]);
        let mut referrers: Vec<Referrer> = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self
                .fetch(
                    &Request::new(reqwest::Method::GET, url.clone(), CostClass::Check, &what)
                        .access(&access)
                        .header(ACCEPT, reqwest::header::HeaderValue::from_static(OCI_INDEX)),
                )
                .await?;
            if referrers.is_empty()
                && matches!(
                    answer.status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                )
            {
                return Ok(None);
            }
            if !answer.status.is_success() {
                return Err(self.refused(&what, &access, &answer));
            }
            let page = parse_index(&answer.body)
                .map_err(|e| failure(ErrorKind::Permanent, format!("{what}: {e:#}")))?;
            for r in page {
                if !referrers.iter().any(|known| known.digest == r.digest) {
                    referrers.push(r);
                }
            }
            match answer
                .headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
            {
                Some(next) => url = self.absolute(&next)?,
                None => return Ok(Some(referrers)),
            }
        }
        Ok(Some(referrers))
    }
}
