//! The crate's shape, checked: data flows one way (faults -> the suite, plans and soak ->
//! reports), so no two files import each other, directly or round a circle, and no two
//! top-level modules do; and no source file grows past what one person reads in a sitting.
//! It reads the sources as text; nothing runs.
//!
//! An import is a path that starts at `crate::`, `super::` or `self::`, or at a child module
//! of the file (`matrix::apply` in `scenario/mod.rs` when `scenario/matrix.rs` exists; read
//! from the directory, so modules a macro declares count too). A parent that names a child as
//! a bare word (`families! { Fault => matrix }`) depends on it too. It resolves to the deepest file
//! the path names, so a child that reaches a sibling through its parent's re-export
//! (`super::Thing`) depends on the parent: import from the sibling itself
//! (`super::sibling::Thing`). `lib.rs` only declares and re-exports, and a `tests.rs` or a
//! trailing `#[cfg(test)] mod tests` is test code; neither takes part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/scenario/mod.rs` is `scenario`, `src/fault/kind.rs` is
/// `fault::kind`, `src/lib.rs` is the root (empty).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code outside test modules and comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Child modules of a file: the files and directories in its module's directory
/// (`src/scenario/` for `src/scenario/mod.rs`, `src/postgres/` for `src/postgres.rs`).
fn children_of(file: &Path) -> BTreeSet<String> {
    let dir = if file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
    {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() || (path.extension().is_some_and(|e| e == "rs") && name != "mod") {
                out.insert(name);
            }
        }
    }
    out
}

fn ident_at(s: &[u8], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
        j += 1;
    }
    (j > i).then(|| (String::from_utf8_lossy(&s[i..j]).to_string(), j))
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Reads a path from `i` (its first segment already read as `prefix`), expanding `{...}`
/// groups, and pushes every full path found.
fn read_path(s: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        let j = skip_ws(s, i);
        if s.get(j) == Some(&b':') && s.get(j + 1) == Some(&b':') {
            let k = skip_ws(s, j + 2);
            if s.get(k) == Some(&b'{') {
                let mut k = k + 1;
                loop {
                    k = skip_ws(s, k);
                    match s.get(k) {
                        Some(b'}') | None => return k + 1,
                        Some(b',') => k += 1,
                        _ => match ident_at(s, k) {
                            Some((name, end)) => {
                                let mut p = path.clone();
                                p.push(name);
                                k = read_path(s, end, p, out);
                                // `as alias` and anything else up to the next item.
                                while k < s.len() && !matches!(s[k], b',' | b'}') {
                                    k += 1;
                                }
                            }
                            None => k += 1,
                        },
                    }
                }
            }
            match ident_at(s, k) {
                Some((name, end)) => {
                    path.push(name);
                    i = end;
                }
                None => break,
            }
        } else {
            break;
        }
    }
    out.push(path);
    i
}

/// Every path a file's code names, made absolute.
fn imports(code: &str, me: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let s = code.as_bytes();
    let mut raw = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary =
            i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        if boundary && let Some((word, end)) = ident_at(s, i) {
            let starts =
                word == "crate" || word == "super" || word == "self" || children.contains(&word);
            let next = skip_ws(s, end);
            if starts && s.get(next) == Some(&b':') && s.get(next + 1) == Some(&b':') {
                i = read_path(s, end, vec![word], &mut raw);
                continue;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    // A child named as a bare word (a macro's argument) is used by its parent.
    for child in children {
        let named = code.match_indices(child.as_str()).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + child.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !word(before) && !word(after)
        });
        if named {
            raw.push(vec!["self".to_string(), child.clone()]);
        }
    }
    // The module a `self::` or child path starts from: a `mod.rs` is its directory's module;
    // `a/b.rs` is `a::b`, and `super::` from it is `a`.
    let mut out = Vec::new();
    for path in raw {
        let mut base: Vec<String> = me.to_vec();
        let mut rest = &path[..];
        match rest[0].as_str() {
            "crate" => {
                base.clear();
                rest = &rest[1..];
            }
            "self" => rest = &rest[1..],
            "super" => {
                while rest.first().is_some_and(|p| p == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            _ => {}
        }
        base.extend(rest.iter().cloned());
        out.push(base);
    }
    out
}

struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    too_long: Vec<String>,
    /// file module -> file modules it imports.
    graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_crate(dir: &str, max_lines: usize) -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let mut files = BTreeMap::new();
    let mut too_long = Vec::new();
    let mut texts = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        if lines > max_lines {
            too_long.push(format!("{} ({lines} lines)", path.display()));
        }
        let rel = path.strip_prefix(&src).unwrap();
        if rel.starts_with("bin") || path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let me = module_path(&src, &path);
        if me.is_empty() {
            continue;
        }
        let children = children_of(&path);
        texts.push((me.clone(), children, text));
        files.insert(me, path);
    }
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (me, children, text) in &texts {
        let code = code_of(text);
        let deps = graph.entry(me.clone()).or_default();
        for path in imports(&code, me, children) {
            // The deepest file the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| files.contains_key(p));
            if let Some(t) = target
                && &t != me
            {
                deps.insert(t);
            }
        }
    }
    Crate {
        files,
        too_long,
        graph,
    }
}

/// Strongly connected components of more than one node (Tarjan), each sorted.
fn circles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct St<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        on: BTreeSet<N>,
        stack: Vec<N>,
        next: usize,
        out: Vec<Vec<N>>,
    }
    fn connect<N: Ord + Clone>(v: &N, g: &BTreeMap<N, BTreeSet<N>>, st: &mut St<N>) {
        st.index.insert(v.clone(), st.next);
        st.low.insert(v.clone(), st.next);
        st.next += 1;
        st.stack.push(v.clone());
        st.on.insert(v.clone());
        for w in g.get(v).into_iter().flatten() {
            if !g.contains_key(w) {
                continue;
            }
            if !st.index.contains_key(w) {
                connect(w, g, st);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if st.on.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = st.stack.pop().unwrap();
                st.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                st.out.push(comp);
            }
        }
    }
    let mut st = St {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !st.index.contains_key(v) {
            connect(v, graph, &mut st);
        }
    }
    st.out
}

fn show(circle: &[Vec<String>]) -> String {
    circle
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn files_import_each_other_in_no_circle() {
    let krate = read_crate("src", MAX_LINES);
    assert!(krate.files.len() >= 50, "the sources were found");
    let all = circles(&krate.graph);
    if std::env::var_os("LAYOUT_EDGES").is_some() {
        for c in &all {
            for from in c {
                for to in &krate.graph[from] {
                    if c.contains(to) {
                        eprintln!("{} -> {}", from.join("::"), to.join("::"));
                    }
                }
            }
            eprintln!();
        }
    }
    let found: Vec<String> = all.iter().map(|c| show(c)).collect();
    assert!(
        found.is_empty(),
        "files that import each other, round a circle (break it by moving what both need \
         into a layer below them):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn top_level_modules_import_each_other_in_no_circle() {
    let krate = read_crate("src", MAX_LINES);
    let mut top: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, deps) in &krate.graph {
        let f = vec![from[0].clone()];
        let entry = top.entry(f.clone()).or_default();
        for d in deps {
            if d[0] != f[0] {
                entry.insert(vec![d[0].clone()]);
            }
        }
    }
    let found: Vec<String> = circles(&top).iter().map(|c| show(c)).collect();
    assert!(
        found.is_empty(),
        "top-level modules that import each other, round a circle:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn no_source_file_is_over_600_lines_in_either_crate() {
    let mut too_long = read_crate("src", MAX_LINES).too_long;
    too_long.extend(read_crate("../pool/src", MAX_LINES).too_long);
    assert!(
        too_long.is_empty(),
        "files over {MAX_LINES} lines (split by concept):\n  {}",
        too_long.join("\n  ")
    );
}

/// The checker itself: a planted circle and a planted child-to-parent import are found.
#[test]
fn the_checker_finds_a_circle() {
    let a = imports(
        "use crate::b::{Thing, c::Other};\nfn f() { matrix::apply(); }",
        &["a".to_string()],
        &BTreeSet::from(["matrix".to_string()]),
    );
    let names: Vec<String> = a.iter().map(|p| p.join("::")).collect();
    assert!(names.contains(&"b::Thing".to_string()), "{names:?}");
    assert!(names.contains(&"b::c::Other".to_string()), "{names:?}");
    assert!(names.contains(&"a::matrix::apply".to_string()), "{names:?}");
    let child = imports(
        "use super::{Env, crit};",
        &["a".into(), "x".into()],
        &BTreeSet::new(),
    );
    let names: Vec<String> = child.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, vec!["a::Env", "a::crit"]);
    let mut g = BTreeMap::new();
    g.insert(1, BTreeSet::from([2]));
    g.insert(2, BTreeSet::from([3]));
    g.insert(3, BTreeSet::from([1]));
    g.insert(4, BTreeSet::from([1]));
    assert_eq!(circles(&g), vec![vec![1, 2, 3]]);
}
