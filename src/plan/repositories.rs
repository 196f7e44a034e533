//! Repository wildcards expanded against the repositories their registry listed: each
//! matching repository becomes a tag wildcard into the destinations filled with what the
//! source's `*`s matched. Pure: the listing happened before.

use std::sync::Arc;

use crate::inputs::mapping::Mapping;
use crate::model::diagnostics::{Diagnostic, Located};
use crate::model::reference::Repository;

/// The wildcards one repository wildcard makes of `listed` (repository paths of its
/// registry), in the order listed; repositories whose destination would be no valid name
/// are errors. Other mappings come back as they are.
pub fn expand(mapping: &Mapping, listed: &[String]) -> (Vec<Mapping>, Vec<Diagnostic>) {
    let Mapping::Repositories {
        source,
        pattern,
        targets,
        rules,
    } = mapping
    else {
        return (vec![mapping.clone()], Vec::new());
    };
    let mut out = Vec::new();
    let mut diagnostics = Vec::new();
    for path in listed {
        let Some(captures) = source.value.captures(path) else {
            continue;
        };
        if let Some(re) = &rules.repos.regex
            && !re.is_match(path)
        {
            continue;
        }
        let repository = match crate::model::reference::parse_name(&format!(
            "{}/{path}",
            source.value.registry()
        )) {
            Ok(r) => r,
            Err(e) => {
                diagnostics.push(Diagnostic::warning(
                    source.location.clone(),
                    format!(
                        "{} lists an invalid repository {path:?} ({e}); skipped",
                        source.value.registry()
                    ),
                ));
                continue;
            }
        };
        let mut filled: Vec<Located<Repository>> = Vec::new();
        for t in targets {
            match t.value.fill(&captures) {
                Ok(r) => filled.push(Located {
                    value: r,
                    location: t.location.clone(),
                }),
                Err(e) => diagnostics.push(Diagnostic::error(
                    t.location.clone(),
                    format!(
                        "{repository} would go to {}, which is no repository: {e}",
                        t.value
                    ),
                )),
            }
        }
        if filled.len() != targets.len() {
            continue;
        }
        out.push(Mapping::Wildcard {
            repository: Located {
                value: repository,
                location: source.location.clone(),
            },
            pattern: pattern.clone(),
            targets: filled,
            rules: Arc::clone(rules),
        });
    }
    (out, diagnostics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;

    fn one(text: &str) -> Mapping {
        let p = parse_text(&Arc::from("m"), text);
        assert!(
            p.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            p.diagnostics
        );
        p.mappings
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no mapping"))
    }

    fn listed(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    fn pairs(mappings: &[Mapping]) -> Vec<(String, String)> {
        mappings
            .iter()
            .map(|m| match m {
                Mapping::Wildcard {
                    repository,
                    targets,
                    ..
                } => (repository.value.to_string(), targets[0].value.to_string()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn matching_repositories_are_rerooted() {
        let m = one("src.io/team/*:v1.* dst.io/ecr/team/*\n");
        let (out, diags) = expand(&m, &listed(&["team/a", "team/b", "other/c", "team/x/y"]));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            pairs(&out),
            [
                ("src.io/team/a".into(), "dst.io/ecr/team/a".into()),
                ("src.io/team/b".into(), "dst.io/ecr/team/b".into())
            ]
        );
        let deep = one("src.io/team/** dst.io/all/**\n");
        let (out, _) = expand(&deep, &listed(&["team/x/y", "team/a"]));
        assert_eq!(
            pairs(&out)[0],
            ("src.io/team/x/y".into(), "dst.io/all/x/y".into())
        );
        assert_eq!(out.len(), 2);
    }

    /// Two repository wildcards writing the same destination tag from different sources
    /// conflict once expanded, as two tag wildcards would.
    #[test]
    fn expanded_destinations_are_checked_for_conflicts() {
        let a = one("src.io/team/* dst.io/m/*\n");
        let b = one("other.io/team/* dst.io/m/*\n");
        let listed_paths = listed(&["team/app"]);
        let (mut mappings, _) = expand(&a, &listed_paths);
        mappings.extend(expand(&b, &listed_paths).0);
        let tags = std::collections::HashMap::from([
            (
                crate::model::reference::parse_name("src.io/team/app")
                    .unwrap_or_else(|e| panic!("{e}")),
                vec!["v1".to_owned()],
            ),
            (
                crate::model::reference::parse_name("other.io/team/app")
                    .unwrap_or_else(|e| panic!("{e}")),
                vec!["v1".to_owned()],
            ),
        ]);
        let (_, diagnostics) = crate::plan::plan(&mappings, &tags);
        assert!(
            diagnostics.iter().any(|d| d.is_error()
                && d.message
                    .contains("dst.io/m/app:v1 is written by two different sources")),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn repos_regex_filters_further() {
        let m = one("src.io/team/* dst.io/t/*  # image-mirror: repos-regex=\"-(api|web)$\"\n");
        let (out, _) = expand(&m, &listed(&["team/a-api", "team/a-db", "team/b-web"]));
        assert_eq!(out.len(), 2);
    }
}
