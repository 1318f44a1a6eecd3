//! Rego → RVM program, on the control plane and in the CLI (never in the filter, which
//! only loads the result; keeping these calls out of the Wasm entry points keeps the
//! parser and compiler out of the module). No I/O.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use regorus::languages::rego::compiler::Compiler;
use regorus::{Engine, Value};

use super::PolicyError;
use crate::config::{PluginConfig, PolicyModule};

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

/// Parses modules (e.g. test modules) without compiling an entrypoint.
pub fn parse_modules(modules: &[PolicyModule]) -> Result<(), PolicyError> {
    engine_with(modules, &serde_json::Value::Object(serde_json::Map::new())).map(|_| ())
}

/// The configuration with its `program` compiled from its modules: what the control plane
/// sends to the filter.
/// The entrypoint becomes the rule the program evaluates: a package path (OPA-Envoy's
/// `path: envoy/authz`) is resolved to its `allow` rule.
pub fn with_program(mut config: PluginConfig) -> Result<PluginConfig, PolicyError> {
    let (entrypoint, program) = program_base64(&config)?;
    config.entrypoint = entrypoint;
    config.program = program;
    Ok(config)
}

/// Compiles the modules for the entrypoint to an RVM program and returns its binary form
/// in base64, as [`PluginConfig::program`] carries it, with the rule it evaluates. Fails
/// when a module does not parse, the entrypoint rule does not exist, or the policy uses a
/// construct the RVM cannot run or would run differently from OPA (see `refuse`).
pub(crate) fn program_base64(config: &PluginConfig) -> Result<(String, String), PolicyError> {
    if config.modules.is_empty() {
        return Err(PolicyError::NoModules);
    }
    let mut engine = engine_with(&config.modules, &config.data)?;
    super::refuse::check(engine.get_modules(), &config.data)?;
    let resolved = super::entrypoint::resolve(engine.get_modules(), &config.entrypoint)?;
    let entrypoint = resolved.as_str();
    let compile_error = |message: String| PolicyError::Compile {
        entrypoint: entrypoint.to_string(),
        message,
    };
    let compiled = engine
        .compile_with_entrypoint(&entrypoint.into())
        .map_err(|e| {
            let message = format!("{e:#}");
            compile_error(if message.contains("not a valid rule path") {
                format!("rule {entrypoint} is not defined by any module")
            } else {
                message
            })
        })?;
    let program = Compiler::compile_from_policy(&compiled, &[entrypoint]).map_err(|e| {
        let message = format!("{e:#}");
        if message.contains("Unknown function") || message.contains("Missing builtin") {
            compile_error(message)
        } else {
            PolicyError::Unsupported {
                message,
                hint: None,
            }
        }
    })?;
    let bytes = program
        .serialize_binary()
        .map_err(|message| compile_error(format!("cannot serialise the program: {message}")))?;
    Ok((resolved.clone(), BASE64_STANDARD.encode(&bytes)))
}
