//! The built-in pipeline, INGEST → CHECK → ANALYZE → NOTIFY, shipped inside
//! the binary as an ordinary definition so the same engine, retries, records
//! and metrics apply to it.

use super::{Definition, DefinitionError, parse_definition};
use crate::nodes::HandlerRegistry;

/// The reserved name of the built-in pipeline. A file `default.json` in the
/// definitions directory is refused rather than silently replacing it.
pub const BUILTIN_NAME: &str = "default";

const BUILTIN_JSON: &str = include_str!("builtin.json");

/// Builds the built-in definition with the given handlers.
pub fn builtin_definition(handlers: &HandlerRegistry) -> Result<Definition, DefinitionError> {
    parse_definition(BUILTIN_NAME, "<builtin>", BUILTIN_JSON, handlers)
}
