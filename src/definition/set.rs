//! The definitions currently loaded: every `*.json` in the definitions
//! directory, plus the built-in `default`. Invalid files are kept with their
//! errors so that `herald definitions` (and later the API) can show them.

use super::{
    BUILTIN_NAME, Definition, DefinitionError, Issue, builtin_definition, parse_definition,
};
use crate::nodes::HandlerRegistry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A definition file that did not load, with why.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub path: PathBuf,
    pub error: DefinitionError,
}

/// Loaded definitions by name.
#[derive(Debug, Default, Clone)]
pub struct DefinitionSet {
    valid: BTreeMap<String, Arc<Definition>>,
    invalid: BTreeMap<String, Invalid>,
}

impl DefinitionSet {
    /// Loads every `*.json` in `dir` (not recursive), plus the built-in.
    /// Fails only when the directory itself cannot be read; bad files are
    /// recorded as invalid.
    pub fn load_dir(dir: &Path, handlers: &HandlerRegistry) -> Result<Self, std::io::Error> {
        let mut set = Self::with_builtin(handlers);
        let paths = definition_files(dir)?;
        for path in paths {
            let name = definition_name(&path);
            match load_file(&path, handlers) {
                Ok(def) => {
                    set.valid.insert(name, Arc::new(def));
                }
                Err(error) => {
                    set.invalid.insert(name, Invalid { path, error });
                }
            }
        }
        Ok(set)
    }

    /// Only the built-in pipeline.
    pub fn with_builtin(handlers: &HandlerRegistry) -> Self {
        let mut set = DefinitionSet::default();
        match builtin_definition(handlers) {
            Ok(def) => {
                set.valid.insert(BUILTIN_NAME.to_string(), Arc::new(def));
            }
            // Only a handler registry without the built-in types gets here
            // (tests that bring their own handlers).
            Err(error) => {
                set.invalid.insert(
                    BUILTIN_NAME.to_string(),
                    Invalid {
                        path: PathBuf::from("<builtin>"),
                        error,
                    },
                );
            }
        }
        set
    }

    pub fn get(&self, name: &str) -> Option<Arc<Definition>> {
        self.valid.get(name).cloned()
    }

    pub fn invalid(&self, name: &str) -> Option<&Invalid> {
        self.invalid.get(name)
    }

    pub fn valid(&self) -> impl Iterator<Item = &Arc<Definition>> {
        self.valid.values()
    }

    pub fn invalid_files(&self) -> impl Iterator<Item = (&str, &Invalid)> {
        self.invalid.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// One JSON object per definition, valid and invalid: what
    /// `herald definitions --json` and `GET /orchestration/definitions/` list.
    /// A file that broke after it loaded is `invalid`, with the version that
    /// keeps running.
    pub fn summaries(&self) -> Vec<serde_json::Value> {
        let mut items: Vec<serde_json::Value> = self
            .valid()
            .map(|d| {
                let mut item = d.summary();
                if d.name != BUILTIN_NAME
                    && let Some(inv) = self.invalid.get(&d.name)
                {
                    item["state"] = serde_json::json!("invalid");
                    item["errors"] = serde_json::json!(inv.error.issues);
                    item["running_version"] = serde_json::json!(d.version_hash);
                }
                item
            })
            .collect();
        items.extend(
            self.invalid
                .iter()
                .filter(|(name, _)| !self.valid.contains_key(*name) || *name == BUILTIN_NAME)
                .map(|(name, inv)| {
                    serde_json::json!({"name": name, "path": inv.path, "state": "invalid", "errors": inv.error.issues})
                }),
        );
        items
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .valid
            .keys()
            .chain(self.invalid.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// A file that loaded: it replaces any earlier version and error.
    pub fn set_valid(&mut self, definition: Definition) {
        self.invalid.remove(&definition.name);
        self.valid
            .insert(definition.name.clone(), Arc::new(definition));
    }

    /// A file that did not load: recorded, while the last good version (if
    /// any) keeps running.
    pub fn set_invalid(&mut self, name: &str, invalid: Invalid) {
        self.invalid.insert(name.to_string(), invalid);
    }

    /// A file that is gone. The built-in cannot be removed.
    pub fn remove(&mut self, name: &str) {
        if name != BUILTIN_NAME {
            self.valid.remove(name);
        }
        self.invalid.remove(name);
    }
}

/// Every `*.json` regular file (through symlinks) directly in `dir`, in
/// name order, except hidden ones (editors' temp files, a ConfigMap's
/// `..data` entries).
pub fn definition_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot read definitions directory {}: {e}", dir.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Larger than any definition: a file past it is a mistake (a log, a dump
/// saved with a .json name), not read into memory whole.
pub const MAX_DEFINITION_BYTES: u64 = 1 << 20;

/// The definition name for a file: its stem.
pub fn definition_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and validates one definition file.
pub fn load_file(path: &Path, handlers: &HandlerRegistry) -> Result<Definition, DefinitionError> {
    let file = path.display().to_string();
    let name = definition_name(path);
    if name == BUILTIN_NAME {
        return Err(DefinitionError {
            file,
            issues: vec![Issue::new(
                "",
                format!(
                    "the name `{BUILTIN_NAME}` is reserved for the built-in pipeline; rename the file"
                ),
            )],
        });
    }
    let too_big = |len: u64| DefinitionError {
        file: file.clone(),
        issues: vec![Issue::new(
            "",
            format!(
                "{:.1} MiB is not a definition: a definition file is at most {} MiB (is this the \
                 right file?)",
                len as f64 / (1024.0 * 1024.0),
                MAX_DEFINITION_BYTES >> 20
            ),
        )],
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() > MAX_DEFINITION_BYTES
    {
        return Err(too_big(meta.len()));
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            // A byte-order mark, as some Windows editors write, is not JSON.
            Ok(text) => match text.strip_prefix('\u{feff}') {
                Some(rest) => rest.to_string(),
                None => text,
            },
            Err(e) => {
                return Err(DefinitionError {
                    file,
                    issues: vec![Issue::new(
                        "",
                        format!(
                            "not UTF-8 text (invalid byte at offset {})",
                            e.utf8_error().valid_up_to()
                        ),
                    )],
                });
            }
        },
        Err(e) => {
            return Err(DefinitionError {
                file,
                issues: vec![Issue::new("", format!("cannot read: {e}"))],
            });
        }
    };
    parse_definition(&name, &file, &text, handlers)
}

/// The loaded set as the daemon shares it: swapped whole on reload, so a run
/// never sees half a reload.
pub type SharedDefinitions = Arc<arc_swap::ArcSwap<DefinitionSet>>;
