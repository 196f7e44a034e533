//! Credential helpers: `docker-credential-NAME get`, run as a process with the server on
//! stdin, as docker does. Run here rather than through docker_credential, whose stdin write
//! fails (and hides the helper's own message) when a helper exits without reading it. A
//! helper's "credentials not found" is "no credential"; its errors name the helper and the
//! registry; it may take at most a minute.

use anyhow::{Result, anyhow, bail};

use super::{Credential, DOCKER_HUB_KEY, RegistryCredential, Secret};
use crate::model::reference::DOCKER_HUB;

/// The longest a credential helper may take to answer.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `docker-credential-NAME get` with the server on stdin, as docker does. Run here
/// rather than through docker_credential, whose stdin write fails (and hides the helper's
/// own message) when a helper exits without reading it.
pub(super) fn run_helper(helper: &str, host: &str) -> Result<Option<RegistryCredential>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }

    let server = if host == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        host
    };
    let program = format!("docker-credential-{helper}");
    tracing::debug!(helper = %program, registry = host, "asking credential helper");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("credential helper {program} (for registry {host}) is not on PATH")
        }
        Err(e) => bail!("could not run credential helper {program} for registry {host}: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that fails fast may not read its input: its answer still counts.
        let _ = stdin.write_all(server.as_bytes());
    }
    // A helper waiting for a keychain prompt or a login would hang the job forever. Its
    // answer is small and fits the pipe, so waiting before reading cannot block it.
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "credential helper {program} did not answer within {} s for registry {host}",
                    HELPER_TIMEOUT.as_secs()
                )
            }
            Err(e) => bail!("could not run credential helper {program} for registry {host}: {e}"),
        }
    }
    let output = child.wait_with_output().map_err(|e| {
        anyhow!("could not run credential helper {program} for registry {host}: {e}")
    })?;
    if !output.status.success() {
        let said = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let first = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        // A failing helper may still have printed part of a secret.
        let first: String = crate::redact::redact(first).chars().take(300).collect();
        bail!("credential helper {program} failed for registry {host}: {first}")
    }
    let answer: Answer = serde_json::from_slice(&output.stdout).map_err(|_| {
        anyhow!("credential helper {program} answered something that is not a credential (JSON with Username and Secret) for registry {host}")
    })?;
    let origin = format!("credential helper {program}");
    let credential = match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() && answer.username.is_empty() => return Ok(None),
        // Docker's convention for an identity (refresh) token.
        ("<token>", secret) => Credential::IdentityToken {
            username: None,
            token: Secret::new(secret),
        },
        (_, secret) => Credential::Basic {
            username: answer.username.clone(),
            password: Secret::new(secret),
        },
    };
    Ok(Some(RegistryCredential { credential, origin }))
}
