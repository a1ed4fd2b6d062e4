//! The layering ARCHITECTURE.md describes, checked on the source: no cycle among the server's
//! top-level modules (test code aside), and no source file past the size that holds one
//! concern.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// "No source file over ~600 lines outside tests" (issue 17), with a little slack.
const MAX_LINES: usize = 650;
/// Files that hold only tests.
const TEST_FILES: &[&str] = &[
    "tests.rs",
    "proptests.rs",
    "conformance.rs",
    "equivalence.rs",
    "pick_equivalence.rs",
    "test_strategies.rs",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    TEST_FILES.contains(&name) || path.components().any(|c| c.as_os_str() == "tests")
}

/// The source without comments and without `#[cfg(test)]` modules.
fn code_of(source: &str) -> String {
    let without_comments: String = source
        .lines()
        .map(|l| match l.find("//") {
            // `//` inside a string ("http://…") is rare in code that names modules; a line cut
            // there loses nothing this check reads.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = without_comments.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item it gates: up to its matching brace, or its semicolon.
        let (mut depth, mut end) = (0usize, after.len());
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules a piece of code names: `crate::x` paths and `use crate::{x, y::…}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut expect) = (1usize, true);
            let mut chars = group.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect = true,
                    c if depth == 1 && expect && (c.is_alphanumeric() || c == '_') => {
                        let name = ident_at(&group[i..]);
                        names.insert(name.to_string());
                        expect = false;
                        for _ in 1..name.len() {
                            chars.next();
                        }
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident_at(rest).to_string());
        }
    }
    names
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(SRC);
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(src).expect("server/src") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if matches!(name.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            modules.insert(name, path);
        }
    }
    let mut graph = BTreeMap::new();
    for (name, path) in &modules {
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(path, &mut files);
        } else {
            files.push(path.clone());
        }
        let mut deps = BTreeSet::new();
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let code = code_of(&fs::read_to_string(file).expect("readable source"));
            deps.extend(
                named_modules(&code)
                    .into_iter()
                    .filter(|m| m != name && modules.contains_key(m)),
            );
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let i = w.index.len();
        w.index.insert(v, i);
        w.low.insert(v, i);
        w.stack.push(v);
        for u in &w.graph[v] {
            let u = u.as_str();
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.low[v].min(w.low[u]);
                w.low.insert(v, low);
            } else if w.stack.contains(&u) {
                let low = w.low[v].min(w.index[u]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(u) = w.stack.pop() {
                component.push(u.to_string());
                if u == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.found
}

#[test]
fn the_checker_sees_cycles_and_imports() {
    let code = code_of(
        "use crate::{store::{self, Plan}, limits::x};\n// crate::relay in a comment\nfn f() { crate::auth::go(); }\n#[cfg(test)]\nmod tests { use crate::state; }\n",
    );
    assert_eq!(
        named_modules(&code),
        ["auth", "limits", "store"].map(String::from).into()
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}

#[test]
fn no_cycle_among_top_level_modules() {
    let graph = module_graph();
    // The graph is read at all: the relay's modules name the store.
    assert!(graph["relay"].contains("store") || graph["relay"].contains("limits"));
    let found = cycles(&graph);
    let explain: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} → {b}"))
                })
                .collect();
            format!("{c:?}: {}", edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "module cycles: {explain:#?}");
}

#[test]
fn source_files_hold_one_concern() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/src"),
        &mut files,
    );
    let long: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let n = fs::read_to_string(f)
                .expect("readable source")
                .lines()
                .count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(files.len() > 50, "the source tree was not found");
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}
