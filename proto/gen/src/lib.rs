//! Generates Warden's protobuf code from the `.proto` files under `proto/`, with
//! `protox` (a pure-Rust protobuf compiler: no `protoc`), `prost-build` and `tonic-build`.
//!
//! The output is committed (as linkerd2-proxy-api does), so a normal build compiles no
//! `.proto` file and needs none of these crates. `cargo run -p warden-proto-gen` rewrites
//! it; the test `committed_code_matches_the_proto_files` fails when it is stale.
//!
//! - `proto/spiffe/workload.proto` → the SPIFFE Workload API messages and the tonic
//!   server for `SpiffeWorkloadAPI` (`control-plane/src/workload_api/generated/`).
//! - `proto/envoy/...` → the few Envoy extension messages `xds-api` does not generate
//!   (`control-plane/src/xds/generated/`). Every message they share with the rest of the
//!   Envoy API (`config.core.v3`, `SdsSecretConfig`, `google.protobuf.*`) is `xds-api`'s
//!   type (`extern_path`), and their imports resolve against `xds-api`'s descriptor set,
//!   so the subsets need no copy of the upstream files they import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use heck::ToUpperCamelCase;
use protox::file::IncludeFileResolver;
use protox::file::{ChainFileResolver, DescriptorSetFileResolver, GoogleFileResolver};

/// Where the Workload API code goes, relative to the workspace root.
pub const WORKLOAD_OUT: &str = "control-plane/src/workload_api/generated";
/// Where the Envoy extension code goes, relative to the workspace root.
pub const ENVOY_OUT: &str = "control-plane/src/xds/generated";

/// The Envoy subsets compiled, relative to `proto/`.
const ENVOY_FILES: [&str; 4] = [
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto",
    "envoy/extensions/wasm/v3/wasm.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
];

/// The workspace root (this crate lives in `proto/gen`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every generated file: path relative to the workspace root → contents.
pub fn generate(root: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let proto = root.join("proto");
    let mut out = BTreeMap::new();
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;

    let workload_dir = tmp.path().join("workload");
    std::fs::create_dir_all(&workload_dir)?;
    let fds = protox::compile(["spiffe/workload.proto"], [&proto])
        .context("compiling proto/spiffe/workload.proto")?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&workload_dir)
        .compile_fds(fds)
        .context("generating the Workload API code")?;
    // The file has no package, so prost names its output `_.rs`.
    collect(&workload_dir, Path::new(WORKLOAD_OUT), &mut out, |name| {
        (name == "_.rs").then(|| "workload.rs".to_string())
    })?;

    let envoy_dir = tmp.path().join("envoy");
    std::fs::create_dir_all(&envoy_dir)?;
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(proto.clone()));
    resolver.add(
        DescriptorSetFileResolver::decode(xds_api::FILE_DESCRIPTOR_SET)
            .context("reading xds-api's descriptor set")?,
    );
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(ENVOY_FILES)
        .context("compiling the Envoy subsets under proto/envoy")?;
    // prost-build needs every imported message (to decide what derives `Copy`) and
    // generates code for every file it is given: imported types are mapped to xds-api's
    // (`extern_path`), so only the subsets' own messages are generated.
    let fds = compiler.file_descriptor_set();
    let ours: Vec<String> = fds
        .file
        .iter()
        .filter(|f| ENVOY_FILES.contains(&f.name()))
        .map(|f| f.package().to_string())
        .collect();
    let mut config = prost_build::Config::new();
    config
        .out_dir(&envoy_dir)
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com")
        // Not compiled: this only drops prost's default `google.protobuf` → `prost_types`
        // mapping, so the extern paths below can point them at xds-api's types.
        .compile_well_known_types();
    let mut mapped = std::collections::BTreeSet::new();
    for file in fds.file.iter().filter(|f| !ENVOY_FILES.contains(&f.name())) {
        let package = file.package();
        let rust = format!("::xds_api::pb::{}", package.replace('.', "::"));
        if !ours.iter().any(|p| p == package) {
            if mapped.insert(package) {
                config.extern_path(format!(".{package}"), rust);
            }
            continue;
        }
        // A file of one of our packages (e.g. tls.v3's common.proto): type by type.
        for name in file
            .message_type
            .iter()
            .map(|m| m.name())
            .chain(file.enum_type.iter().map(|e| e.name()))
        {
            config.extern_path(
                format!(".{package}.{name}"),
                format!("{rust}::{}", name.to_upper_camel_case()),
            );
        }
    }
    config
        .compile_fds(fds)
        .context("generating the Envoy extension code")?;
    let keep: Vec<String> = ours.iter().map(|p| format!("{p}.rs")).collect();
    collect(&envoy_dir, Path::new(ENVOY_OUT), &mut out, |name| {
        keep.iter().any(|k| k == name).then(|| name.to_string())
    })?;
    Ok(out)
}

/// Moves the generated files of `dir` that `rename` keeps into `out`, under `dest`.
fn collect(
    dir: &Path,
    dest: &Path,
    out: &mut BTreeMap<PathBuf, String>,
    rename: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(target) = rename(&name) else {
            // A package whose types are all xds-api's: nothing of ours in it.
            let text = std::fs::read_to_string(entry.path())?;
            if text
                .lines()
                .any(|l| l.contains("pub struct") || l.contains("pub enum"))
            {
                bail!("unexpected generated code in {name}");
            }
            continue;
        };
        let text = std::fs::read_to_string(entry.path())?;
        out.insert(dest.join(target), format!("{HEADER}{text}"));
    }
    Ok(())
}

/// First lines of every generated file.
const HEADER: &str = "// @generated by `cargo run -p warden-proto-gen` from proto/. Do not edit.\n";

/// Writes `files` under `root`, removing stale generated files of the output directories.
pub fn write(root: &Path, files: &BTreeMap<PathBuf, String>) -> Result<()> {
    for dir in [WORKLOAD_OUT, ENVOY_OUT] {
        let dir = root.join(dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    for (path, text) in files {
        std::fs::write(root.join(path), text)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Files under the output directories that differ from `files` (missing, stale, extra).
pub fn stale(root: &Path, files: &BTreeMap<PathBuf, String>) -> Result<Vec<PathBuf>> {
    let mut differ: Vec<PathBuf> = files
        .iter()
        .filter(|(path, text)| {
            std::fs::read_to_string(root.join(path)).ok().as_ref() != Some(*text)
        })
        .map(|(path, _)| path.clone())
        .collect();
    for dir in [WORKLOAD_OUT, ENVOY_OUT] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = Path::new(dir).join(entry?.file_name());
            if !files.contains_key(&path) {
                differ.push(path);
            }
        }
    }
    Ok(differ)
}
