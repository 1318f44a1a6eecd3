//! regorus's interpreter (`Engine`) for the policies the RVM would decide differently
//! from OPA (see `refuse`): non-constant defaults, possible conflicts, `else` chains with
//! computed values, packages as values, `with`, ... The interpreter raises OPA's conflict
//! errors and builds virtual documents as OPA does. It needs the Rego parser in the
//! module, so it is only in the extended filter module (cargo feature `interpreter`); the
//! control plane serves that module to such policies. ~3-4x slower per evaluation than
//! the RVM (README), and decisions are not cached.

use super::{PolicyError, EXTENDED_BUILTIN_PREFIXES};
use crate::config::PluginConfig;
use regorus::Value;

/// Wall-clock limit of one evaluation on the interpreter; beyond it the request is denied.
#[cfg(feature = "interpreter")]
const MAX_EVAL_MILLIS: u64 = 200;

/// True when this build can evaluate with the interpreter.
pub const HAS_INTERPRETER: bool = cfg!(feature = "interpreter");

/// A policy loaded into regorus's interpreter, evaluated one request at a time.
pub(super) struct Interpreter {
    #[cfg(feature = "interpreter")]
    engine: std::sync::Mutex<regorus::Engine>,
    rule: String,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl Interpreter {
    /// Parses and compiles the configuration's modules (what the filter does in
    /// `on_configure` for an interpreter policy).
    #[cfg(feature = "interpreter")]
    pub(super) fn load(config: &PluginConfig) -> Result<Self, PolicyError> {
        let mut engine = super::compile::engine_with(&config.modules, &config.data)?;
        // A runaway policy fails closed, as the RVM's instruction limit does.
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: std::time::Duration::from_millis(MAX_EVAL_MILLIS),
            check_interval: std::num::NonZeroU32::MIN.saturating_add(255),
        });
        engine
            .compile_with_entrypoint(&config.entrypoint.as_str().into())
            .map_err(|e| PolicyError::Compile {
                entrypoint: config.entrypoint.clone(),
                message: format!("{e:#}"),
            })?;
        Ok(Self {
            engine: std::sync::Mutex::new(engine),
            rule: config.entrypoint.clone(),
        })
    }

    /// Without the interpreter (the core filter module) such a policy cannot load.
    #[cfg(not(feature = "interpreter"))]
    pub(super) fn load(_config: &PluginConfig) -> Result<Self, PolicyError> {
        Err(PolicyError::Program {
            message: "the policy runs on the Rego interpreter, which this filter module (core) \
                      does not have; serve the extended module for it"
                .into(),
        })
    }

    /// Evaluates the rule for one input; conflicts are errors, as in OPA.
    #[cfg(feature = "interpreter")]
    pub(super) fn evaluate(&self, input: Value) -> Result<Value, PolicyError> {
        let mut engine = self.engine.lock().map_err(|_| PolicyError::Eval {
            message: "the interpreter is unusable after an earlier failure".into(),
        })?;
        engine.set_input(input);
        let result = engine
            .eval_rule(self.rule.clone())
            .map_err(|e| PolicyError::Eval {
                message: format!("{e:#}").replace('\n', " "),
            });
        engine.set_input(Value::Null);
        result
    }

    #[cfg(not(feature = "interpreter"))]
    pub(super) fn evaluate(&self, _input: Value) -> Result<Value, PolicyError> {
        Err(PolicyError::Eval {
            message: format!("no interpreter in this module for {}", self.rule),
        })
    }
}

/// What an interpreter policy needs from the extended module: the interpreter itself
/// (first entry) and the extended builtins its sources name.
pub(super) fn extended_needs(config: &PluginConfig) -> Vec<String> {
    let mut out = vec!["(the Rego interpreter)".to_string()];
    for prefix in EXTENDED_BUILTIN_PREFIXES {
        if config.modules.iter().any(|m| m.source.contains(prefix)) {
            out.push(format!("{prefix}*"));
        }
    }
    out
}
