//! Listing a registry's repositories where `_catalog` is not the way ([`super::catalog`]
//! is): Docker Hub's repositories API for a namespace, quay.io's repository API, and a
//! registry's search endpoint. Each answer's page is parsed by a pure function (unit-tested
//! on bodies written from the APIs' documentation); fetching goes through the client's
//! HTTP stack, retried like every request.

use anyhow::{Result, anyhow};
use serde::Deserialize;

use super::auth::Authorization;
use super::auth::credentials::{Credential, Secret};
use super::client::RegistryClient;
use super::control::CostClass;
use super::error::registry_answer;
use super::pipeline::{Body, Request, unread};
use crate::model::failure::{ErrorKind, failure};
use crate::model::rules::Lister;

const DOCKER_HUB_API: &str = "https://hub.docker.com";
const QUAY_API: &str = "https://quay.io";
/// Pages followed at most: a guard against an API that never stops answering `next`.
const MAX_PAGES: usize = 10_000;

/// One page of a listing: repository paths, and how to ask for the next page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub paths: Vec<String>,
    pub next: Option<String>,
}

/// Docker Hub: `GET /v2/repositories/NAMESPACE/?page_size=100`, `next` is a URL.
pub fn dockerhub_page(body: &[u8]) -> Result<Page> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        next: Option<String>,
        results: Vec<Repo>,
    }
    #[derive(Deserialize)]
    struct Repo {
        name: String,
        namespace: String,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| anyhow!("not a Docker Hub repository list: {e}"))?;
    Ok(Page {
        paths: a
            .results
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect(),
        next: a.next.filter(|n| !n.is_empty()),
    })
}

/// quay.io: `GET /api/v1/repository?namespace=NAMESPACE`, `next_page` is a token.
pub fn quay_page(body: &[u8]) -> Result<Page> {
    #[derive(Deserialize)]
    struct Answer {
        repositories: Vec<Repo>,
        #[serde(default)]
        next_page: Option<String>,
    }
    #[derive(Deserialize)]
    struct Repo {
        namespace: String,
        name: String,
    }
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| anyhow!("not a quay repository list: {e}"))?;
    Ok(Page {
        paths: a
            .repositories
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect(),
        next: a.next_page.filter(|n| !n.is_empty()),
    })
}

/// A search endpoint: `GET /v1/search?q=QUERY&n=100&page=N`; the next page is N+1 while
/// N < `num_pages`.
pub fn index_page(body: &[u8]) -> Result<Page> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        num_pages: Option<u64>,
        #[serde(default)]
        page: Option<u64>,
        results: Vec<Repo>,
    }
    #[derive(Deserialize)]
    struct Repo {
        name: String,
    }
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| anyhow!("not a search answer: {e}"))?;
    let next = match (a.page, a.num_pages) {
        (Some(page), Some(pages)) if page < pages => Some((page + 1).to_string()),
        _ => None,
    };
    Ok(Page {
        paths: a.results.into_iter().map(|r| r.name).collect(),
        next,
    })
}

impl RegistryClient {
    /// The repositories `lister` finds under `prefix` (a path's literal start; its first
    /// segment is the namespace for Docker Hub and quay).
    pub async fn list_repositories_with(
        &self,
        lister: Lister,
        prefix: &str,
    ) -> Result<Vec<String>> {
        if lister == Lister::Catalog {
            return self.list_repositories(prefix).await;
        }
        let namespace = prefix.split('/').next().unwrap_or("");
        if namespace.is_empty() && lister != Lister::Index {
            return Err(failure(
                ErrorKind::Permanent,
                format!(
                    "the {} lister lists one namespace: write {}/NAMESPACE/* (no wildcard in the namespace)",
                    lister.name(),
                    self.host
                ),
            ));
        }
        let bearer = match lister {
            Lister::DockerHub => self.dockerhub_login(namespace).await?,
            _ => None,
        };
        let mut paths = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let url = match (lister, &next) {
                (Lister::DockerHub, Some(url)) => url.clone(),
                (Lister::DockerHub, None) => {
                    format!("{DOCKER_HUB_API}/v2/repositories/{namespace}/?page_size=100")
                }
                (Lister::Quay, token) => format!(
                    "{QUAY_API}/api/v1/repository?namespace={namespace}{}",
                    token
                        .as_ref()
                        .map(|t| format!("&next_page={t}"))
                        .unwrap_or_default()
                ),
                (_, page) => format!(
                    "{}v1/search?q={}&n=100&page={}",
                    self.url_at(&[]),
                    prefix.trim_end_matches('/'),
                    page.as_deref().unwrap_or("1")
                ),
            };
            let body = self.get_listing(lister, &url, bearer.as_deref()).await?;
            let page = match lister {
                Lister::DockerHub => dockerhub_page(&body),
                Lister::Quay => quay_page(&body),
                _ => index_page(&body),
            }
            .map_err(|e| failure(ErrorKind::Permanent, format!("{}: {e:#}", self.host)))?;
            paths.extend(page.paths.into_iter().filter(|p| p.starts_with(prefix)));
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(paths),
            }
        }
        Ok(paths)
    }

    async fn get_listing(
        &self,
        lister: Lister,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<bytes::Bytes> {
        let what = format!("listing repositories of {} ({})", self.host, lister.name());
        let url = reqwest::Url::parse(url)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{what}: unusable URL: {e}")))?;
        let mut request = Request::new(reqwest::Method::GET, url, CostClass::Check, &what);
        if let Some(token) = bearer {
            request = request.given(Authorization::Bearer(Secret::new(token)));
        }
        let response = self.pipe.send(&request, None, unread).await?.value;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(failure(
                super::error::kind_of_status(status).or_permanent(),
                format!("{what}: {}", registry_answer(status, &body)),
            ));
        }
        Ok(body)
    }

    /// Docker Hub lists a namespace's private repositories to its owner: a login with the
    /// auth file's user name and password gives the token for that. `None`: anonymous.
    async fn dockerhub_login(&self, namespace: &str) -> Result<Option<String>> {
        let credential = self
            .credentials
            .for_repository(self.host.as_str(), namespace)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))?;
        let Credential::Basic { username, password } = &credential.credential else {
            return Ok(None);
        };
        let what = "logging in to Docker Hub to list repositories";
        let login = format!("{DOCKER_HUB_API}/v2/users/login");
        let body = serde_json::json!({
            "username": username,
            "password": password.expose(),
        });
        let login = reqwest::Url::parse(&login)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{what}: unusable URL: {e}")))?;
        let request = Request::new(reqwest::Method::POST, login, CostClass::Check, what)
            .header(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            )
            .body(Body::Bytes(body.to_string().into()))
            .counted_as("hub.docker.com");
        let response = self.pipe.send(&request, None, unread).await?.value;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(failure(
                ErrorKind::Denied,
                format!(
                    "{what}: Docker Hub refused {} ({})",
                    credential.who(),
                    registry_answer(status, &body)
                ),
            ));
        }
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let token: Token = serde_json::from_slice(&body).map_err(|_| {
            failure(
                ErrorKind::Permanent,
                format!("{what}: no token in the answer"),
            )
        })?;
        Ok(Some(token.token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_pages_follow_next_and_name_private_repositories_too() {
        let body = br#"{"count": 3, "next": "https://hub.docker.com/v2/repositories/myorg/?page=2&page_size=2", "previous": null,
            "results": [
              {"name": "api", "namespace": "myorg", "repository_type": "image", "is_private": false},
              {"name": "secret-tool", "namespace": "myorg", "repository_type": "image", "is_private": true}
            ]}"#;
        let page = dockerhub_page(body).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(page.paths, ["myorg/api", "myorg/secret-tool"]);
        assert_eq!(
            page.next.as_deref(),
            Some("https://hub.docker.com/v2/repositories/myorg/?page=2&page_size=2")
        );
        let last = br#"{"count": 3, "next": null, "previous": "x", "results": [{"name": "web", "namespace": "myorg"}]}"#;
        assert_eq!(dockerhub_page(last).map(|p| p.next).ok(), Some(None));
        assert!(dockerhub_page(br#"{"detail": "Object not found"}"#).is_err());
    }

    #[test]
    fn quay_pages_follow_next_page_tokens() {
        let body = br#"{"repositories": [
              {"namespace": "coreos", "name": "etcd", "description": "", "is_public": true, "kind": "image"},
              {"namespace": "coreos", "name": "flannel", "is_public": true}
            ], "next_page": "gAAAAABk"}"#;
        let page = quay_page(body).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(page.paths, ["coreos/etcd", "coreos/flannel"]);
        assert_eq!(page.next.as_deref(), Some("gAAAAABk"));
        let last = br#"{"repositories": []}"#;
        assert_eq!(quay_page(last).ok(), Some(Page::default()));
        assert!(quay_page(br#"{"error_message": "Unauthorized"}"#).is_err());
    }

    #[test]
    fn search_pages_count_up_to_num_pages() {
        let body =
            br#"{"num_results": 3, "num_pages": 2, "page": 1, "page_size": 2, "query": "team",
            "results": [{"name": "team/a", "description": ""}, {"name": "team/b"}]}"#;
        let page = index_page(body).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(page.paths, ["team/a", "team/b"]);
        assert_eq!(page.next.as_deref(), Some("2"));
        let last = br#"{"num_pages": 2, "page": 2, "results": [{"name": "team/c"}]}"#;
        assert_eq!(index_page(last).map(|p| p.next).ok(), Some(None));
    }
}
