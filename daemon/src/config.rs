//! Reading a daemon's TOML file: strict parsing (unknown keys are errors) and errors that name
//! the file and the key. The daemons' own modules describe their keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::config::ConfigValueError;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass the right --config path")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Value(#[from] ConfigValueError),
    #[error("{file}: {key} names {path}, which does not exist; {hint}")]
    MissingFile {
        file: String,
        key: &'static str,
        path: String,
        hint: &'static str,
    },
}

/// Reads and parses `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &text)
}

/// Parses `text` as the contents of `path`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Whole seconds with a default; 0 is raised to 1 (a zero timeout or interval is never meant).
pub fn secs(value: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(1))
}

/// `path` if it exists, else an error naming the config file, the key and what to do.
pub fn existing(
    file: &Path,
    key: &'static str,
    path: PathBuf,
    hint: &'static str,
) -> Result<PathBuf, ConfigError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(ConfigError::MissingFile {
            file: file.display().to_string(),
            key,
            path: path.display().to_string(),
            hint,
        })
    }
}
