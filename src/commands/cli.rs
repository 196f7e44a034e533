//! Command-line interface. Flag names follow `oc image mirror` so existing job definitions
//! keep working when they switch binaries.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use super::owned::OwnedArgs;
use crate::concurrency::Limit;
use crate::inputs::{DEFAULT_MAPPING_DIR, InputSpec};
use crate::registry::RegistryOptions;
use crate::registry::blobs::ranged;

/// Selects mapping files in directories (the Prow jobs set it).
pub const ENV_MAPPING_FILE_PREFIX: &str = "MAPPING_FILE_PREFIX";
/// Set `true`/`false` by the Prow jobs and their rehearsals, in this order of precedence.
pub const ENV_DRY_RUN: [&str; 2] = ["dry_run", "DRY_RUN"];
/// A pod's index in a Kubernetes Indexed Job: the shard for `--shard-count`.
pub const ENV_JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Prow's artefacts directory: reports written there show on the job's page.
pub const ENV_ARTIFACTS: &str = "ARTIFACTS";
/// Every environment variable the binary reads; deploy manifests may set only these.
pub const ENV_VARS: &[&str] = &[
    ENV_MAPPING_FILE_PREFIX,
    ENV_DRY_RUN[0],
    ENV_DRY_RUN[1],
    ENV_JOB_COMPLETION_INDEX,
    ENV_ARTIFACTS,
    "REGISTRY_AUTH_FILE",
    "DOCKER_CONFIG",
    "HOME",
    "RUST_LOG",
    "IMAGE_MIRROR_CERTS_DIRS",
    ENV_NO_COLOR,
];

/// Set (to anything but the empty string) to ask for no colour: <https://no-color.org>.
pub const ENV_NO_COLOR: &str = "NO_COLOR";

#[derive(Debug, Parser)]
#[command(
    name = "image-mirror",
    version,
    about = "Mirror container images between OCI/Docker registries from `oc image mirror` mapping files",
    long_about = "Mirror container images between OCI/Docker registries from `oc image mirror` mapping files.\n\n\
        A mapping file has one mapping per line: `SRC DST [DST ...]` or `SRC=DST` pairs, `#` comments. \
        A source tag may be a glob (`repo:v4.1*`, `repo:*`); a source without tag mirrors every tag, as oc does.\n\n\
        Exit codes: 0 success, 1 some images failed, 2 bad input or usage (nothing contacted), \
        or more tags due for pruning than --max-prune (nothing deleted)."
)]
pub struct Cli {
    /// Log format on stderr (the level: RUST_LOG).
    ///
    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Colour log lines.
    ///
    /// Colour log lines: `auto` only when stderr is a terminal and NO_COLOR is unset or
    /// empty (a Prow or CronJob log is a file: no escape codes in it), `always`, `never`.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether log lines get ANSI colours, given whether stderr is a terminal and the value
    /// of `NO_COLOR`. The flag wins over `NO_COLOR` (no-color.org: a user's explicit choice
    /// overrides it); `auto` colours only a terminal, because escape codes in a CI log file
    /// are noise that every reader and grep has to step around.
    pub fn enabled(self, stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate mapping files and report every error, without contacting any registry; with
    /// --diff, also show what a change to them does.
    Check(CheckArgs),
    /// Mirror every mapped image (wildcards expanded) into the destination registries.
    #[command(
        long_about = "Mirror every mapped image (wildcards expanded) into the destination registries.\n\n\
        Manifests are copied byte for byte, so digests are preserved; blobs are streamed and \
        checked against their digest before they are committed; tags are written last.\n\n\
        Where this deliberately differs from `oc image mirror`: a tag that already has the \
        source digest is left alone (oc re-PUTs every manifest on every run); the dry run asks \
        the destinations and shows what would really change (oc's never does, and lists every \
        blob as needing a copy); manifest lists are copied whole unless --filter-by-os says \
        otherwise (oc keeps only the host's platform unless told otherwise); failed requests, \
        blob copies and images are retried with backoff, Retry-After honoured, and downloads \
        resume where they were cut (oc retries no upload)."
    )]
    Run(Box<RunArgs>),
    /// Delete destination tags the ledger says image-mirror wrote and no mapping produces
    /// any more, once unwanted for --prune-after (copies nothing; `run --prune` copies, then
    /// prunes). Needs --ledger.
    #[command(mut_arg("ledger", |a| a.required(true)))]
    Prune(Box<RunArgs>),
    /// Check a mirror, reading only: with REPOSITORY arguments, that every tag of them points
    /// at a complete image (the manifest, its index children and every blob exist); with -f
    /// mapping files, that each image they name is at its destination as at its source —
    /// same digest, complete, and everything attached at the source (signatures,
    /// attestations, SBOMs, referrers) there with the same digest. Exit 0 if so, 1 if not.
    // verify writes nothing: its transfer limit speaks of reads.
    #[command(mut_arg("max_per_registry", |a| a
        .help("Most blob reads per registry (a ceiling)")
        .long_help("Most blob reads in flight to one registry (verify only reads), a hard ceiling. Lowered for a while when the registry answers 429 or 503. Without it: six at first, more while the round trip is long and does not lengthen under load, at most 64.")))]
    Verify(VerifyArgs),
    /// Print the mapping lines (with `# image-mirror:` options) equivalent to another
    /// mirroring tool's configuration file. Whatever cannot be translated is an error naming
    /// the entry, and then nothing is printed (exit 2); settings a mapping file cannot hold
    /// (TLS, credentials) are notes on stderr saying where they go.
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The tool whose file FILE is.
    #[arg(long = "from", value_enum, value_name = "FORMAT")]
    pub format: ImportFormat,
    /// Where destinations go, when the format does not say (skopeo-sync: skopeo's
    /// destination argument) or instead of what it says (kyma: its targetRepoPrefix;
    /// image-operator: a registry for its destination names).
    #[arg(long, value_name = "PREFIX")]
    pub to: Option<String>,
    /// The file to translate.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// rancher/image-mirror's images-list (SOURCE DESTINATION TAG lines).
    Rancher,
    /// kyma image-syncer's images.yaml.
    Kyma,
    /// `skopeo sync --src yaml` files.
    SkopeoSync,
    /// image-operator's Image resources.
    ImageOperator,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Repositories to walk, as `host[:port]/path`, or directories: `oci:PATH`,
    /// `file://REPO` (under --dir). Or, instead, mapping files with -f.
    #[arg(
        value_name = "REPOSITORY",
        required_unless_present = "filenames",
        conflicts_with = "filenames"
    )]
    pub repositories: Vec<String>,

    /// A mapping file or directory of them, as `run` takes them (repeatable): every image
    /// it names is compared with its source — the destination holds the source's digest,
    /// the image is complete, and everything attached at the source (signatures,
    /// attestations, SBOMs, referrers) is at the destination with the same digest.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,

    /// In directories given with -f, read only files whose names start with this (as for
    /// `run`).
    #[arg(long, env = ENV_MAPPING_FILE_PREFIX, value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// With -f: the --filter-by-os `run` was given. A destination index rewritten by it (or
    /// by a line's `platforms=`) is compared with the source's index rewritten the same way.
    #[arg(long, value_name = "REGEX", requires = "filenames")]
    pub filter_by_os: Option<String>,

    /// With -f: compare what is attached to each image (on by default); `--attached=false`
    /// when `run` was given it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_bool)]
    pub attached: bool,

    /// Write what was found as JSON here (schema in README).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Where `file://` repositories are (as for `run`). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Where `file://` sources are read from (as for `run`). Default: --dir.
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl VerifyArgs {
    /// The mapping files, when verify compares them with their sources.
    pub fn input_spec(&self) -> Option<InputSpec> {
        if self.filenames.is_empty() {
            return None;
        }
        Some(InputSpec {
            paths: self.filenames.clone(),
            prefix: self.prefix.clone().filter(|p| !p.is_empty()),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub mappings: MappingArgs,

    /// Compare with the mapping files under BASE (a file or directory: the base branch's
    /// tree; --prefix applies to it too) and print what the change does, per destination
    /// repository: destination tags added, removed or re-pointed to another source, wildcard
    /// patterns added, widened, narrowed or removed, with `file:line` on both sides. Offline.
    /// Exit codes as without it (2 if PATH's files have errors).
    #[arg(long, value_name = "BASE")]
    pub diff: Option<PathBuf>,

    /// How --diff prints: `text` for a log, `markdown` for a pull-request comment.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DiffFormat::Text, requires = "diff")]
    pub diff_format: DiffFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Markdown,
}

#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// Mapping files or directories (default: /etc/imagemirror).
    ///
    /// Mapping files or directories of them. Default: /etc/imagemirror (the ConfigMap mount
    /// the Prow jobs use), unless -f is given.
    #[arg(help_heading = "Mapping files", value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// A mapping file (oc's flag; repeatable).
    ///
    /// A mapping file (oc's flag; repeatable, `-f=FILE` works too).
    #[arg(
        help_heading = "Mapping files",
        short = 'f',
        long = "filename",
        value_name = "FILE"
    )]
    pub filenames: Vec<PathBuf>,

    /// In directories, only files starting with this.
    ///
    /// In directories, read only files whose names start with this. Hidden files are always
    /// skipped.
    #[arg(help_heading = "Mapping files", long, env = ENV_MAPPING_FILE_PREFIX, value_name = "PREFIX")]
    pub prefix: Option<String>,
}

impl MappingArgs {
    /// With no PATH and no -f the default directory is read: when it does not exist, the
    /// error says that no path was given (not only that a directory the user never named is
    /// missing).
    pub fn default_exists(&self) -> Result<(), String> {
        if self.paths.is_empty()
            && self.filenames.is_empty()
            && !std::path::Path::new(DEFAULT_MAPPING_DIR).exists()
        {
            return Err(format!(
                "no path given and the default {DEFAULT_MAPPING_DIR} does not exist: name \
                 mapping files or directories (PATH... or -f FILE)"
            ));
        }
        Ok(())
    }

    pub fn input_spec(&self) -> InputSpec {
        let mut paths: Vec<PathBuf> = self.paths.iter().chain(&self.filenames).cloned().collect();
        if paths.is_empty() {
            paths.push(PathBuf::from(DEFAULT_MAPPING_DIR));
        }
        InputSpec {
            paths,
            prefix: self.prefix.clone().filter(|p| !p.is_empty()),
        }
    }
}

/// How to reach registries: credentials, TLS, and the two limits per registry. The same for
/// `run` and `verify`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Docker config.json with the credentials (oc's flag).
    ///
    /// Docker config.json with registry credentials (oc's flag). Default: REGISTRY_AUTH_FILE,
    /// $DOCKER_CONFIG/config.json, ~/.docker/config.json; none means anonymous.
    #[arg(
        help_heading = "Registries",
        short = 'a',
        long = "registry-config",
        value_name = "PATH"
    )]
    pub registry_config: Option<PathBuf>,

    /// Plain HTTP or unchecked TLS anywhere.
    ///
    /// Allow plain HTTP and unverified TLS for every registry (oc's flag).
    #[arg(help_heading = "Registries", long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub insecure: bool,

    /// Plain HTTP or unchecked TLS for this registry.
    ///
    /// Allow plain HTTP and unverified TLS for this registry only (repeatable). Without it,
    /// TLS is verified against the system's roots plus the CA certificates in
    /// /etc/containers/certs.d/HOST[:PORT]/*.crt and /etc/docker/certs.d/HOST[:PORT]/*.crt;
    /// a client certificate there (NAME.cert with its key NAME.key) is presented to a
    /// registry that asks for one (env IMAGE_MIRROR_CERTS_DIRS, colon-separated, replaces
    /// those two base directories; meant for tests).
    #[arg(
        help_heading = "Registries",
        long = "insecure-registry",
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registry: Vec<String>,

    /// Most blob transfers per registry, each way (a ceiling).
    ///
    /// Most blob transfers in flight to one registry in each direction (reads from it,
    /// writes to it): what loads it (oc's flag and meaning), a hard ceiling. Lowered for a
    /// while when the registry answers 429 or 503. Without it: six at first, more while the
    /// round trip is long and does not lengthen under load, at most 64.
    #[arg(help_heading = "Registries", long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_per_registry: Option<u32>,

    /// Most checks and reads per registry.
    ///
    /// Most existence checks, manifest reads, tag or catalog lists and upload sessions opened
    /// ahead of their transfers in flight to one registry: cheap for it, and an unchanged run
    /// is nothing but these, so many in flight hide the network's round trips (over HTTP/2
    /// they share one connection). Lowered for a while when the registry answers 429.
    #[arg(help_heading = "Registries", long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_checks_per_registry: u32,

    /// Fetch blobs this big as byte ranges.
    ///
    /// Blobs of at least this size are fetched as byte ranges over several connections at
    /// once (bytes, or with KiB/MiB/GiB; 0: never). See the README, "How a copy works".
    #[arg(help_heading = "Big blobs", long, value_name = "SIZE", default_value = "64MiB", value_parser = ranged::parse_size)]
    pub range_threshold: u64,

    /// The size of each byte range.
    ///
    /// The size of each byte range of a big blob (0: no ranges). Memory held per blob is at
    /// most (--ranges-per-blob + 1) x this.
    #[arg(help_heading = "Big blobs", long, value_name = "SIZE", default_value = "8MiB", value_parser = ranged::parse_size)]
    pub range_chunk_size: u64,

    /// Byte ranges of one blob in flight at once.
    ///
    /// Byte ranges of one big blob in flight at once, each on a connection of its own and
    /// each counting as a transfer from its registry (--max-per-registry) (0 or 1: one
    /// stream).
    #[arg(help_heading = "Big blobs", long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub ranges_per_blob: u32,
}

impl RegistryArgs {
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure,
            insecure_registries: self.insecure_registry.clone(),
            transfers: self
                .max_per_registry
                .map_or_else(Limit::adaptive, Limit::AtMost),
            max_checks_per_registry: self.max_checks_per_registry as usize,
            quota_share: None,
            ranges: ranged::RangeOptions {
                threshold: self.range_threshold,
                chunk: self.range_chunk_size,
                per_blob: self.ranges_per_blob as usize,
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub mappings: MappingArgs,

    /// Print the plan and write nothing (env dry_run).
    ///
    /// Resolve and print the plan, write nothing. Also set by env `dry_run` or `DRY_RUN`
    /// (`true`/`false`). Unlike oc, the dry run asks the destinations, so it shows what would
    /// really be copied, overwritten or left unchanged, and under each image what is attached
    /// to it and would be copied with it (attachments of attachments too).
    #[arg(help_heading = "What to copy", long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    pub dry_run: Option<bool>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Most registries worked on at once.
    #[arg(help_heading = "Registries", long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_registry: u32,

    /// Copy only the platforms matching REGEX.
    ///
    /// Keep only the platforms of a manifest list whose `os/arch[/variant]` matches this
    /// regular expression. This rewrites the list, so its digest at the destination differs
    /// from the source's. Without it, every platform is copied and digests are preserved
    /// (oc keeps only the host's platform unless told otherwise).
    #[arg(help_heading = "What to copy", long, value_name = "REGEX")]
    pub filter_by_os: Option<String>,

    /// Refuse a plan of more than N images.
    ///
    /// Refuse to start a plan of more than N images (exit 2, with the count): one
    /// repository-wildcard line can mean thousands. Off by default.
    #[arg(help_heading = "What to copy", long, value_name = "N")]
    pub max_images: Option<usize>,

    /// Never overwrite destination tags matching GLOB.
    ///
    /// Destination tags matching GLOB are immutable: one that already holds another image is
    /// never overwritten (that image is `refused`, exit 1), as with `immutable` in a line's
    /// `# image-mirror:` options. Repeatable.
    #[arg(
        help_heading = "What to copy",
        long = "immutable-tags",
        value_name = "GLOB"
    )]
    pub immutable_tags: Vec<String>,

    /// Copy only images signed as this policy says.
    ///
    /// Copy only images whose cosign signatures meet this containers-policy.json (the file
    /// skopeo and podman read): `sigstoreSigned` with public keys, `reject`,
    /// `insecureAcceptAnything`, scoped by source registry, namespace and repository. An
    /// image it refuses is `refused` (exit 1); a policy that cannot be read is exit 2.
    #[arg(help_heading = "What to copy", long, value_name = "PATH")]
    pub policy: Option<PathBuf>,

    /// Where file:// destinations are written.
    ///
    /// Where `file://REPO[:TAG]` destinations are written, in oc's layout
    /// (`DIR/v2/REPO/manifests/…`, `DIR/v2/REPO/blobs/…`), and `file://` sources read from
    /// unless --from-dir says otherwise (oc's flag). Default: the current directory.
    #[arg(help_heading = "What to copy", long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Where file:// sources are read from.
    ///
    /// Where `file://` sources are read from (oc's flag). Default: --dir.
    #[arg(help_heading = "What to copy", long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,

    /// Copy signatures, attestations, SBOMs, referrers.
    ///
    /// Copy what is attached to each image with it (on by default): cosign's signatures,
    /// attestations and SBOMs (`sha256-<hex>.sig`/`.att`/`.sbom` tags) and OCI referrers,
    /// byte for byte. `--attached=false` copies the images alone.
    #[arg(help_heading = "What to copy", long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_bool)]
    pub attached: bool,

    /// Re-push what the destination already has.
    ///
    /// Re-push blobs and manifests even when the destination already has them.
    #[arg(help_heading = "What to copy", long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub force: bool,

    /// Retries of an image after a transient failure.
    ///
    /// Further attempts for an image whose copy failed transiently, as a whole, before it
    /// counts as failed; waits from 11 s, doubling, up to 300 s (plus up to a fifth). Permanent
    /// failures are never retried.
    #[arg(help_heading = "Retries and timeouts", long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,

    /// Seconds between progress lines in a log.
    ///
    /// When stderr is not a terminal (Prow, CronJob), log a progress line this often; on a
    /// terminal a progress bar is drawn instead.
    #[arg(help_heading = "Reports", long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub progress_interval: u64,

    /// Tries of one request.
    ///
    /// Tries of one request (and of one blob copy, whose download, resumes and upload share
    /// them) before a transient failure counts: refused or reset connections, timeouts, 408,
    /// 429 and 5xx answers. Waits between tries grow exponentially from 0.25 s, with jitter,
    /// up to --max-retry-wait; a `Retry-After` on 429/503 is honoured. Worst case: a request
    /// that keeps failing is sent N × (--retries + 1) times, and its waits add up to at most
    /// (N - 1) × (--retries + 1) × --max-retry-wait plus the image retries' waits.
    #[arg(help_heading = "Retries and timeouts", long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub request_attempts: u32,

    /// The longest wait before a retry.
    ///
    /// The longest wait before trying a request again, `Retry-After` included.
    #[arg(help_heading = "Retries and timeouts", long, value_name = "SECONDS", default_value = "60", value_parser = parse_wait)]
    pub max_retry_wait: Duration,

    /// The longest wait for a connection to a registry.
    #[arg(help_heading = "Retries and timeouts", long, value_name = "SECONDS", default_value = "30", value_parser = parse_timeout)]
    pub connect_timeout: Duration,

    /// The longest a registry may stay silent.
    ///
    /// The longest a registry may stay silent while an answer is awaited or read (an idle
    /// timeout, not a limit on a long transfer).
    #[arg(help_heading = "Retries and timeouts", long, value_name = "SECONDS", default_value = "300", value_parser = parse_timeout)]
    pub read_timeout: Duration,

    /// Write a JSON report here.
    ///
    /// Write a JSON report of every destination tag and the totals here (schema in README).
    /// Default when ARTIFACTS is set (Prow): $ARTIFACTS/image-mirror-report.json.
    #[arg(help_heading = "Reports", long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Write a JUnit XML report here.
    ///
    /// Write a JUnit XML report here: a test suite per mapping file, a test case per
    /// destination tag. Default when ARTIFACTS is set (Prow): $ARTIFACTS/junit_image_mirror.xml,
    /// which the job's page shows.
    #[arg(help_heading = "Reports", long, value_name = "PATH")]
    pub junit: Option<PathBuf>,

    /// Write Prometheus metrics here.
    ///
    /// Write the run's metrics here in the Prometheus text format, for node_exporter's
    /// textfile collector (name it `*.prom` in the collector's directory). Written to a
    /// temporary file and renamed; the last success's time is kept from the previous file
    /// when this run fails.
    #[arg(help_heading = "Reports", long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Push the metrics to this Pushgateway.
    ///
    /// Push the same metrics to this Pushgateway (`http://HOST:9091`) under job
    /// `image-mirror`, grouped by `shard` when sharded. A failed run leaves the last
    /// success's time as it was.
    #[arg(help_heading = "Reports", long, value_name = "URL", value_parser = parse_http_url)]
    pub pushgateway: Option<reqwest::Url>,

    /// Work only on shard INDEX of COUNT.
    ///
    /// Work only on shard INDEX of COUNT (e.g. `0/4`): destination repositories are split by
    /// a stable hash, so COUNT runs together cover the plan exactly once.
    #[arg(
        help_heading = "Sharding",
        long,
        value_name = "INDEX/COUNT",
        conflicts_with = "shard_count"
    )]
    pub shard: Option<String>,

    /// Split into COUNT shards; take JOB_COMPLETION_INDEX's.
    ///
    /// Split into COUNT shards and take the one in JOB_COMPLETION_INDEX (set by a Kubernetes
    /// Indexed Job).
    #[arg(help_heading = "Sharding", long, value_name = "COUNT")]
    pub shard_count: Option<u32>,

    #[command(flatten)]
    pub owned: OwnedArgs,

    /// The time to take as now, in seconds since 1970 (tests).
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub now: Option<u64>,

    /// Accepted for oc compatibility: manifest lists are always kept whole.
    #[arg(help_heading = "oc compatibility", hide_short_help = true, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    pub keep_manifest_list: Option<bool>,

    /// Accepted for oc compatibility: tokens always carry one repository's scopes (plus the
    /// pull scope a cross-repository mount needs).
    #[arg(help_heading = "oc compatibility", hide_short_help = true, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    pub skip_multiple_scopes: Option<bool>,

    /// Accepted for oc compatibility: a failed image never stops the others (exit 1 at the end).
    #[arg(help_heading = "oc compatibility", hide_short_help = true, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    pub continue_on_error: Option<bool>,
}

/// An `http` or `https` URL.
fn parse_http_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "expected an http:// or https:// URL, got {}",
            url.scheme()
        ));
    }
    Ok(url)
}

/// Seconds, fractions allowed, at least 0 and at most a day.
fn parse_wait(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {text:?}"))?;
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{seconds} is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Seconds, fractions allowed, more than 0.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_wait(text)?;
    if d.is_zero() {
        return Err("a timeout must be more than 0 seconds".to_owned());
    }
    Ok(d)
}

/// `true`/`false` in any case, as the Prow jobs write them.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {text:?}")),
    }
}

/// The effective dry-run setting: the flag, else env `dry_run` or `DRY_RUN`, else false.
/// The two variables set to different values are an error: a rehearsal job whose
/// `DRY_RUN=true` meets a stray `dry_run=false` must not push.
pub fn resolve_dry_run(
    flag: Option<bool>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    if let Some(v) = flag {
        return Ok(v);
    }
    let mut said: Option<(&str, bool)> = None;
    for name in ENV_DRY_RUN {
        let Some(value) = env(name) else { continue };
        let value =
            parse_bool(value.trim()).map_err(|e| format!("environment variable {name}: {e}"))?;
        match said {
            Some((first, before)) if before != value => {
                return Err(format!(
                    "environment variables {first}={before} and {name}={value} disagree: set one, or give --dry-run"
                ));
            }
            _ => said = Some((name, value)),
        }
    }
    Ok(said.is_some_and(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_sources_in_order() {
        let none = |_: &str| None;
        assert_eq!(resolve_dry_run(None, none), Ok(false));
        assert_eq!(
            resolve_dry_run(Some(true), |_| Some("false".into())),
            Ok(true)
        );
        assert_eq!(
            resolve_dry_run(None, |n| (n == "dry_run").then(|| "TRUE".into())),
            Ok(true)
        );
        assert_eq!(
            resolve_dry_run(None, |n| (n == "DRY_RUN").then(|| "False".into())),
            Ok(false)
        );
        let e = resolve_dry_run(None, |n| (n == "dry_run").then(|| "yes".into())).unwrap_err();
        assert!(e.contains("dry_run") && e.contains("yes"), "{e}");
        // Both set: they must agree, or nothing runs.
        let both = |lower: &'static str, upper: &'static str| {
            move |n: &str| Some(if n == "dry_run" { lower } else { upper }.to_owned())
        };
        assert_eq!(resolve_dry_run(None, both("true", "TRUE")), Ok(true));
        let e = resolve_dry_run(None, both("false", "true")).unwrap_err();
        assert!(e.contains("dry_run=false and DRY_RUN=true disagree"), "{e}");
        assert_eq!(
            resolve_dry_run(Some(false), both("false", "true")),
            Ok(false)
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color_unless_asked() {
        use std::ffi::OsStr;
        let auto = ColorChoice::Auto;
        assert!(auto.enabled(true, None));
        assert!(!auto.enabled(false, None));
        assert!(!auto.enabled(true, Some(OsStr::new("1"))));
        assert!(
            auto.enabled(true, Some(OsStr::new(""))),
            "empty NO_COLOR is unset"
        );
        assert!(ColorChoice::Always.enabled(false, Some(OsStr::new("1"))));
        assert!(!ColorChoice::Never.enabled(true, None));
    }

    #[test]
    fn oc_job_command_line_parses() {
        let cli = Cli::try_parse_from([
            "image-mirror",
            "run",
            "--keep-manifest-list",
            "-a",
            "/tmp/config.json",
            "-f=/etc/imagemirror/mapping_a",
            "--skip-multiple-scopes",
            "--continue-on-error",
            "--max-per-registry=3",
            "--dry-run=false",
        ]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.registry.max_per_registry, Some(3));
        assert_eq!(run.dry_run, Some(false));
        assert_eq!(
            run.mappings.filenames,
            [PathBuf::from("/etc/imagemirror/mapping_a")]
        );
        assert_eq!(
            run.registry.registry_config,
            Some(PathBuf::from("/tmp/config.json"))
        );
    }
}
