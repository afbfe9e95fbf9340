//! The source layout stays readable: no module of `src/` imports one that imports it
//! back, neither between files nor between top-level modules (docs/jobs.md, "Reading the
//! code"). Dependencies are read from `crate::` and `super::` paths outside comments and
//! test modules, which is how this code base names every import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`jobs::worker`) -> source text without comments and tests.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let root = stack[0].clone();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.insert(parts.join("::"), code.join("\n"));
        }
    }
    out
}

/// Every `crate::a::b` and `super::a` path in `code` (brace groups expanded one level).
fn paths(module: &str, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", String::new()),
        (
            "super::",
            module.rsplit_once("::").map_or("", |p| p.0).to_string(),
        ),
    ] {
        let join = |p: &str| {
            if base.is_empty() {
                p.to_string()
            } else {
                format!("{base}::{p}")
            }
        };
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let head = &rest[..end];
            if rest[end..].starts_with('{') {
                let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
                for item in rest[end + 1..close].split(',') {
                    let item = item.trim();
                    if !item.is_empty() {
                        found.push(join(&format!("{head}{item}")));
                    }
                }
            } else {
                found.push(join(head.trim_end_matches(':')));
            }
        }
    }
    found
}

/// The longest known module that `path` names or lies in.
fn resolve<'a>(path: &str, known: &'a BTreeSet<String>) -> Option<&'a String> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .find_map(|n| known.get(&segs[..n].join("::")))
}

/// Edges between modules cut to `depth` path segments (`usize::MAX`: files).
fn graph(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let cut = |m: &str| m.split("::").take(depth).collect::<Vec<_>>().join("::");
    let nested = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        for p in paths(m, code) {
            if let Some(t) = resolve(&p, &known) {
                let (a, b) = (cut(m), cut(t));
                if !a.is_empty() && !b.is_empty() && !nested(&a, &b) {
                    g.entry(a).or_default().insert(b);
                }
            }
        }
    }
    g
}

/// One cycle of `g`, if there is any.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == v) {
            let mut c = path[i..].to_vec();
            c.push(v.to_string());
            return Some(c);
        }
        if done.contains(v) {
            return None;
        }
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|v| visit(v, g, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let files = graph(usize::MAX);
    assert!(files.contains_key("jobs::pipeline"), "the reader sees src/");
    assert!(files["jobs::pipeline"].contains("scan"), "{files:?}");
    for depth in [1, usize::MAX] {
        if let Some(c) = cycle(&graph(depth)) {
            panic!("import cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g).unwrap().len(), 3);
    let known = BTreeSet::from(["jobs".to_string(), "jobs::lease".to_string()]);
    assert_eq!(
        resolve("jobs::lease::Signals", &known).unwrap(),
        "jobs::lease"
    );
    let found = paths(
        "jobs::pipeline",
        "use super::{ingest, record};\nuse crate::a::b;",
    );
    assert_eq!(found, ["a::b", "jobs::ingest", "jobs::record"]);
}
