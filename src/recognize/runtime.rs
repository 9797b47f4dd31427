//! ONNX Runtime is loaded once per process from a shared library we ship (never downloaded).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::RecognizeError;

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where to look for libonnxruntime when the config does not say.
pub fn default_library_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        v.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join("libonnxruntime.so.1"));
        // target/release/gatehouse in a checkout -> vendor/onnxruntime
        v.push(dir.join("../../vendor/onnxruntime/libonnxruntime.so.1"));
    }
    v.push(PathBuf::from("vendor/onnxruntime/libonnxruntime.so.1"));
    v.push(PathBuf::from("/usr/lib/gatehouse/libonnxruntime.so.1"));
    v
}

/// Loads the library (first call wins) and returns the process-wide environment.
pub fn environment(library: Option<&Path>) -> Result<ort::environment::Environment, RecognizeError> {
    let result = ENV.get_or_init(|| {
        let path = match library {
            Some(p) => p.to_path_buf(),
            None => default_library_candidates()
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    "libonnxruntime.so.1 not found; run scripts/setup.sh or set recognize.onnxruntime".to_string()
                })?,
        };
        let builder = ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        builder
            .with_name("gatehouse")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    result.clone().map_err(RecognizeError::Runtime)
}
