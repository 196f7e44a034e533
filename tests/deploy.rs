//! The manifests under deploy/ cannot drift from the binary: every image-mirror container's
//! arguments parse with the real CLI, sets only environment variables the binary reads,
//! mounts the mappings where the arguments read them and the credentials where `-a` points.

use std::path::{Path, PathBuf};

use clap::Parser;
use image_mirror::commands::cli::{Cli, Command, ENV_VARS};
use image_mirror::inputs::DEFAULT_MAPPING_DIR;
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read yaml");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Every pod spec (an object with `containers`) anywhere in a document.
fn pod_specs<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("containers").is_some_and(Value::is_array) {
                out.push(value);
            }
            map.values().for_each(|v| pod_specs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| pod_specs(v, out)),
        _ => {}
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Kubernetes' `$(VAR)` expansion from the container's env.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_owned();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

struct Mount {
    path: String,
    volume: Value,
    items: Vec<(String, String)>,
}

fn mounts(pod: &Value, container: &Value) -> Vec<Mount> {
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default();
            let volume = volumes
                .iter()
                .find(|v| v["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("volume {name} is mounted but not defined"));
            let source = volume
                .get("secret")
                .or_else(|| volume.get("configMap"))
                .cloned()
                .unwrap_or(Value::Null);
            let items = source["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            (
                                i["key"].as_str().unwrap_or("").to_owned(),
                                i["path"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Mount {
                path: m["mountPath"].as_str().unwrap_or_default().to_owned(),
                volume,
                items,
            }
        })
        .collect()
}

#[test]
fn every_image_mirror_container_matches_the_binary() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 4, "{files:?}");
    let mut containers_checked = 0;
    for file in &files {
        for doc in documents(file) {
            let mut pods = Vec::new();
            pod_specs(&doc, &mut pods);
            for pod in pods {
                for container in pod["containers"].as_array().into_iter().flatten() {
                    if !container["image"]
                        .as_str()
                        .unwrap_or("")
                        .contains("image-mirror")
                    {
                        continue;
                    }
                    let place = format!("{} container {}", file.display(), container["name"]);
                    check_container(&place, pod, container);
                    containers_checked += 1;
                }
            }
        }
    }
    assert!(
        containers_checked >= 4,
        "only {containers_checked} image-mirror containers found"
    );
}

fn check_container(place: &str, pod: &Value, container: &Value) {
    let mut env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_owned(),
                e["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (name, _) in &env {
        assert!(
            ENV_VARS.contains(&name.as_str()),
            "{place}: sets {name}, which image-mirror does not read"
        );
    }
    // Kubernetes sets this one in Indexed Jobs.
    env.push(("JOB_COMPLETION_INDEX".to_owned(), "0".to_owned()));

    let command = strings(&container["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some("image-mirror"),
        "{place}: command"
    );
    let args: Vec<String> = strings(&container["args"])
        .iter()
        .map(|a| expand(a, &env))
        .collect();
    assert!(
        args.iter().all(|a| !a.contains("$(")),
        "{place}: unexpanded variable in {args:?}"
    );
    let argv: Vec<String> = std::iter::once("image-mirror".to_owned())
        .chain(args.iter().cloned())
        .collect();
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{place}: the binary rejects {argv:?}:\n{e}"));
    let run = match cli.command {
        Command::Run(run) => run,
        // Presubmits check the pull request's files, offline: checked by
        // `presubmits_check_and_diff_the_mapping_files`.
        Command::Check(_) => return,
        Command::Verify(_) | Command::Import(_) | Command::Prune(_) => {
            panic!("{place}: not a run or check command")
        }
    };
    let dry_run = env
        .iter()
        .find(|(n, _)| n == "dry_run")
        .map(|(_, v)| v.as_str());
    assert!(
        matches!(dry_run, Some("true" | "false")),
        "{place}: dry_run must be \"true\" or \"false\", is {dry_run:?}"
    );

    let mounts = mounts(pod, container);
    // The mappings are read from a mounted ConfigMap.
    let spec = run.mappings.input_spec();
    for path in &spec.paths {
        let path = path.to_str().unwrap_or("");
        let mount = mounts
            .iter()
            .find(|m| path == m.path || path.starts_with(&format!("{}/", m.path)))
            .unwrap_or_else(|| panic!("{place}: mapping path {path} is not mounted"));
        assert!(
            mount.volume.get("configMap").is_some(),
            "{place}: {path} is not a ConfigMap"
        );
    }
    if run.mappings.paths.is_empty() && run.mappings.filenames.is_empty() {
        assert!(
            mounts.iter().any(|m| m.path == DEFAULT_MAPPING_DIR),
            "{place}: nothing mounted at the default {DEFAULT_MAPPING_DIR}"
        );
    }
    // The signature policy, and the keys it names, come from a mounted ConfigMap or Secret.
    if let Some(policy) = &run.policy {
        let path = policy.to_str().unwrap_or("");
        let mount = mounts
            .iter()
            .find(|m| path.starts_with(&format!("{}/", m.path)))
            .unwrap_or_else(|| panic!("{place}: --policy {path} is not mounted"));
        assert!(
            mount.volume.get("configMap").is_some() || mount.volume.get("secret").is_some(),
            "{place}: {} is not a ConfigMap or Secret",
            mount.path
        );
        policy_keys_are_mounted(place, &mount.path, &mount.volume);
    }
    // The credentials file is where -a points, inside a mounted Secret.
    let config = run
        .registry
        .registry_config
        .unwrap_or_else(|| panic!("{place}: no -a/--registry-config"));
    let (dir, name) = (
        config.parent().and_then(Path::to_str).unwrap_or(""),
        config.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    );
    let mount = mounts.iter().find(|m| m.path == dir).unwrap_or_else(|| {
        panic!(
            "{place}: nothing mounted at {dir} for -a {}",
            config.display()
        )
    });
    assert!(
        mount.volume.get("secret").is_some(),
        "{place}: {dir} is not a Secret"
    );
    assert!(
        mount.items.is_empty() || mount.items.iter().any(|(_, path)| path == name),
        "{place}: the Secret does not provide {name}"
    );
}

#[test]
fn the_kustomization_lists_real_mapping_files_that_check_accepts() {
    let dir = root().join("deploy/kubernetes");
    let docs = documents(&dir.join("kustomization.yaml"));
    let files: Vec<String> = docs[0]["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| strings(&g["files"]))
        .collect();
    assert!(!files.is_empty());
    let mut listed: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    for path in &listed {
        assert!(path.is_file(), "{} does not exist", path.display());
    }
    // Every example mapping file is in the ConfigMap.
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("mappings"))
        .expect("mappings/")
        .map(|e| e.expect("entry").path())
        .collect();
    examples.sort();
    listed.sort();
    let canonical = |p: &Vec<PathBuf>| {
        p.iter()
            .map(|p| std::fs::canonicalize(p).expect("canonical"))
            .collect::<Vec<_>>()
    };
    assert_eq!(canonical(&listed), canonical(&examples));
    let spec = image_mirror::inputs::InputSpec {
        paths: listed,
        prefix: None,
    };
    let set = image_mirror::inputs::load(&image_mirror::inputs::discover(&spec).expect("files"))
        .expect("load");
    assert!(!set.has_errors(), "{:?}", set.diagnostics);
}

/// The presubmits run `check` and `check --diff` on the pull request's mapping files: paths
/// that exist in a repository laid out like this one (mappings/ at the root), a base tree
/// where the job's extra_refs clone the base branch, and a trigger that fires on them.
#[test]
fn presubmits_check_and_diff_the_mapping_files() {
    let path = root().join("deploy/prow/image-mirror-presubmits.yaml");
    let docs = documents(&path);
    let jobs: Vec<&Value> = docs[0]["presubmits"]
        .as_object()
        .expect("presubmits by repository")
        .values()
        .flat_map(|jobs| jobs.as_array().into_iter().flatten())
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let mut diffs = 0;
    for job in jobs {
        let name = job["name"].as_str().unwrap_or("?");
        let trigger = regex::Regex::new(job["run_if_changed"].as_str().unwrap_or("^$"))
            .unwrap_or_else(|e| panic!("{name}: run_if_changed: {e}"));
        assert!(
            trigger.is_match("mappings/mapping_team"),
            "{name}: not run on mappings/"
        );
        assert!(
            !trigger.is_match("README.md"),
            "{name}: runs on every change"
        );
        let container = &job["spec"]["containers"][0];
        let argv: Vec<String> = std::iter::once("image-mirror".to_owned())
            .chain(strings(&container["args"]))
            .collect();
        let cli = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{name}: the binary rejects {argv:?}:\n{e}"));
        let Command::Check(check) = cli.command else {
            panic!("{name}: not a check command")
        };
        for p in &check.mappings.paths {
            assert!(
                p.is_relative(),
                "{name}: {} is not in the clone",
                p.display()
            );
            assert!(
                root().join(p).is_dir(),
                "{name}: no {} in the repository",
                p.display()
            );
        }
        if let Some(base) = &check.diff {
            diffs += 1;
            let aliases: Vec<String> = job["extra_refs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["path_alias"].as_str())
                .map(|a| format!("/home/prow/go/src/{a}"))
                .collect();
            let under = aliases
                .iter()
                .find_map(|a| base.strip_prefix(a).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: {} is not in an extra_refs clone {aliases:?}",
                        base.display()
                    )
                });
            assert_eq!(
                [under.to_path_buf()],
                check.mappings.paths.as_slice(),
                "{name}: the base and the pull request's trees are different paths"
            );
        }
    }
    assert_eq!(diffs, 1, "one presubmit runs check --diff");
}

/// The policy's ConfigMap, when deploy/ defines it, parses with the binary and names only
/// keys under the policy's mount.
fn policy_keys_are_mounted(place: &str, mount: &str, volume: &Value) {
    let Some(name) = volume["configMap"]["name"].as_str() else {
        return;
    };
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    for doc in files.iter().flat_map(|f| documents(f)) {
        if doc["kind"] != "ConfigMap" || doc["metadata"]["name"] != name {
            continue;
        }
        let policy = doc["data"]["policy.json"]
            .as_str()
            .unwrap_or_else(|| panic!("{place}: ConfigMap {name} has no policy.json"));
        image_mirror::policy::file::parse(policy)
            .unwrap_or_else(|e| panic!("{place}: ConfigMap {name}: policy.json: {e}"));
        let text: Value = serde_json::from_str(policy).unwrap_or(Value::Null);
        for key in text.to_string().split('"').filter(|s| s.ends_with(".pub")) {
            assert!(
                key.starts_with(&format!("{mount}/")),
                "{place}: key {key} is not under {mount}"
            );
        }
    }
}
