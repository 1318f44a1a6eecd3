//! Compiling a [`PluginConfig`]'s Rego once and evaluating it per request.
//!
//! The fast path is regorus's RVM: the modules are compiled for the entrypoint
//! (`Engine::compile_with_entrypoint`), lowered to an RVM program, and each evaluation
//! reuses a loaded VM (data set once; only the input changes). A policy that uses a
//! construct the RVM compiler does not support yet falls back to regorus's tree-walking
//! interpreter (`regorus::CompiledPolicy::eval_with_input`), which is slower but complete.
//! Builtin errors make an expression undefined, as in OPA (non-strict).
//!
//! This module does no I/O and knows nothing about requests; see `authorize`.

use std::sync::{Arc, Mutex};

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value};

use crate::config::{Mode, PluginConfig, PolicyModule};

/// Upper bound on RVM instructions per evaluation; a runaway policy fails closed.
const MAX_INSTRUCTIONS: usize = 5_000_000;

/// Errors compiling or evaluating a policy. Every one of them denies the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// No Rego module was configured.
    #[error("no policy modules configured")]
    NoModules,
    /// A module failed to parse (the message carries `file:line:col`).
    #[error("{message}")]
    Parse {
        /// The module's name.
        module: String,
        /// regorus's message, which starts with `name:line:col:`.
        message: String,
    },
    /// The data document was rejected.
    #[error("policy data rejected: {message}")]
    Data {
        /// regorus's message.
        message: String,
    },
    /// The modules did not compile for the entrypoint (unknown rule, type or scope errors).
    #[error("policy does not compile for {entrypoint}: {message}")]
    Compile {
        /// The decision rule.
        entrypoint: String,
        /// regorus's message.
        message: String,
    },
    /// Evaluation failed (conflicting values, instruction limit, ...).
    #[error("policy evaluation failed: {message}")]
    Eval {
        /// regorus's message.
        message: String,
    },
}

/// A policy error located in a module, for `file:line:col` diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Module name as configured (e.g. `policies/authz.rego`).
    pub module: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The message without the source excerpt.
    pub message: String,
}

impl PolicyError {
    /// Where the error is, when regorus said so (its messages carry `--> name:line:col`
    /// followed by a source excerpt and `error: message`).
    pub fn located(&self) -> Option<Located> {
        let text = match self {
            Self::Parse { message, .. } | Self::Compile { message, .. } => message,
            _ => return None,
        };
        let after = text.split("--> ").nth(1)?;
        let location = after.lines().next()?.trim();
        let mut parts = location.rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let module = parts.next()?.to_string();
        let message = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or("invalid Rego")
            .to_string();
        Some(Located {
            module,
            line,
            column,
            message,
        })
    }

    /// The message on one line (no source excerpt), for logs and NACK reasons.
    pub fn summary(&self) -> String {
        match self.located() {
            Some(l) => format!("{}:{}:{}: {}", l.module, l.line, l.column, l.message),
            None => self.to_string().replace('\n', " "),
        }
    }
}

/// Converts a regorus value to JSON: `None` for undefined; sets become arrays.
pub fn to_json(value: &Value) -> Option<serde_json::Value> {
    if *value == Value::Undefined {
        return None;
    }
    value
        .to_json_str()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// Parses modules (e.g. test modules) without compiling an entrypoint.
pub fn parse_modules(modules: &[PolicyModule]) -> Result<(), PolicyError> {
    engine_with(modules, &serde_json::Value::Object(serde_json::Map::new())).map(|_| ())
}

/// Which parts of the request the policy can look at, so the filter reads no more than
/// that from the host. Found by scanning the sources for the field names; any doubt
/// (a bare `input`, `input[...]`) means "read everything". Method and path are always read
/// (they go to the decision log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputNeeds {
    /// The policy may read request headers.
    pub headers: bool,
    /// The policy may read `host`.
    pub host: bool,
    /// The policy may read `scheme`.
    pub scheme: bool,
}

impl InputNeeds {
    /// Everything.
    pub const ALL: Self = Self {
        headers: true,
        host: true,
        scheme: true,
    };

    /// Scans Rego sources.
    pub fn scan<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needs = Self {
            headers: false,
            host: false,
            scheme: false,
        };
        for source in sources {
            if uses_input_dynamically(source) {
                return Self::ALL;
            }
            needs.headers |= source.contains("headers");
            needs.host |= source.contains("host");
            needs.scheme |= source.contains("scheme");
        }
        needs
    }
}

fn uses_input_dynamically(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut start = 0;
    while let Some(found) = source[start..].find("input") {
        let at = start + found;
        let end = at + "input".len();
        let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after = bytes.get(end).copied();
        if before_ok && !after.is_some_and(is_ident_byte) && after != Some(b'.') {
            return true;
        }
        start = end;
    }
    false
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// How a compiled policy evaluates.
#[derive(Debug)]
enum Evaluator {
    /// RVM program; a spare VM (program and data loaded) is kept for reuse.
    Rvm {
        program: Arc<Program>,
        compiled: regorus::CompiledPolicy,
        data: Value,
        spare: Mutex<Option<RegoVM>>,
    },
    /// Tree-walking interpreter (for constructs the RVM compiler lacks).
    Interpreter(regorus::CompiledPolicy),
}

/// Which engine a policy runs on (shown by `warden policy eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// regorus RVM (fast path).
    Rvm,
    /// regorus interpreter (fallback).
    Interpreter,
}

/// A policy compiled once per configuration; evaluate it per request.
#[derive(Debug)]
pub struct CompiledPolicy {
    config: PluginConfig,
    evaluator: Evaluator,
    needs: InputNeeds,
}

/// Builds a regorus engine with the modules and data of a configuration.
pub(crate) fn engine_with(
    modules: &[PolicyModule],
    data: &serde_json::Value,
) -> Result<Engine, PolicyError> {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(false);
    for module in modules {
        engine
            .add_policy(module.name.clone(), module.source.clone())
            .map_err(|e| PolicyError::Parse {
                module: module.name.clone(),
                message: format!("{e:#}"),
            })?;
    }
    engine
        .add_data(Value::from(data.clone()))
        .map_err(|e| PolicyError::Data {
            message: format!("{e:#}"),
        })?;
    Ok(engine)
}

impl CompiledPolicy {
    /// Parses and compiles the modules for the entrypoint. Fails when a module does not
    /// parse, the entrypoint rule does not exist, or the policy does not compile.
    pub fn compile(config: &PluginConfig) -> Result<Self, PolicyError> {
        if config.modules.is_empty() {
            return Err(PolicyError::NoModules);
        }
        let mut engine = engine_with(&config.modules, &config.data)?;
        let entrypoint = config.entrypoint.as_str();
        let compiled = engine
            .compile_with_entrypoint(&entrypoint.into())
            .map_err(|e| {
                let message = format!("{e:#}");
                let message = if message.contains("not a valid rule path") {
                    format!("rule {entrypoint} is not defined by any module")
                } else {
                    message
                };
                PolicyError::Compile {
                    entrypoint: entrypoint.to_string(),
                    message,
                }
            })?;
        let evaluator = match Compiler::compile_from_policy(&compiled, &[entrypoint]) {
            Ok(program) => {
                let data = Value::from(config.data.clone());
                let vm = new_vm(&program, &compiled, &data)?;
                Evaluator::Rvm {
                    program,
                    compiled,
                    data,
                    spare: Mutex::new(Some(vm)),
                }
            }
            Err(_) => Evaluator::Interpreter(compiled),
        };
        let needs = InputNeeds::scan(config.modules.iter().map(|m| m.source.as_str()));
        Ok(Self {
            config: config.clone(),
            evaluator,
            needs,
        })
    }

    /// The configuration this policy was compiled from.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// Enforce or dry-run.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// What the filter must read from the request.
    pub fn needs(&self) -> InputNeeds {
        self.needs
    }

    /// Which engine evaluates this policy.
    pub fn engine_kind(&self) -> EngineKind {
        match self.evaluator {
            Evaluator::Rvm { .. } => EngineKind::Rvm,
            Evaluator::Interpreter(_) => EngineKind::Interpreter,
        }
    }

    /// Evaluates the entrypoint for one input. `Value::Undefined` means the rule is undefined.
    pub fn evaluate(&self, input: Value) -> Result<Value, PolicyError> {
        let eval_error = |e: &dyn std::fmt::Display| PolicyError::Eval {
            message: e.to_string(),
        };
        match &self.evaluator {
            Evaluator::Interpreter(compiled) => {
                compiled.eval_with_input(input).map_err(|e| eval_error(&e))
            }
            Evaluator::Rvm {
                program,
                compiled,
                data,
                spare,
            } => {
                // Take the spare VM (or build one when another evaluation holds it).
                let taken = spare.lock().ok().and_then(|mut slot| slot.take());
                let mut vm = match taken {
                    Some(vm) => vm,
                    None => new_vm(program, compiled, data)?,
                };
                vm.set_input(input);
                let result = vm.execute().map_err(|e| eval_error(&e));
                // Drop the input now rather than keeping the request alive in the spare.
                vm.set_input(Value::Null);
                if let Ok(mut slot) = spare.lock() {
                    *slot = Some(vm);
                }
                result
            }
        }
    }
}

fn new_vm(
    program: &Arc<Program>,
    compiled: &regorus::CompiledPolicy,
    data: &Value,
) -> Result<RegoVM, PolicyError> {
    let mut vm = RegoVM::new_with_policy(compiled.clone());
    vm.load_program(program.clone());
    vm.set_max_instructions(MAX_INSTRUCTIONS);
    vm.set_strict_builtin_errors(false);
    vm.set_data(data.clone()).map_err(|e| PolicyError::Data {
        message: format!("{e:#}"),
    })?;
    Ok(vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str) -> PluginConfig {
        PluginConfig::new(vec![PolicyModule {
            name: "authz.rego".into(),
            source: source.into(),
        }])
    }

    #[test]
    fn simple_policy_compiles_to_the_rvm_and_evaluates() {
        let policy = CompiledPolicy::compile(&config(
            "package envoy.authz\ndefault allow := false\nallow if input.source_principal == \"a\"\n",
        ));
        let policy = policy.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(policy.engine_kind(), EngineKind::Rvm);
        let yes = Value::from_json_str(r#"{"source_principal": "a"}"#).unwrap();
        let no = Value::from_json_str(r#"{"source_principal": "b"}"#).unwrap();
        for _ in 0..3 {
            assert_eq!(policy.evaluate(yes.clone()).ok(), Some(Value::Bool(true)));
            assert_eq!(policy.evaluate(no.clone()).ok(), Some(Value::Bool(false)));
        }
    }

    #[test]
    fn syntax_error_names_the_module_line_and_column() {
        let err = CompiledPolicy::compile(&config("package envoy.authz\nallow if {\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("authz.rego:"), "{err}");
        let unsafe_var = "package envoy.authz\n\nallow if {\n  y == 2\n}\n";
        let located = CompiledPolicy::compile(&config(unsafe_var))
            .err()
            .and_then(|e| e.located());
        assert_eq!(
            located,
            Some(Located {
                module: "authz.rego".into(),
                line: 4,
                column: 3,
                message: "use of undefined variable `y` is unsafe".into()
            })
        );
    }

    #[test]
    fn missing_entrypoint_rule_does_not_compile() {
        let result = CompiledPolicy::compile(&config("package envoy.authz\ndeny if true\n"));
        let message = result.err().map(|e| e.summary()).unwrap_or_default();
        assert!(
            message.contains("data.envoy.authz.allow is not defined"),
            "{message}"
        );
    }

    #[test]
    fn no_modules_is_an_error() {
        assert!(matches!(
            CompiledPolicy::compile(&PluginConfig::new(vec![])),
            Err(PolicyError::NoModules)
        ));
    }

    #[test]
    fn needs_scan_reads_headers_only_when_mentioned() {
        let plain = InputNeeds::scan(["allow if input.source_principal == \"a\""]);
        assert!(!plain.headers && !plain.host && !plain.scheme);
        let with_headers =
            InputNeeds::scan(["allow if input.attributes.request.http.headers[\"x\"] == \"1\""]);
        assert!(with_headers.headers);
        assert_eq!(InputNeeds::scan(["x := input"]), InputNeeds::ALL);
        assert_eq!(InputNeeds::scan(["x := input[k]"]), InputNeeds::ALL);
        assert!(!InputNeeds::scan(["my_input := 1"]).headers);
    }
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    #[test]
    fn a_reused_vm_gives_the_same_answer_every_time() {
        let source = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/mesh/policies/authz.rego"
        ))
        .unwrap();
        let policy = CompiledPolicy::compile(&PluginConfig::new(vec![PolicyModule {
            name: "authz.rego".into(),
            source,
        }]))
        .unwrap();
        let deny = Value::from_json_str(
            r#"{"attributes": {"source": {"principal": "spiffe://example.org/ns/demo/sa/frontend"},
                "destination": {"principal": "spiffe://example.org/ns/demo/sa/database"},
                "request": {"http": {"method": "GET", "path": "/api/items", "headers": {}}}}}"#,
        )
        .unwrap();
        for i in 0..2000 {
            let varied = Value::from_json_str(&format!(
                r#"{{"attributes": {{"source": {{"principal": "spiffe://example.org/ns/demo/sa/frontend"}},
                    "destination": {{"principal": "spiffe://example.org/ns/demo/sa/backend"}},
                    "request": {{"http": {{"method": "GET", "path": "/api/items", "headers": {{"x-request-id": "{i}"}}}}}}}}}}"#
            ))
            .unwrap();
            let got = policy.evaluate(varied).unwrap();
            assert_eq!(got, Value::Bool(true), "evaluation {i}");
            assert_eq!(
                policy.evaluate(deny.clone()).unwrap(),
                Value::Bool(false),
                "evaluation {i}"
            );
        }
    }
}
