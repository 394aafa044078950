//! The server's module layering (`server/src/lib.rs`, "Layout"): every `crate::…` path
//! in a module of the `stalecast` crate names a module of its own layer or of a layer
//! above it in that list, never one below. Read from the source, so a new upward import
//! fails `make test` with the file and line that made it.

use std::path::{Path, PathBuf};

/// The layers, top of the list first. A module may use its own layer and those listed
/// before it.
const LAYERS: &[&[&str]] = &[
    &["sim"],
    &["updates"],
    &["upstream"],
    &["cluster"],
    &["auth"],
    &["domain"],
    &["rpc", "health", "metrics", "web", "guard"],
    &["serve"],
    &["bindings", "openapi", "codegen"],
    &["app", "config"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("server/src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`updates/cursor.rs` → `updates`).
fn owner(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy().into_owned();
    Some(first.trim_end_matches(".rs").to_owned())
}

/// Every top-level module a line names through `crate::`, including those inside a
/// `use crate::{a, b::c}` group.
fn named_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            names.push(name);
        }
    }
    names
}

/// `(file:line, from, to)` for every import that runs up the list.
fn upward_imports(src: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let Some(from) = owner(src, &file) else { continue };
        // `lib.rs` declares the modules and `main.rs` runs them: both sit above the list.
        let Some(from_rank) = rank(&from) else { continue };
        let text = std::fs::read_to_string(&file).expect("source is UTF-8");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for to in named_modules(code) {
                let to_rank =
                    rank(&to).unwrap_or_else(|| panic!("{}:{}: unknown module {to}", file.display(), number + 1));
                if to_rank > from_rank {
                    let relative = file.strip_prefix(src).unwrap_or(&file);
                    found.push((format!("server/src/{}:{}", relative.display(), number + 1), from.clone(), to));
                }
            }
        }
    }
    found
}

#[test]
fn every_import_stays_within_or_above_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let upward = upward_imports(&src);
    let lines: Vec<String> = upward.iter().map(|(at, from, to)| format!("{at}: {from} imports {to}")).collect();
    assert!(upward.is_empty(), "imports that run up the layer list (server/src/lib.rs, Layout):\n{}", lines.join("\n"));
}

#[test]
fn the_check_reads_groups_and_paths() {
    assert_eq!(named_modules("use crate::updates::{Cursor, Pings};"), vec!["updates"]);
    assert_eq!(named_modules("use crate::{openapi, rpc::Api};"), vec!["openapi", "rpc"]);
    assert_eq!(named_modules("let x = crate::serve::bind(addr); crate::app::start()"), vec!["serve", "app"]);
    assert!(rank("updates") < rank("rpc") && rank("rpc") < rank("serve"));
    // Every module `lib.rs` declares has a layer.
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src/lib.rs")).expect("lib.rs");
    for module in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')) {
        assert!(rank(module).is_some(), "module {module} has no layer in LAYERS");
    }
}
