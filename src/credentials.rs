//! Registry credentials from a Docker `config.json`, through the docker_credential crate.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use crate::reference::DOCKER_HUB;

/// Where credentials come from for this run.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A Docker config.json to read.
    File(PathBuf),
    /// No file: anonymous access everywhere.
    Anonymous,
}

impl Credentials {
    /// The first of: the explicit flag, `REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`. Files named explicitly must exist; the default locations may
    /// be absent, which means anonymous access.
    pub fn locate(flag: Option<PathBuf>) -> Self {
        let explicit = flag.or_else(|| non_empty_env("REGISTRY_AUTH_FILE").map(PathBuf::from));
        if let Some(path) = explicit {
            return Credentials::File(path);
        }
        let default = match non_empty_env("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => {
                non_empty_env("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
            }
        };
        match default {
            Some(path) if path.exists() => Credentials::File(path),
            _ => Credentials::Anonymous,
        }
    }

    /// Checks the file can be read and parsed, before anything is contacted.
    pub fn validate(&self) -> Result<()> {
        if let Credentials::File(path) = self {
            let text = std::fs::read(path)
                .map_err(|e| anyhow!("registry config {}: {e}", path.display()))?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .map_err(|e| anyhow!("registry config {}: not valid JSON: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The credential for a registry host, anonymous when none is configured.
    pub fn for_registry(&self, host: &str) -> Result<RegistryAuth> {
        // docker_credential keys Docker Hub by its legacy URL.
        let server = if host == DOCKER_HUB {
            "https://index.docker.io/v1/"
        } else {
            host
        };
        let found = match self {
            Credentials::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| anyhow!("registry config {}: {e}", path.display()))?;
                docker_credential::get_credential_from_reader(std::io::BufReader::new(file), server)
            }
            Credentials::Anonymous => return Ok(RegistryAuth::Anonymous),
        };
        match found {
            Ok(DockerCredential::UsernamePassword(user, password)) => {
                Ok(RegistryAuth::Basic(user, password))
            }
            Ok(DockerCredential::IdentityToken(_)) => Err(anyhow!(
                "credentials for {host}: identity tokens are not supported yet; use a username and password"
            )),
            Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
            Err(e) => Err(anyhow!("credentials for {host}: {e}")),
        }
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}
