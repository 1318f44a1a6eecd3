//! Reading the config directory from disk: `warden.yaml`, `workloads/*.yaml` and
//! `policies/` (Rego modules, tests, data). YAML is deserialized into the raw types;
//! syntax errors, type errors and unknown keys become located diagnostics here, unknown
//! keys with a "did you mean".

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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
    for path in list(&dir.join(WORKLOADS_DIR), &["yaml", "yml"], &mut diags) {
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
fn list(dir: &Path, exts: &[&str], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
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
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(
                Diagnostic::file(path, "file not found")
                    .hint("a config directory needs warden.yaml; see examples/mesh/"),
            );
            None
        }
        Err(e) => {
            diags.push(Diagnostic::file(path, format!("cannot read: {e}")));
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
            }
            Err(d)
        }
    }
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
    let mut modules = Vec::new();
    let mut tests = Vec::new();
    for path in list(&pdir, &["rego"], diags) {
        let Some(source) = read(&path, diags) else {
            continue;
        };
        let rel = path.strip_prefix(dir).unwrap_or(&path);
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
    let data = read_data(&pdir, diags);
    (modules, tests, data)
}

fn read_data(pdir: &Path, diags: &mut Vec<Diagnostic>) -> serde_json::Value {
    let empty = serde_json::Value::Object(Default::default());
    let json = pdir.join("data.json");
    if json.exists() {
        let Some(text) = read(&json, diags) else {
            return empty;
        };
        return match serde_json::from_str(&text) {
            Ok(v) => v,
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
        return match parse_yaml::<serde_json::Value>(&yaml, &text) {
            Ok(p) => p.value,
            Err(d) => {
                diags.push(d);
                empty
            }
        };
    }
    empty
}
