//! ONNX Runtime: one process-wide environment, one session per model, and the model
//! manifest check (sha256 and I/O signature) that runs before any session is trusted.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::InferenceError;
use crate::config::InferenceConfig;

/// The manifest in models/manifest.json, compiled in so a binary always knows which
/// exact files it was built and tested against.
const MANIFEST: &str = include_str!("../../models/manifest.json");

#[derive(Debug, Deserialize)]
struct Manifest {
    models: Vec<ModelEntry>,
}

/// One model file as the manifest describes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    /// The PyPI wheel or the npm package the file comes from.
    #[serde(default)]
    pub wheel: Option<String>,
    #[serde(default)]
    pub npm: Option<String>,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// -1 for a dynamic dimension.
    pub shape: Vec<i64>,
}

impl ModelEntry {
    /// Where the file comes from, e.g. "nudenet 3.4.2 (PyPI)".
    pub fn source(&self) -> String {
        match (&self.wheel, &self.npm) {
            (Some(w), _) => format!("{w} {} (PyPI)", self.version),
            (None, Some(n)) => format!("{n} {} (npm)", self.version),
            (None, None) => format!("version {}", self.version),
        }
    }
}

/// Every model the manifest names.
pub fn entries() -> Result<Vec<ModelEntry>, InferenceError> {
    let manifest: Manifest = serde_json::from_str(MANIFEST)
        .map_err(|e| InferenceError::Manifest(format!("models/manifest.json: {e}")))?;
    Ok(manifest.models)
}

/// The ONNX Runtime library's build information (loading it if needed).
pub fn runtime_info(config: &InferenceConfig) -> Result<&'static str, InferenceError> {
    environment(config)?;
    Ok(ort::info())
}

/// The manifest entry named `name`.
pub fn entry(name: &str) -> Result<ModelEntry, InferenceError> {
    entries()?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| InferenceError::Manifest(format!("no model named {name} in the manifest")))
}

/// A model file that exists and has the manifest's digest.
pub fn verified_file(dir: &Path, entry: &ModelEntry) -> Result<(PathBuf, Vec<u8>), InferenceError> {
    let path = dir.join(&entry.file);
    let bytes = std::fs::read(&path).map_err(|e| InferenceError::ModelMissing {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let got = crate::hex::encode(&Sha256::digest(&bytes));
    if got != entry.sha256 {
        return Err(InferenceError::ModelDigest {
            path: path.display().to_string(),
            expected: entry.sha256.clone(),
            got,
        });
    }
    Ok((path, bytes))
}

/// Loads the ONNX Runtime library once per process.
fn environment(
    config: &InferenceConfig,
) -> Result<&'static ort::environment::Environment, InferenceError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let result = ENV.get_or_init(|| {
        let lib = &config.ort_library;
        if !lib.is_file() {
            return Err(format!(
                "ONNX Runtime library {} not found: run `make setup` (or set inference.ort_library / VCW__INFERENCE__ORT_LIBRARY)",
                lib.display()
            ));
        }
        ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("vcw")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    result
        .as_ref()
        .map_err(|e| InferenceError::Runtime(e.clone()))
}

/// Builds a session for a verified model and checks its I/O names and shapes.
pub fn session(
    config: &InferenceConfig,
    entry: &ModelEntry,
    bytes: &[u8],
) -> Result<Session, InferenceError> {
    let env = environment(config)?;
    let threads = if config.intra_threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        config.intra_threads
    };
    let ort_err = |e: ort::Error| InferenceError::Runtime(format!("{}: {e}", entry.file));
    let builder = Session::builder(env)
        .map_err(ort_err)?
        .with_intra_threads(threads)
        .map_err(|e| ort_err(e.into()))?
        // Idle intra-op threads sleep instead of spinning: decoding and preprocessing
        // share the cores with them, and spinning took those cores (on 2 cores the
        // 1080p scan went from 55.8 s to 46.6 s, the models alone from 39.7 s to 35.5 s).
        .with_intra_op_spinning(false)
        .map_err(|e| ort_err(e.into()))?;
    #[cfg(feature = "cuda")]
    let builder = match config.cuda_device {
        // Fails rather than silently falling back to the CPU: an operator who asked
        // for the GPU should learn that it is not being used.
        Some(device) => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device)
                .build()
                .error_on_failure()])
            .map_err(|e| ort_err(e.into()))?,
        None => builder,
    };
    let mut builder = builder;
    let session = builder.commit_from_memory(bytes).map_err(ort_err)?;
    check_signature(
        entry,
        "input",
        session.inputs().iter().map(outlet),
        &entry.inputs,
    )?;
    check_signature(
        entry,
        "output",
        session.outputs().iter().map(outlet),
        &entry.outputs,
    )?;
    Ok(session)
}

fn outlet(o: &ort::value::Outlet) -> (String, Vec<i64>) {
    let shape = o
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    (o.name().to_string(), shape)
}

fn check_signature(
    entry: &ModelEntry,
    what: &str,
    actual: impl Iterator<Item = (String, Vec<i64>)>,
    expected: &[TensorSpec],
) -> Result<(), InferenceError> {
    let actual: Vec<_> = actual.collect();
    let matches = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|((name, shape), spec)| {
            *name == spec.name
                && shape.len() == spec.shape.len()
                && shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(a, e)| *e < 0 || *a == *e)
        });
    if matches {
        Ok(())
    } else {
        Err(InferenceError::Signature {
            model: entry.file.clone(),
            detail: format!(
                "{what}s are {actual:?}, the manifest expects {:?}",
                expected
                    .iter()
                    .map(|s| (s.name.clone(), s.shape.clone()))
                    .collect::<Vec<_>>()
            ),
        })
    }
}
