//! The house rules of `src/`, checked on every `make test` so they stay true as the code grows:
//! no file over 800 lines, no function over 80 lines outside tests, and no import cycle between
//! modules (a module may use its ancestors' items; siblings and cousins must not depend on each
//! other in a circle). Test code (`tests.rs` files, `tests/` folders, inline `mod tests {}`) is
//! not counted. The README's "Layout" section describes the folders.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` that is not test code, with its module path (`controller::act`).
fn source_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tests") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src").with_extension("");
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
            (parts.join("::"), p)
        })
        .collect()
}

/// The lines of a file before its inline test module.
fn code_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| {
            w[0].trim() == "#[cfg(test)]"
                && w[1].trim_start().starts_with("mod ")
                && w[1].trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

/// (name, first line, length) of every function body in rustfmt-formatted code: from the `fn`
/// line to the first later line that closes at the same indentation.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(pos) = trimmed.find("fn ") else {
            continue;
        };
        let head = &trimmed[..pos];
        let is_fn = head.split_whitespace().all(|w| {
            matches!(w, "pub" | "async" | "const" | "unsafe" | "extern" | "\"C\"")
                || w.starts_with("pub(")
        });
        if !is_fn || trimmed.starts_with("//") {
            continue;
        }
        let name: String = trimmed[pos + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature ends at the line that opens the body (or ends a declaration).
        let Some(open) = lines[i..].iter().position(|l| {
            let t = l.split("//").next().unwrap_or("").trim_end();
            t.ends_with('{') || t.ends_with(';') || t.ends_with('}')
        }) else {
            continue;
        };
        let open = i + open;
        let opener = lines[open].split("//").next().unwrap_or("").trim_end();
        if opener.ends_with(';') {
            continue; // a declaration without a body (trait item)
        }
        if opener.ends_with('}') {
            out.push((name, i + 1, open - i + 1)); // `fn a() {}` on one line
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(len) = lines[open..].iter().position(|l| l.trim_end() == close) {
            out.push((name, i + 1, open + len - i + 1));
        }
    }
    out
}

#[test]
fn no_source_file_is_over_800_lines() {
    let too_long: Vec<String> = source_files()
        .iter()
        .filter_map(|(_, p)| {
            let n = fs::read_to_string(p)
                .expect("a readable file")
                .lines()
                .count();
            (n > MAX_FILE_LINES).then(|| format!("{} has {n} lines", p.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "files over {MAX_FILE_LINES} lines (move tests to a sibling tests.rs, split along the \
         file's seams):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn no_function_outside_tests_is_over_80_lines() {
    let mut too_long = Vec::new();
    let mut seen = 0;
    for (_, p) in source_files() {
        let text = fs::read_to_string(&p).expect("a readable file");
        for (name, line, len) in functions(&code_lines(&text)) {
            seen += 1;
            if len > MAX_FN_LINES {
                too_long.push(format!("{}:{line} fn {name}: {len} lines", p.display()));
            }
        }
    }
    assert!(seen > 500, "the function scan found only {seen} functions");
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn the_function_scan_measures_what_it_should() {
    let code = "fn a() {\n    x;\n}\n\nimpl T {\n    pub async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\n    fn c();\n}\n";
    let lines: Vec<&str> = code.lines().collect();
    assert_eq!(
        functions(&lines),
        [("a".to_string(), 1, 3), ("b".to_string(), 6, 5)]
    );
    let with_tests = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn long() {\n    }\n}\n";
    assert_eq!(code_lines(with_tests).len(), 1);
}

/// The modules a file refers to through `crate::…` and `super::…` paths, resolved to the
/// longest known module prefix.
fn references(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let own: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    // `super` of a `mod.rs` (or `foo.rs`) is the parent of the module it defines.
    let parent: Vec<&str> = own[..own.len().saturating_sub(1)].to_vec();
    for line in code_lines(text) {
        let line = line.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let tail = &rest[at + prefix.len()..];
                let path: Vec<&str> = tail
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut full: Vec<&str> = base.clone();
                full.extend(path);
                while !full.is_empty() {
                    let candidate = full.join("::");
                    if known.contains(&candidate) {
                        out.insert(candidate);
                        break;
                    }
                    full.pop();
                }
                // A `use crate::x::{a, b}` group names modules inside the braces.
                if let Some(open) = tail.find("::{") {
                    let base_path = &tail[..open];
                    if let Some(close) = tail[open..].find('}') {
                        for item in tail[open + 3..open + close].split(',') {
                            let item = item.trim().split("::").next().unwrap_or("");
                            let mut full: Vec<&str> = if prefix == "crate::" {
                                vec![]
                            } else {
                                parent.clone()
                            };
                            full.extend(base_path.split("::").filter(|s| !s.is_empty()));
                            full.push(item);
                            let candidate = full.join("::");
                            if known.contains(&candidate) {
                                out.insert(candidate);
                            }
                        }
                    }
                }
                rest = &rest[at + prefix.len()..];
            }
        }
    }
    out.remove(module);
    out
}

#[test]
fn modules_do_not_import_each_other_in_a_circle() {
    let files = source_files();
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("a readable file");
        let targets = references(module, &text, &known)
            .into_iter()
            // Using an ancestor's items (its facade) is how Rust modules are built.
            .filter(|t| !(t.is_empty() || module.starts_with(&format!("{t}::"))))
            // A facade re-exporting its children is not a dependency of the children on it.
            .filter(|t| !t.starts_with(&format!("{module}::")) || module.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    // Cycles: strongly connected components with more than one module (Tarjan).
    let cycles = strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.join(" -> "))
        .collect::<Vec<_>>();
    assert!(
        cycles.is_empty(),
        "modules that import each other in a circle:\n{}",
        cycles.join("\n")
    );
}

fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(targets) = s.edges.get(v) {
            for w in targets {
                let w = w.as_str();
                if !s.edges.contains_key(w) {
                    continue;
                }
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_cycle_check_sees_imports_and_circles() {
    let known: BTreeSet<String> = [
        "controller",
        "controller::act",
        "controller::reconcile",
        "crd",
    ]
    .map(String::from)
    .into();
    let refs = references(
        "controller::act",
        "use super::reconcile::{Error, JobRef};\nuse crate::crd::Phase;\n",
        &known,
    );
    assert_eq!(
        refs,
        ["controller::reconcile", "crd"].map(String::from).into()
    );
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["a", "c"]), ("c", vec![])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    let mut components = strongly_connected(&edges);
    components.sort();
    assert_eq!(
        components,
        [
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string()]
        ]
    );
}
