//! The shape of `src/` itself: no cycle between its top-level modules (`registry`,
//! `execute`, `report`, ...). A module's dependencies are the `crate::X` paths it names
//! (`use crate::X`, `crate::X::f()`, `use crate::{X, Y}`) and, in a file directly under
//! `src/`, `super::X`; unit-test code (`#[cfg(test)]`) may look anywhere and is left out,
//! as are comments. A cycle fails with the modules on it and a file that makes each edge.
//! The copy algorithm names no store implementation (registry, disk): only the seam.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which other top-level module each top-level module names, and one file that names it.
type Edges = BTreeMap<String, BTreeMap<String, PathBuf>>;

#[test]
fn top_level_modules_of_src_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_edges(&src);
    assert!(
        edges.len() >= 10,
        "only {} top-level modules found under {}: {:?}",
        edges.len(),
        src.display(),
        edges.keys()
    );
    let cycles = cycles(&edges);
    let described: Vec<String> = cycles.iter().map(|c| describe(c, &edges)).collect();
    assert!(
        cycles.is_empty(),
        "{} cycle(s) between top-level modules of src/:\n{}",
        cycles.len(),
        described.join("\n")
    );
}

/// The copy algorithm (and verify's checks) talk to the `store` seam only: what a registry
/// or a directory does per image (a pull quota's reservations) is behind `Source`, so a new
/// store is a new implementation, not an edit of the algorithm.
#[test]
fn the_copy_algorithm_names_no_store_implementation() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_edges(&src);
    for algorithm in ["execute", "audit"] {
        for store in ["registry", "disk"] {
            assert!(
                !edges[algorithm].contains_key(store),
                "src/{algorithm} names crate::{store} (in {}): go through the Source / \
                 Destination seam in src/store.rs instead",
                edges[algorithm][store].display()
            );
        }
    }
}

/// With `autotests = false`, a file `tests/NAME.rs` that `tests/tests.rs` does not declare
/// is never compiled nor run: every one must be a module of the one binary.
#[test]
fn every_test_file_is_a_module_of_the_one_binary() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(tests.join("tests.rs")).expect("tests/tests.rs");
    let declared: BTreeSet<String> = root
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(&tests)
        .expect("tests/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
        .filter(|name| name != "tests")
        .collect();
    let missing: Vec<&String> = files.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "tests/{{{}}}.rs: not declared in tests/tests.rs, so never run (add `mod NAME;` there, \
         and use `crate::support` instead of `mod support;`)",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
}

/// The parser finds edges of every form it claims to, and none in comments or unit tests.
#[test]
fn the_module_reference_parser_reads_every_form() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    let text = "use crate::b::Thing;\n\
        use crate::{c::{x, y}, d};\n\
        // crate::e in a comment is no edge\n\
        fn f() { crate::a::g(); }\n\
        #[cfg(test)]\nmod tests { use crate::e; }\n";
    let named = named_modules(text, &["a".to_owned()], &modules);
    assert_eq!(named, ["a", "b", "c", "d"].map(String::from).into());
    let top = named_modules("use super::e;", &["a".to_owned()], &modules);
    assert_eq!(top, ["e"].map(String::from).into());
    let nested = named_modules("use super::e;", &["a".to_owned(), "x".to_owned()], &modules);
    assert!(nested.is_empty(), "{nested:?}");
    let deep = named_modules(
        "use super::super::e;",
        &["a".to_owned(), "x".to_owned()],
        &modules,
    );
    assert_eq!(deep, ["e"].map(String::from).into());
    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")] {
        edges
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), PathBuf::from(format!("src/{from}.rs")));
    }
    assert_eq!(cycles(&edges), [["a", "b", "c"].map(String::from).to_vec()]);
}

/// Every `.rs` file under `src/` but `lib.rs`, `main.rs` and files that are unit tests
/// (declared `#[cfg(test)] mod NAME;`), with its module path (`src/a/b.rs`: `[a, b]`).
fn source_files(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let mut names: Vec<String> = rel
                    .iter()
                    .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                    .collect();
                if names.last().is_some_and(|n| n == "mod") {
                    names.pop();
                }
                if !matches!(names.as_slice(), [one] if one == "lib" || one == "main") {
                    files.push((names, path));
                }
            }
        }
    }
    let tests: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|(names, path)| {
            let text = std::fs::read_to_string(path).expect("read source");
            test_submodules(&text)
                .into_iter()
                .map(|sub| names.iter().cloned().chain([sub]).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .collect();
    files.retain(|(names, _)| !tests.contains(names));
    files
}

/// `NAME` of each `#[cfg(test)] [pub(crate)] mod NAME;`: test code in a file of its own
/// (unit tests, the in-memory store).
fn test_submodules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let after = rest.trim_start();
        let after = after.strip_prefix("pub(crate) ").unwrap_or(after);
        if let Some(decl) = after.strip_prefix("mod ") {
            let name: String = decl.chars().take_while(|c| is_ident(*c)).collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                found.push(name);
            }
        }
    }
    found
}

fn module_edges(src: &Path) -> Edges {
    let files = source_files(src);
    let modules: BTreeSet<String> = files.iter().map(|(names, _)| names[0].clone()).collect();
    let mut edges: Edges = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (names, path) in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        for to in named_modules(&text, names, &modules) {
            if to != names[0] {
                let rel = path
                    .strip_prefix(src.parent().expect("root"))
                    .expect("under root");
                edges
                    .get_mut(&names[0])
                    .expect("module")
                    .entry(to)
                    .or_insert_with(|| rel.to_path_buf());
            }
        }
    }
    edges
}

/// The top-level modules that the code of a file at module path `at` names.
fn named_modules(text: &str, at: &[String], modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = without_comments(before_unit_tests(text));
    let mut named = BTreeSet::new();
    let mut add = |name: &str| {
        if modules.contains(name) {
            named.insert(name.to_owned());
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) && c != '$');
        if preceded_by_ident {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            top_level_names(group).iter().for_each(|n| add(n));
        } else {
            add(&ident(rest));
        }
    }
    // `super::super::x` in a file at depth n names the crate root's `x` when it climbs n levels.
    for (i, _) in code.match_indices("super::") {
        if code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == ':')
        {
            continue;
        }
        let mut rest = &code[i..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs == at.len() {
            add(&ident(rest));
        }
    }
    named
}

/// The text before the first `#[cfg(test)]` that opens an inline module (unit tests stand
/// last in a file).
fn before_unit_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        if let Some(decl) = after.strip_prefix("mod ") {
            let name_len = decl.chars().take_while(|c| is_ident(*c)).count();
            if decl[name_len..].trim_start().starts_with('{') {
                return &text[..start];
            }
        }
        from = start + 1;
    }
    text
}

/// `text` without `//` comments (doc comments included) and `/* */` blocks.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                let escaped: String = rest.chars().take(2).collect();
                out.push_str(&escaped);
                rest = &rest[escaped.len()..];
                continue;
            }
            in_string = c != '"';
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |n| &rest[n..]);
            continue;
        } else if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |n| &rest[n + 2..]);
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The names at the outer level of a `{...}` use group (`a::{b, c}, d}`: `a`, `d`).
fn top_level_names(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut expect_name = true;
    let mut rest = group;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_name = true,
            c if is_ident(c) && expect_name && depth == 0 => {
                let name = ident(rest);
                rest = &rest[name.len()..];
                names.push(name);
                expect_name = false;
                continue;
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    names
}

fn ident(text: &str) -> String {
    text.chars().take_while(|c| is_ident(*c)).collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for to in w.edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let to = to.as_str();
            if !w.index.contains_key(to) {
                visit(w, to);
                let low = w.low[v].min(w.low[to]);
                w.low.insert(v, low);
            } else if w.stack.contains(&to) {
                let low = w.low[v].min(w.index[to]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let at = w.stack.iter().rposition(|m| *m == v).expect("on the stack");
            let mut component: Vec<String> = w.stack.drain(at..).map(String::from).collect();
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

/// `a -> b (src/a/x.rs), b -> a (src/b/y.rs)`: the edges inside one cycle.
fn describe(cycle: &[String], edges: &Edges) -> String {
    let mut parts = Vec::new();
    for from in cycle {
        for (to, file) in &edges[from] {
            if cycle.contains(to) {
                parts.push(format!("{from} -> {to} ({})", file.display()));
            }
        }
    }
    format!("cycle {}: {}", cycle.join(", "), parts.join(", "))
}
