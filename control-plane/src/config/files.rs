//! Reading the config directory from disk: `warden.yaml`, `workloads/*.yaml` and
//! `policies/` (Rego modules, tests, data). YAML is deserialized into the raw types;
//! syntax errors, type errors and unknown keys become located diagnostics here, unknown
//! keys with a "did you mean".

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::data_value::Data;
use super::diag::{did_you_mean, Diagnostic, Diagnostics, Pos};
use super::raw::{RawTokens, RawWarden, RawWorkload};
use super::spans::Spans;
use super::{RegoFile, MAIN_FILE, POLICIES_DIR, TOKENS_FILE, WORKLOADS_DIR};

/// A parsed YAML file with the positions of its values.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    pub(crate) path: PathBuf,
    pub(crate) value: T,
    /// The file's text, indexed for positions only when a diagnostic needs one (with
    /// thousands of workload files most configs never do).
    text: String,
    spans: std::sync::OnceLock<Spans>,
}

impl<T> Parsed<T> {
    /// Where each YAML path of this file is.
    pub(crate) fn spans(&self) -> &Spans {
        self.spans.get_or_init(|| Spans::index(&self.text))
    }
}

/// Everything read from the directory, before semantic checks.
#[derive(Debug)]
pub(crate) struct Files {
    pub(crate) main: Parsed<RawWarden>,
    pub(crate) workloads: Vec<Parsed<RawWorkload>>,
    pub(crate) modules: Vec<RegoFile>,
    pub(crate) tests: Vec<RegoFile>,
    pub(crate) data: serde_json::Value,
    /// `tokens.yaml`, when present.
    pub(crate) tokens: Option<Parsed<RawTokens>>,
    /// Problems found while reading (bad YAML in one workload does not stop the others).
    pub(crate) diagnostics: Vec<Diagnostic>,
}

pub(crate) fn read_dir(dir: &Path) -> Result<Files, Diagnostics> {
    if !dir.is_dir() {
        return Err(Diagnostics(vec![Diagnostic::file(dir, "not a directory")
            .hint(
                "pass the config directory, the one that holds warden.yaml",
            )]));
    }
    let mut diags = Vec::new();
    let main_path = dir.join(MAIN_FILE);
    let main = parse_file::<RawWarden>(&main_path, &mut diags);
    let mut workloads = Vec::new();
    for path in list(dir, &dir.join(WORKLOADS_DIR), &["yaml", "yml"], &mut diags) {
        if let Some(w) = parse_file::<RawWorkload>(&path, &mut diags) {
            workloads.push(w);
        }
    }
    let (modules, tests, data) = read_policies(dir, &mut diags);
    let tokens_path = dir.join(TOKENS_FILE);
    let tokens = if tokens_path.exists() {
        parse_file::<RawTokens>(&tokens_path, &mut diags)
    } else {
        None
    };
    match main {
        Some(main) => Ok(Files {
            main,
            workloads,
            modules,
            tests,
            data,
            tokens,
            diagnostics: diags,
        }),
        None => Err(Diagnostics(diags)),
    }
}

/// Files in `dir` (recursively) with one of `exts`, sorted; a missing dir is empty.
/// Symlinked folders are followed once: a folder reached again (a link to `.` or to a
/// parent) is skipped, so link loops neither repeat files nor walk forever. A symlink
/// that leads out of the config directory `root` is reported and not followed: the
/// directory (a git repo) is the whole description of the mesh.
fn list(root: &Path, dir: &Path, exts: &[&str], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    let linked = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
    if linked && !leads_inside(dir, &root, diags) {
        return out;
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if fs::canonicalize(&d).is_ok_and(|real| !seen.insert(real)) {
            continue;
        }
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                diags.push(Diagnostic::file(&d, format!("cannot read directory: {e}")));
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let wanted = || {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            };
            if !p.is_dir() && !wanted() {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_symlink()) && !leads_inside(&p, &root, diags) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Whether the symlink `link` resolves inside `root`; reported when it does not (a
/// dangling link is left for the read to report).
fn leads_inside(link: &Path, root: &Path, diags: &mut Vec<Diagnostic>) -> bool {
    match fs::canonicalize(link) {
        Ok(target) if !target.starts_with(root) => {
            diags.push(
                Diagnostic::file(link, format!("links outside the config directory, to {}", target.display()))
                    .hint("keep workloads and policies inside the config directory (the repo is the whole description of the mesh); copy the file in instead"),
            );
            false
        }
        _ => true,
    }
}

fn read(path: &Path, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match crate::fsutil::read_text(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = if path.ends_with(MAIN_FILE) {
                "a config directory needs warden.yaml; see examples/mesh/"
            } else {
                "a symlink whose target is missing? remove it or fix its target"
            };
            diags.push(Diagnostic::file(path, "file not found").hint(hint));
            None
        }
        Err(e) => {
            diags.push(Diagnostic::file(path, format!("cannot read: {e}")).hint(
                "config files are UTF-8 text files of at most 16 MiB; remove or rename this one",
            ));
            None
        }
    }
}

fn parse_file<T: DeserializeOwned>(path: &Path, diags: &mut Vec<Diagnostic>) -> Option<Parsed<T>> {
    let text = read(path, diags)?;
    match parse_yaml(path, &text) {
        Ok(p) => Some(p),
        Err(d) => {
            diags.push(d);
            None
        }
    }
}

/// Deserialize one YAML text, turning serde errors into located diagnostics.
pub(crate) fn parse_yaml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<Parsed<T>, Diagnostic> {
    if let Some(pos) = too_deep(text) {
        return Err(Diagnostic::at(
            path,
            pos,
            format!("`[` / `{{` nested more than {MAX_FLOW_DEPTH} levels deep"),
        )
        .hint(
            "config values nest a few levels at most; this looks like a generated or damaged file",
        ));
    }
    match serde_yaml::from_str::<T>(text) {
        Ok(value) => Ok(Parsed {
            path: path.to_path_buf(),
            value,
            text: text.to_owned(),
            spans: std::sync::OnceLock::new(),
        }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            let message = e.to_string();
            // serde_yaml appends " at line N column M"; the position is printed up front.
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            let mut d = Diagnostic::at(path, pos, message.clone());
            if let Some(hint) = unknown_field_hint(&message) {
                d = d.hint(hint);
            } else if text
                .lines()
                .nth(pos.line.saturating_sub(1))
                .is_some_and(|l| l.contains('\t'))
            {
                d = d.hint("this line has a tab; YAML indents with spaces only");
            }
            Err(d)
        }
    }
}

/// Deepest `[`/`{` nesting read. The YAML scanner's work grows with the square of the
/// nesting depth (100,000 levels took minutes), and serde stops at 128 levels anyway.
const MAX_FLOW_DEPTH: usize = 1000;

/// Where flow collections first nest deeper than [`MAX_FLOW_DEPTH`]. An opening bracket
/// counts where a flow collection can start (after `:`, `-`, `,`, `[`, `{` or at a line's
/// start, spaces aside), so brackets inside plain text rarely count; closing ones always do.
fn too_deep(text: &str) -> Option<Pos> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut prev = b'\n';
    for b in text.bytes() {
        col += 1;
        match b {
            b'[' | b'{' if matches!(prev, b'\n' | b':' | b'-' | b',' | b'[' | b'{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(Pos { line, column: col });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => {
                line += 1;
                col = 0;
            }
            _ => {}
        }
        if !matches!(b, b' ' | b'\t' | b'\r') {
            prev = b;
        }
    }
    None
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", suggest the closest key.
fn unknown_field_hint(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match did_you_mean(field, expected.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None => Some(format!("allowed keys here: {}", expected.join(", "))),
    }
}

type PolicyFiles = (Vec<RegoFile>, Vec<RegoFile>, serde_json::Value);

fn read_policies(dir: &Path, diags: &mut Vec<Diagnostic>) -> PolicyFiles {
    let pdir = dir.join(POLICIES_DIR);
    read_policy_files(dir, &pdir, &pdir, diags)
}

/// The one reader of a policy directory: `*.rego` under `rego_dir` (recursively; tests
/// are `*_test.rego`; links leading out of `root` are not followed), each named by its
/// path relative to `root` with `/` separators, and the data document
/// `data_dir/data.json` or `data_dir/data.yaml` (`{}` if neither). `config::load` reads
/// `<config>/policies` with it and `warden policy test` a bare policy directory, so both
/// see the same files the same way. Problems are diagnostics, as for `load`.
pub fn read_policy_dir(root: &Path, rego_dir: &Path, data_dir: &Path) -> PolicyDir {
    let mut diagnostics = Vec::new();
    let (modules, tests, data) = read_policy_files(root, rego_dir, data_dir, &mut diagnostics);
    PolicyDir {
        modules,
        tests,
        data,
        diagnostics: Diagnostics(diagnostics),
    }
}

/// What [`read_policy_dir`] found.
#[derive(Debug)]
pub struct PolicyDir {
    /// Policy modules, sorted by name.
    pub modules: Vec<RegoFile>,
    /// Test modules (`*_test.rego`), sorted by name.
    pub tests: Vec<RegoFile>,
    /// The data document, `{}` if absent (or unreadable: see `diagnostics`).
    pub data: serde_json::Value,
    /// Unreadable files and directories, invalid data documents, links leading out.
    pub diagnostics: Diagnostics,
}

fn read_policy_files(
    root: &Path,
    rego_dir: &Path,
    data_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> PolicyFiles {
    let mut modules = Vec::new();
    let mut tests = Vec::new();
    for path in list(root, rego_dir, &["rego"], diags) {
        let Some(source) = read(&path, diags) else {
            continue;
        };
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let file = RegoFile {
            path: path.clone(),
            name,
            source,
        };
        if path.to_string_lossy().ends_with("_test.rego") {
            tests.push(file);
        } else {
            modules.push(file);
        }
    }
    let data = read_data(data_dir, diags);
    (modules, tests, data)
}

fn read_data(pdir: &Path, diags: &mut Vec<Diagnostic>) -> serde_json::Value {
    let empty = serde_json::Value::Object(Default::default());
    let json = pdir.join("data.json");
    if json.exists() {
        let Some(text) = read(&json, diags) else {
            return empty;
        };
        return match serde_json::from_str::<Data>(&text) {
            Ok(v) => v.0,
            Err(e) => {
                let pos = Pos {
                    line: e.line(),
                    column: e.column(),
                };
                diags.push(Diagnostic::at(&json, pos, format!("invalid JSON: {e}")));
                empty
            }
        };
    }
    let yaml = pdir.join("data.yaml");
    if yaml.exists() {
        let Some(text) = read(&yaml, diags) else {
            return empty;
        };
        return match parse_yaml::<Data>(&yaml, &text) {
            Ok(p) => p.value.0,
            Err(d) => {
                diags.push(d);
                empty
            }
        };
    }
    empty
}
