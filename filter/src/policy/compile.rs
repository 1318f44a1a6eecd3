//! Rego → RVM program, on the control plane and in the CLI (never in the filter, which
//! only loads the result; keeping these calls out of the Wasm entry points keeps the
//! parser and compiler out of the module). No I/O.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use regorus::languages::rego::compiler::Compiler;
use regorus::{Engine, Value};

use super::{refuse, PolicyError};
use crate::config::{PluginConfig, PolicyEngine, PolicyModule};

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

/// The configuration as the control plane sends it to the filter: its `program` compiled
/// from its modules for the RVM, or, when the RVM would decide differently from OPA
/// (see `refuse`) but regorus's interpreter would not, `engine: interpreter` and no
/// program. The entrypoint becomes the rule evaluated: a package path (OPA-Envoy's
/// `path: envoy/authz`) is resolved to its `allow` rule. Fails when a module does not
/// parse, the entrypoint rule does not exist, or neither engine runs the policy as OPA.
/// It also carries the request fields the policy can read (`input_needs`, see `needs`).
pub fn with_program(mut config: PluginConfig) -> Result<PluginConfig, PolicyError> {
    if config.modules.is_empty() {
        return Err(PolicyError::NoModules);
    }
    let mut engine = engine_with(&config.modules, &config.data)?;
    refuse::check(
        engine.get_modules(),
        &config.data,
        refuse::Engine::Interpreter,
    )?;
    let resolved = super::entrypoint::resolve(engine.get_modules(), &config.entrypoint)?;
    let rvm = refuse::check(engine.get_modules(), &config.data, refuse::Engine::Rvm)
        .and_then(|()| program_base64(&mut engine, &resolved));
    match rvm {
        Ok(program) => {
            config.program = program;
            config.engine = PolicyEngine::Rvm;
        }
        Err(PolicyError::Unsupported { .. }) => {
            // The interpreter runs it as OPA does; it must compile there.
            engine
                .compile_with_entrypoint(&resolved.as_str().into())
                .map_err(|e| PolicyError::Compile {
                    entrypoint: resolved.clone(),
                    message: format!("{e:#}"),
                })?;
            config.program = String::new();
            config.engine = PolicyEngine::Interpreter;
        }
        Err(other) => return Err(other),
    }
    config.entrypoint = resolved;
    config.input_needs = Some(super::InputNeeds::scan(
        config.modules.iter().map(|m| m.source.as_str()),
    ));
    Ok(config)
}

/// Compiles the modules for the entrypoint to an RVM program and returns its binary form
/// in base64, as [`PluginConfig::program`] carries it. Fails when the entrypoint rule does
/// not exist, or the policy uses a construct the RVM compiler cannot run (`Unsupported`).
fn program_base64(engine: &mut Engine, entrypoint: &str) -> Result<String, PolicyError> {
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
    Ok(BASE64_STANDARD.encode(&bytes))
}
