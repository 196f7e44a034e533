//! Where a run's metrics go (`--metrics-file`, `--pushgateway`): the file written atomically
//! for node_exporter's textfile collector, the push over HTTP. The text is
//! [`crate::report::metrics`]'s (a view, pure); this module only writes and sends it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::block_on;
use crate::redact::url_for_humans;
use crate::report::RunResult;
use crate::report::metrics::{self, Ending};

/// Writes the metrics file and pushes to the Pushgateway, as asked. A failure is logged as an
/// error but does not fail the run: the images were mirrored, and a metrics outage shows
/// anyway, as a last success that grows old and fires the alert.
pub fn publish(
    result: &RunResult,
    metrics_file: Option<&Path>,
    pushgateway: Option<&reqwest::Url>,
    shard: Option<&str>,
    success: bool,
) {
    let ending = Ending::now(success);
    if let Some(path) = metrics_file {
        match write_textfile(path, result, ending, shard) {
            Ok(()) => tracing::info!(path = %path.display(), "metrics file written"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "metrics file not written"),
        }
    }
    if let Some(url) = pushgateway {
        match block_on(push(url, result, ending, shard)) {
            Ok(Ok(())) => tracing::info!("metrics pushed to the Pushgateway"),
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "metrics not pushed"),
            Err(_) => {}
        }
    }
}

/// Writes the metrics file for node_exporter's textfile collector: to a temporary file in
/// the same directory, then renamed over the old one, so the collector never reads half a
/// file. The temporary name does not end in `.prom`, so the collector ignores it.
pub fn write_textfile(
    path: &Path,
    run: &RunResult,
    ending: Ending,
    shard: Option<&str>,
) -> Result<()> {
    // What the file before says (nothing when there is none yet).
    let before = std::fs::read_to_string(path).unwrap_or_default();
    let carried = metrics::Carried {
        last_success: if ending.success {
            Some(ending.at)
        } else {
            metrics::previous_last_success(&before)
        },
        deferred_since: metrics::deferred_since(run, ending, Some(&before)),
    };
    let common: Vec<(&str, &str)> = shard.map(|s| ("shard", s)).into_iter().collect();
    let text = metrics::render(run, ending, &carried, &common);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".to_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("renaming {} to {}", tmp.display(), path.display()))
    })
}

/// `URL/metrics/job/image-mirror[/shard/I]`: where a push goes.
pub fn push_url(base: &reqwest::Url, shard: Option<&str>) -> Result<reqwest::Url> {
    let mut url = base.clone();
    {
        let Ok(mut segments) = url.path_segments_mut() else {
            bail!("{} cannot take a path", url_for_humans(base));
        };
        segments
            .pop_if_empty()
            .extend(["metrics", "job", metrics::JOB]);
        if let Some(shard) = shard {
            segments.extend(["shard", shard]);
        }
    }
    Ok(url)
}

/// Pushes the run's metrics to a Pushgateway with a POST, which replaces the metrics it names
/// in the group and keeps the others: a failed run leaves [`metrics::LAST_SUCCESS`] out, so the
/// Pushgateway keeps the last success it was told of, and a run that deferred images leaves
/// [`metrics::DEFERRED_SINCE`] out likewise.
pub async fn push(
    base: &reqwest::Url,
    run: &RunResult,
    ending: Ending,
    shard: Option<&str>,
) -> Result<()> {
    crate::registry::tls::install_tls_provider();
    let url = push_url(base, shard)?;
    let shown = url_for_humans(&url);
    let carried = metrics::Carried {
        last_success: ending.success.then_some(ending.at),
        deferred_since: metrics::deferred_since(run, ending, None),
    };
    let text = metrics::render(run, ending, &carried, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "pushing metrics to {shown}: {}",
                crate::registry::error::describe_http_error(&e, &shown)
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let said: String = crate::redact::redact(body.trim())
            .chars()
            .take(300)
            .collect();
        bail!("pushing metrics to {shown}: {status} {said}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_go_to_the_job_and_shard_group() {
        let base = reqwest::Url::parse("http://pgw:9091/").unwrap_or_else(|e| panic!("{e}"));
        let url = |shard| {
            push_url(&base, shard)
                .map(|u| u.to_string())
                .unwrap_or_default()
        };
        assert_eq!(url(None), "http://pgw:9091/metrics/job/image-mirror");
        assert_eq!(
            url(Some("2")),
            "http://pgw:9091/metrics/job/image-mirror/shard/2"
        );
    }
}
