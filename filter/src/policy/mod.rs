//! A policy compiled once per configuration and evaluated per request.
//!
//! The filter runs regorus's RVM only. The control plane (and `warden validate`,
//! `warden policy eval`) compiles the Rego modules for the entrypoint and lowers them to an
//! RVM program with this crate's `compile` module, then ships the program's binary form
//! (base64, [`PluginConfig::program`]) next to the sources. The filter only loads that
//! program ([`CompiledPolicy::load`]), so neither the Rego parser nor the compiler is in
//! the Wasm module (a smaller module compiles faster in V8, which is sidecar readiness).
//! [`CompiledPolicy::compile`] goes through the same binary form, so the CLI evaluates
//! exactly what the filter loads. Each evaluation reuses a loaded VM (data set once; only
//! the input changes). Builtin errors make an expression undefined, as in OPA (non-strict).
//!
//! This module does no I/O and knows nothing about requests; see `authorize`.

use std::sync::{Arc, Mutex};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use regorus::rvm::program::{DeserializationResult, Program};
use regorus::rvm::vm::RegoVM;
use regorus::Value;

use crate::config::{Mode, PluginConfig, PolicyEngine};
use crate::input::{InputShape, RequestAttributes};

mod compile;
mod entrypoint;
mod interpreter;
mod refuse;

pub use crate::needs::{body_references, call_sites, BodyReference, InputNeeds};
pub(crate) use compile::engine_with;
pub use compile::{parse_modules, with_program};
pub use interpreter::HAS_INTERPRETER;

/// Builtins (by name prefix) only in the extended filter module (cargo feature
/// `opa-builtins`): regex, glob, CIDR, base64, hex and URL-query functions. The core
/// module leaves them out to stay small (V8 compiles the whole module before the sidecar
/// is ready); the control plane serves the extended module to policies that call them.
pub const EXTENDED_BUILTIN_PREFIXES: [&str; 7] = [
    "regex.",
    "glob.",
    "net.",
    "base64.",
    "base64url.",
    "hex.",
    "urlquery.",
];

/// True when this build has the extended builtins.
pub const HAS_EXTENDED_BUILTINS: bool = cfg!(feature = "opa-builtins");

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
    /// The policy compiles but uses a construct the filter's engine (regorus's RVM) does
    /// not run, or would not run as OPA does (e.g. `with` outside tests, a non-constant
    /// `default`, possibly conflicting definitions; see `refuse`).
    #[error("the filter's engine (regorus RVM) cannot run this policy: {message}")]
    Unsupported {
        /// The message (with `--> name:line:col`), naming the construct.
        message: String,
        /// How to rewrite it, when known.
        hint: Option<String>,
    },
    /// The configuration's compiled program is missing or cannot be loaded.
    #[error("compiled policy program rejected: {message}")]
    Program {
        /// What is wrong with it.
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
            Self::Parse { message, .. }
            | Self::Compile { message, .. }
            | Self::Unsupported { message, .. } => message,
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
        match (self.located(), self) {
            (Some(l), Self::Unsupported { hint, .. }) => format!(
                "{}:{}:{}: {} (the sidecar filter's Rego engines, regorus's RVM and interpreter, would not decide this as OPA does){}",
                l.module,
                l.line,
                l.column,
                l.message,
                hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
            ),
            (Some(l), _) => format!("{}:{}:{}: {}", l.module, l.line, l.column, l.message),
            (None, _) => self.to_string().replace('\n', " "),
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

/// A policy ready to evaluate: its evaluator and what it reads.
#[derive(Debug)]
pub struct CompiledPolicy {
    config: PluginConfig,
    evaluator: Evaluator,
    needs: InputNeeds,
    shape: InputShape,
    cacheable: bool,
}

/// The RVM program (with its data and a spare VM), or regorus's interpreter.
// One per loaded policy; boxing the VM would add an indirection to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Evaluator {
    Rvm {
        program: Arc<Program>,
        data: Value,
        /// A VM with the program and data loaded, reused by the next evaluation.
        spare: Mutex<Option<RegoVM>>,
    },
    Interpreter(interpreter::Interpreter),
}

impl CompiledPolicy {
    /// Loads a configuration (what the filter does in `on_configure`): its precompiled
    /// RVM program, or (engine `interpreter`) its modules into regorus's interpreter.
    pub fn load(config: &PluginConfig) -> Result<Self, PolicyError> {
        // Analysed by the control plane; without it, build everything and cache nothing.
        let needs = config.input_needs.unwrap_or(InputNeeds::ALL);
        let (evaluator, cacheable) = match config.engine {
            PolicyEngine::Rvm => {
                let program = load_program(config)?;
                // The answer depends only on peer, method and path (and the fixed data).
                let builtins = program.builtin_info_table.iter().map(|b| b.name.as_str());
                let cacheable = crate::needs::cacheable(needs, builtins);
                let data = Value::from(config.data.clone());
                let vm = new_vm(&program, &data)?;
                let spare = Mutex::new(Some(vm));
                let rvm = Evaluator::Rvm {
                    program,
                    data,
                    spare,
                };
                (rvm, cacheable)
            }
            // Not cached: the interpreter's builtins are not listed up front.
            PolicyEngine::Interpreter => (
                Evaluator::Interpreter(interpreter::Interpreter::load(config)?),
                false,
            ),
        };
        Ok(Self {
            config: config.clone(),
            evaluator,
            needs,
            shape: InputShape::new(&config.destination_principal, needs),
            cacheable,
        })
    }
}

/// The precompiled RVM program of a configuration. Fails when there is none or it does
/// not load.
fn load_program(config: &PluginConfig) -> Result<Arc<Program>, PolicyError> {
    {
        let program_error = |message: String| PolicyError::Program { message };
        if config.program.is_empty() {
            return Err(program_error(
                "the configuration has no compiled program (the control plane compiles the Rego \
                 modules and sends the program; see PluginConfig::program)"
                    .into(),
            ));
        }
        let bytes = BASE64_STANDARD
            .decode(config.program.as_bytes())
            .map_err(|e| program_error(format!("not base64: {e}")))?;
        let (program, complete) =
            match Program::deserialize_binary(&bytes).map_err(program_error)? {
                DeserializationResult::Complete(program) => (program, true),
                DeserializationResult::Partial(program) => (program, false),
            };
        if let (false, Some(first)) = (HAS_EXTENDED_BUILTINS, extended_builtins(&program).first()) {
            return Err(program_error(format!(
                "the policy calls {first}, which this filter module (core builtins) does not \
                 have; serve the extended module for it"
            )));
        }
        if !complete {
            return Err(program_error(
                "compiled by an incompatible regorus version; recompile it".into(),
            ));
        }
        Ok(Arc::new(program))
    }
}

impl CompiledPolicy {
    /// Compiles the configuration's modules and loads the result through the same binary
    /// form the filter receives (the configuration's own `program` is ignored and replaced).
    pub fn compile(config: &PluginConfig) -> Result<Self, PolicyError> {
        Self::load(&with_program(config.clone())?)
    }

    /// The configuration this policy was loaded from.
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

    /// The extended builtins (see [`EXTENDED_BUILTIN_PREFIXES`]) the policy calls: when
    /// not empty, the sidecar needs the extended filter module.
    pub fn extended_builtins(&self) -> Vec<String> {
        match &self.evaluator {
            Evaluator::Rvm { program, .. } => extended_builtins(program),
            // The interpreter itself is only in the extended module.
            Evaluator::Interpreter(_) => interpreter::extended_needs(&self.config),
        }
    }

    /// True when equal peer, method and path always get the same decision, so the filter
    /// may remember decisions (`cache`).
    pub fn decisions_cacheable(&self) -> bool {
        self.cacheable
    }

    /// The input document for one request, with only the fields this policy can read.
    pub fn input_for(&self, request: &RequestAttributes) -> Value {
        self.shape.build(request)
    }

    /// Evaluates the entrypoint for one input. `Value::Undefined` means the rule is undefined.
    pub fn evaluate(&self, input: Value) -> Result<Value, PolicyError> {
        let (program, data, spare) = match &self.evaluator {
            Evaluator::Rvm {
                program,
                data,
                spare,
            } => (program, data, spare),
            Evaluator::Interpreter(interpreter) => {
                return interpreter.evaluate(input).and_then(refuse_undefined_parts)
            }
        };
        // Take the spare VM (or build one when another evaluation holds it).
        let taken = spare.lock().ok().and_then(|mut slot| slot.take());
        let mut vm = match taken {
            Some(vm) => vm,
            None => new_vm(program, data)?,
        };
        vm.set_input(input);
        let result = vm
            .execute()
            .map_err(|e| PolicyError::Eval {
                message: e.to_string(),
            })
            .and_then(refuse_undefined_parts);
        // Drop the input now rather than keeping the request alive in the spare.
        vm.set_input(Value::Null);
        if let Ok(mut slot) = spare.lock() {
            *slot = Some(vm);
        }
        result
    }
}

/// A value with an undefined part inside (e.g. a package whose rules did not all hold) is
/// not what OPA would answer (it leaves such parts out): an error, so the request is denied
/// with a reason.
fn refuse_undefined_parts(value: Value) -> Result<Value, PolicyError> {
    match undefined_part(&value, &mut String::new()) {
        Some(at) => Err(PolicyError::Eval {
            message: format!("the decision has an undefined part at {at}"),
        }),
        None => Ok(value),
    }
}

/// The path (`.a[0]`) of the first undefined part inside `value` (not `value` itself).
fn undefined_part(value: &Value, at: &mut String) -> Option<String> {
    let inner = |child: &Value, label: String, at: &mut String| {
        let len = at.len();
        at.push_str(&label);
        let found = if *child == Value::Undefined {
            Some(at.clone())
        } else {
            undefined_part(child, at)
        };
        at.truncate(len);
        found
    };
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| inner(v, format!("[{i}]"), at)),
        Value::Set(items) => items.iter().find_map(|v| inner(v, "[_]".into(), at)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let key = match k {
                Value::String(s) => format!(".{s}"),
                other => format!("[{other}]"),
            };
            if *k == Value::Undefined {
                return Some(format!("{at}[<undefined key>]"));
            }
            inner(v, key, at)
        }),
        _ => None,
    }
}

fn extended_builtins(program: &Program) -> Vec<String> {
    program
        .builtin_info_table
        .iter()
        .filter(|b| {
            EXTENDED_BUILTIN_PREFIXES
                .iter()
                .any(|p| b.name.starts_with(p))
        })
        .map(|b| b.name.clone())
        .collect()
}

fn new_vm(program: &Arc<Program>, data: &Value) -> Result<RegoVM, PolicyError> {
    let mut vm = RegoVM::new();
    vm.load_program(program.clone());
    vm.set_max_instructions(MAX_INSTRUCTIONS);
    vm.set_strict_builtin_errors(false);
    vm.set_data(data.clone()).map_err(|e| PolicyError::Data {
        message: format!("{e:#}"),
    })?;
    Ok(vm)
}

#[cfg(test)]
mod tests;
