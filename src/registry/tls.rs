//! TLS for registries: the crypto provider, the CA and client certificates docker and podman
//! keep in certs.d, building the HTTP client with them, and the plain-HTTP probe of
//! `--insecure`.
//!
//! CA certificates come from `/etc/containers/certs.d/HOST[:PORT]/` and
//! `/etc/docker/certs.d/HOST[:PORT]/` (`*.crt`), besides the system's roots; a client
//! certificate there (`NAME.cert` with its key `NAME.key`) is presented to registries that
//! ask for one (mutual TLS). `IMAGE_MIRROR_CERTS_DIRS` (colon-separated) replaces those two
//! base directories; it exists for tests and unusual setups.
//!
//! Depends on nothing else in the registry stack.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::model::reference::Host;

/// Where docker and podman users keep per-registry CA certificates.
pub const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];
/// Test-only / advanced: colon-separated base directories replacing [`DEFAULT_CERTS_DIRS`].
pub const CERTS_DIRS_ENV: &str = "IMAGE_MIRROR_CERTS_DIRS";

/// Makes ring the process's TLS crypto provider, once, before any client is built: reqwest
/// is built without a provider of its own. ring rather than aws-lc-rs, because aws-lc seeds
/// its random generator from CPU-jitter entropy, ~25 ms of CPU at every start, a tenth of
/// an unchanged hourly run.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already (a test harness): that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Base directories holding `HOST[:PORT]/*.crt`.
fn certs_dirs() -> Vec<PathBuf> {
    match std::env::var_os(CERTS_DIRS_ENV).filter(|v| !v.is_empty()) {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// What certs.d holds for one registry.
struct CertsD {
    /// CA certificates to trust besides the system's (`*.crt`).
    roots: Vec<reqwest::Certificate>,
    /// The client certificate to present (`NAME.cert` + `NAME.key`).
    client: Option<ClientCertificate>,
}

struct ClientCertificate {
    identity: reqwest::Identity,
    cert_file: PathBuf,
}

/// Reads every certs.d file the run's registries would use (CA certificates and client
/// certificates), so a bad one stops the run before anything is contacted.
pub fn check_certificate_files<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> Result<()> {
    let bases = certs_dirs();
    for host in hosts {
        let files = read_certs_d(host.as_str(), host.api_host(), &bases)?;
        if let Some(client) = files.client {
            // A key that does not belong to its certificate shows only when TLS is set up.
            install_tls_provider();
            reqwest::Client::builder()
                .identity(client.identity)
                .build()
                .map_err(|e| {
                    anyhow!(
                        "client certificate {}: unusable with its key: {:#}",
                        client.cert_file.display(),
                        anyhow::Error::from(e)
                    )
                })?;
        }
    }
    Ok(())
}

/// `BASE/HOST[:PORT]/` under each base directory, by docker's rules: `*.crt` are CA
/// certificates; `NAME.cert` is a client certificate whose key is `NAME.key`, and either
/// without the other is an error. Of several client certificates the first by name is used.
fn read_certs_d(host: &str, api_host: &str, bases: &[PathBuf]) -> Result<CertsD> {
    let mut names = vec![host.to_owned()];
    if api_host != host {
        names.push(api_host.to_owned());
    }
    let mut found = CertsD {
        roots: Vec::new(),
        client: None,
    };
    for base in bases {
        for name in &names {
            let dir = base.join(name);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => bail!("reading certificates in {}: {e}", dir.display()),
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for file in &files {
                match file.extension().and_then(|x| x.to_str()) {
                    Some("crt") => {
                        found.roots.extend(read_ca_file(file)?);
                        tracing::debug!(registry = host, file = %file.display(), "trusting extra CA certificates");
                    }
                    Some("cert") => {
                        let key = file.with_extension("key");
                        if !files.contains(&key) {
                            bail!(
                                "missing key {} for client certificate {} (CA certificates must use the extension .crt)",
                                key.display(),
                                file.display()
                            );
                        }
                        if found.client.is_some() {
                            tracing::debug!(registry = host, file = %file.display(), "another client certificate came first; not using this one");
                            continue;
                        }
                        found.client = Some(read_client_certificate(file, &key)?);
                        tracing::debug!(registry = host, file = %file.display(), "presenting this client certificate");
                    }
                    Some("key") if !files.contains(&file.with_extension("cert")) => {
                        bail!(
                            "missing client certificate {} for key {}",
                            file.with_extension("cert").display(),
                            file.display()
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(found)
}

fn read_client_certificate(cert_file: &Path, key_file: &Path) -> Result<ClientCertificate> {
    let read = |file: &Path, what: &str| {
        std::fs::read(file).map_err(|e| anyhow!("reading {what} {}: {e}", file.display()))
    };
    let cert = read(cert_file, "client certificate")?;
    let key = read(key_file, "client key")?;
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        bail!(
            "client key {}: no PEM private key in it",
            key_file.display()
        );
    }
    if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "client certificate {}: no PEM certificate in it",
            cert_file.display()
        );
    }
    let mut pem = key;
    pem.push(b'\n');
    pem.extend_from_slice(&cert);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
        anyhow!(
            "client certificate {} with key {}: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(ClientCertificate {
        identity,
        cert_file: cert_file.to_owned(),
    })
}

fn read_ca_file(file: &Path) -> Result<Vec<reqwest::Certificate>> {
    let data = std::fs::read(file)
        .map_err(|e| anyhow!("reading CA certificate {}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&data);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let certs = reqwest::Certificate::from_pem_bundle(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: not a PEM certificate: {e}",
                file.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "CA certificate {}: no readable certificate in it",
                file.display()
            );
        }
        Ok(certs)
    } else {
        let cert = reqwest::Certificate::from_der(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: neither PEM nor DER: {e}",
                file.display()
            )
        })?;
        Ok(vec![cert])
    }
}

/// What a registry's HTTP client needs to know.
pub struct ClientSettings<'a> {
    pub host: &'a str,
    pub api_host: &'a str,
    /// Certificates unchecked (and plain HTTP allowed, see the probe).
    pub insecure: bool,
    pub connect_timeout: Duration,
    /// None for the client of streamed uploads, which have an idle limit of their own.
    pub read_timeout: Option<Duration>,
    /// HTTP/1.1 only (no HTTP/2 offered): for blob transfers, each on a connection of its
    /// own (see `RegistryClient::bulk`).
    pub http1_only: bool,
}

/// The HTTP client for one registry: the system's roots plus its certs.d CA certificates,
/// and its client certificate if certs.d has one. reqwest follows redirects (blobs on a
/// CDN) and drops `Authorization` when one leads to another host.
pub fn http_client(settings: &ClientSettings<'_>) -> Result<reqwest::Client> {
    let tls_files = read_certs_d(settings.host, settings.api_host, &certs_dirs())?;
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(settings.insecure)
        .connect_timeout(settings.connect_timeout)
        .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")));
    if let Some(read_timeout) = settings.read_timeout {
        builder = builder.read_timeout(read_timeout);
    }
    builder = builder.tls_certs_merge(tls_files.roots);
    if let Some(client) = tls_files.client {
        builder = builder.identity(client.identity);
    }
    if settings.http1_only {
        builder = builder.http1_only();
    }
    builder
        .build()
        .map_err(|e| anyhow!("building the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_follows_dockers_file_rules() {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = base.path().join("reg.example:5000");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let bases = [base.path().to_owned()];
        let read = || read_certs_d("reg.example:5000", "reg.example:5000", &bases);
        // Nothing there, or another registry's directory: nothing to add.
        let none = read().unwrap_or_else(|e| panic!("{e:#}"));
        assert!(none.roots.is_empty() && none.client.is_none());
        // A key alone.
        std::fs::write(dir.join("client.key"), "-----BEGIN PRIVATE KEY-----\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            e.contains("missing client certificate") && e.contains("client.cert"),
            "{e}"
        );
        std::fs::remove_file(dir.join("client.key")).unwrap_or_else(|e| panic!("{e}"));
        // A certificate alone: docker's hint that CA files are *.crt.
        std::fs::write(dir.join("ca.cert"), "-----BEGIN CERTIFICATE-----\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("missing key") && e.contains(".crt"), "{e}");
        // A pair whose files hold no PEM.
        std::fs::write(dir.join("ca.cert"), "junk").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("ca.key"), "junk").unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            e.contains("client key") && e.contains("no PEM private key"),
            "{e}"
        );
    }
}
