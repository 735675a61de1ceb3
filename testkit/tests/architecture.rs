//! The layout's invariants, checked on the source (ARCHITECTURE.md, "Architecture invariants"):
//!
//! - no module cycle in any crate: read as a graph of the files' `crate::` and `super::`
//!   paths, no file reaches itself again;
//! - `proto` and `admission` stay plain data: no tokio, openraft, sled or HTTP stack among their
//!   dependencies;
//! - `raft-store`'s `state/` decides without I/O: no file system, network, clock or runtime in
//!   it (time arrives in the commands).
//!
//! The graph is read from the text (no compiler), as `crate::`, `super::` and `self::` paths:
//! `use` trees are expanded, paths in code are followed to the longest module prefix that is a
//! file, and the crate root (`lib.rs`, `main.rs`) is left out as a target, since it only
//! declares and re-exports. A parent module naming its children by their relative path
//! (`download::start` in `daemon/mod.rs`) goes downward and is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace read: this checkout, or `ARCH_CHECK_ROOT` (to read another tree).
fn workspace() -> PathBuf {
    match std::env::var_os("ARCH_CHECK_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit sits in the workspace").to_path_buf(),
    }
}

/// The crates whose `src/` is checked.
const CRATES: [&str; 9] =
    ["admission", "proto", "raft-store", "tracker-client", "tracker-node", "peer", "testkit", "chaos", "bench"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path a file defines, relative to `src/`: `a/b.rs` and `a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !["mod", "lib", "main"].contains(&stem) {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments and string literals (so that neither counts as a path).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// `#[cfg(test)]` items are tests, not the layout: drop each such item (to its closing brace).
fn without_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let (Some(open), semi) = (after.find('{'), after.find(';')) else { return out };
        if semi.is_some_and(|s| s < open) {
            rest = &after[semi.expect("checked") + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// The paths a file names that start at `crate::`, `super::` or `self::`, as module paths
/// from the crate root.
fn referenced_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut raw: Vec<String> = Vec::new();
    for stmt in code.split(';') {
        if let Some(at) = stmt.find("use ") {
            let before = &stmt[..at];
            let before = before.trim_end();
            if before.is_empty() || before.ends_with("pub") || before.ends_with(')') || before.ends_with(']') {
                raw.extend(expand(&stmt[at + 4..]));
            }
        }
    }
    let bytes = code.as_bytes();
    for key in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(key) {
            let at = from + k;
            let boundary =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':');
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            if boundary {
                raw.push(code[at..end].to_string());
            }
            from = end.max(at + key.len());
        }
    }
    raw.into_iter()
        .filter_map(|p| {
            let p = p.split(" as ").next().unwrap_or("").trim().to_string();
            let segs: Vec<&str> = p.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
            let (&first, rest) = segs.split_first()?;
            let mut base: Vec<String> = match first {
                "crate" => vec![],
                "self" => module.to_vec(),
                "super" => {
                    let mut m = module.to_vec();
                    m.pop()?;
                    m
                }
                _ => return None,
            };
            let mut rest = rest.iter().peekable();
            while rest.peek() == Some(&&"super") {
                base.pop()?;
                rest.next();
            }
            base.extend(rest.map(|s| s.to_string()));
            Some(base)
        })
        .collect()
}

/// The file-level import graph of one crate: file -> files it takes names from.
fn graph(crate_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Files declared as `#[cfg(test)] mod x;` are tests, not the layout.
    let test_modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| {
            let module = module_of(&src, f);
            let code = code_only(&std::fs::read_to_string(f).unwrap_or_default());
            code.split("#[cfg(test)]")
                .skip(1)
                .filter_map(|after| {
                    let item = after.trim_start().split(';').next()?.trim();
                    let name = item.strip_prefix("pub(crate) ").unwrap_or(item).strip_prefix("mod ")?.trim();
                    let mut path = module.clone();
                    path.push(name.to_string());
                    Some(path)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    files.retain(|f| !test_modules.contains(&module_of(&src, f)));
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            (
                module_of(&src, f),
                f.strip_prefix(crate_dir.parent().unwrap_or(crate_dir)).unwrap_or(f).display().to_string(),
            )
        })
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let me = modules[&module].clone();
        let text = std::fs::read_to_string(f).expect("readable source");
        let code = without_test_items(&code_only(&text));
        let edges = g.entry(me.clone()).or_default();
        for path in referenced_paths(&code, &module) {
            // The longest prefix of the path that is a module file; the crate root is no target.
            let target = (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]));
            if let Some(t) = target {
                if *t != me {
                    edges.insert(t.clone());
                }
            }
        }
    }
    g
}

/// The strongly connected components of more than one file (Tarjan's algorithm).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v.as_str());
        }
    }
    t.out
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut found = Vec::new();
    for c in CRATES {
        let g = graph(&workspace().join(c));
        // `ARCH_GRAPH=1 cargo test --release -p testkit --test architecture -- --nocapture`
        // prints each file with the files it imports: the graph these checks read.
        if std::env::var_os("ARCH_GRAPH").is_some() {
            for (file, imports) in &g {
                let names: Vec<&str> = imports.iter().map(String::as_str).collect();
                println!("{file} -> {}", names.join(", "));
            }
        }
        for comp in cycles(&g) {
            found.push(comp.join(" <-> "));
        }
    }
    assert!(found.is_empty(), "files that import each other in a loop:\n{}", found.join("\n"));
}

/// The graph seen from folder `dir`: its files, and each sub-folder as one node (its `mod.rs`
/// included); files elsewhere are left out. A loop here is an import that runs back up: a
/// folder's file that the folder's own parts import, and that imports them.
fn folder_view(g: &BTreeMap<String, BTreeSet<String>>, dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let node = |f: &str| -> Option<String> {
        let rest = f.strip_prefix(dir)?.strip_prefix('/')?;
        Some(match rest.split_once('/') {
            Some((sub, _)) => format!("{dir}/{sub}/"),
            None => f.to_string(),
        })
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in g {
        let Some(a) = node(from) else { continue };
        for to in tos {
            if let Some(b) = node(to).filter(|b| *b != a) {
                out.entry(a.clone()).or_default().insert(b);
            }
        }
    }
    out
}

#[test]
fn no_folder_imports_back_up() {
    let mut found = Vec::new();
    for c in CRATES {
        let g = graph(&workspace().join(c));
        let dirs: BTreeSet<String> =
            g.keys().filter_map(|f| Path::new(f).parent().map(|d| d.display().to_string())).collect();
        let mut all_dirs = BTreeSet::new();
        for d in dirs {
            let mut p = Path::new(&d);
            while p.components().count() >= 2 {
                all_dirs.insert(p.display().to_string());
                p = p.parent().expect("deeper than the crate");
            }
        }
        for d in all_dirs {
            for comp in cycles(&folder_view(&g, &d)) {
                found.push(format!("in {d}/: {}", comp.join(" <-> ")));
            }
        }
    }
    found.dedup();
    assert!(found.is_empty(), "parts of a folder that import each other in a loop:\n{}", found.join("\n"));
}

#[test]
fn the_reader_finds_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod c;\nuse crate::b::{self, Thing};\n").unwrap();
    std::fs::write(src.join("a/c.rs"), "// crate::b is only a comment\nfn f() { let _ = \"crate::b\"; }\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct Thing;\nfn g() { super::a::h(); }\n").unwrap();
    let g = graph(dir.path());
    let named = |f: &str| g.keys().find(|k| k.ends_with(f)).unwrap_or_else(|| panic!("{f} in {g:?}")).clone();
    assert_eq!(
        cycles(&g),
        vec![{
            let mut v = vec![named("a/mod.rs"), named("b.rs")];
            v.sort();
            v
        }]
    );
    assert!(g[&named("a/c.rs")].is_empty(), "comments and strings are no imports: {g:?}");
}

/// The dependencies a crate's Cargo.toml names under `[dependencies]`.
fn dependencies(crate_name: &str) -> Vec<String> {
    let toml = std::fs::read_to_string(workspace().join(crate_name).join("Cargo.toml")).expect("Cargo.toml");
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn proto_and_admission_are_plain_data() {
    for c in ["proto", "admission"] {
        let deps = dependencies(c);
        assert!(!deps.is_empty() || c == "admission", "{c}: no [dependencies] read");
        for forbidden in ["tokio", "openraft", "sled", "reqwest", "hyper", "axum", "rustls", "tokio-rustls"] {
            assert!(!deps.iter().any(|d| d == forbidden), "{c} depends on {forbidden}: {deps:?}");
        }
    }
}

#[test]
fn the_state_machine_decides_without_io_or_clock() {
    let mut files = Vec::new();
    rust_files(&workspace().join("raft-store/src/state"), &mut files);
    assert!(files.len() > 3, "raft-store/src/state has its files: {files:?}");
    for f in files {
        let code = without_test_items(&code_only(&std::fs::read_to_string(&f).unwrap()));
        for forbidden in
            ["std::fs", "std::net", "tokio", "SystemTime::now", "Instant::now", "sled::", "std::env", "rand::"]
        {
            assert!(!code.contains(forbidden), "{} uses {forbidden}", f.display());
        }
    }
}
