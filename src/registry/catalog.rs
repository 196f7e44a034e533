//! A registry's repositories, from `GET /v2/_catalog` (following `Link`, or `last=` where
//! a registry pages without it), for repository wildcards. Starts at the pattern's literal
//! prefix where the registry honours `last`; a registry that refuses its catalog (most
//! public ones do) gets an error naming the other listers.

use anyhow::Result;
use reqwest::header::LINK;

use super::auth::Access;
use super::client::RegistryClient;
use super::control::CostClass;
use super::pipeline::Request;
use super::tags::next_link;
use crate::model::failure::{ErrorKind, failure};

const CATALOG_PAGE_SIZE: usize = 1000;

#[derive(serde::Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every repository path whose name starts with `prefix` (all of them for `""`), as far
    /// as the registry's catalog tells.
    pub async fn list_repositories(&self, prefix: &str) -> Result<Vec<String>> {
        let access = Access::catalog();
        let what = format!("listing the repositories of {} (_catalog)", self.host);
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // `last` is exclusive: start just before the prefix.
        // Our page size, until the registry says it allows fewer (distribution refuses an `n`
        // above its `catalog.maxentries` with PAGINATION_NUMBER_INVALID): then its own.
        let mut sized = true;
        let start = (!prefix.is_empty()).then_some(prefix);
        let mut url = self.catalog_url(start, sized);
        loop {
            let answer = self
                .fetch(
                    &Request::new(reqwest::Method::GET, url.clone(), CostClass::Check, &what)
                        .access(&access),
                )
                .await?;
            if sized
                && answer.status == reqwest::StatusCode::BAD_REQUEST
                && String::from_utf8_lossy(&answer.body).contains("PAGINATION_NUMBER_INVALID")
            {
                sized = false;
                url = self.catalog_url(start, sized);
                continue;
            }
            if !answer.status.is_success() {
                let refused = self.refused(&what, &access, &answer);
                return Err(failure(
                    crate::model::failure::error_kind(&refused)
                        .unwrap_or(ErrorKind::Permanent)
                        .or_permanent(),
                    format!(
                        "{refused:#}; {} does not list its repositories here: choose another lister with `# image-mirror: lister=dockerhub|quay|index`, or name the repositories",
                        self.host
                    ),
                ));
            }
            let page: CatalogPage = serde_json::from_slice(&answer.body).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!("{what}: unreadable answer: {e}"),
                )
            })?;
            let names = page.repositories.unwrap_or_default();
            let full_page = names.len() >= CATALOG_PAGE_SIZE;
            let last = names.last().cloned();
            let before = seen.len();
            // Sorted catalogs (distribution's) are past the prefix once a name is beyond it.
            let past = last
                .as_deref()
                .is_some_and(|l| !l.starts_with(prefix) && l > prefix);
            for name in names {
                if seen.insert(name.clone()) && name.starts_with(prefix) {
                    found.push(name);
                }
            }
            if seen.len() == before || past {
                break;
            }
            let next = answer
                .headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            match (next, last) {
                (Some(next), _) => url = self.absolute(&next)?,
                (None, Some(last)) if full_page => url = self.catalog_url(Some(&last), sized),
                _ => break,
            }
        }
        Ok(found)
    }

    /// `/v2/_catalog`, with our page size when `sized`, after `last` when given.
    fn catalog_url(&self, last: Option<&str>, sized: bool) -> reqwest::Url {
        let mut url = self.url_at(&["v2", "_catalog"]);
        let mut query = Vec::new();
        if sized {
            query.push(format!("n={CATALOG_PAGE_SIZE}"));
        }
        if let Some(last) = last {
            query.push(format!("last={last}"));
        }
        if !query.is_empty() {
            url.set_query(Some(&query.join("&")));
        }
        url
    }
}
