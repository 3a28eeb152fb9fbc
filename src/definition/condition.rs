//! `skip_if_condition`: a tiny expression language over earlier node results,
//! parsed once at load time and never evaluated as code.
//!
//! Two forms:
//! - `"<id>.has_errors"` — true when node `<id>` failed;
//! - `"<id>.<dotted.path> <op> <literal>"` with `== != < <= > >=`, where the
//!   literal is a number, a quoted string (`'…'` or `"…"`), `true`, `false` or
//!   `null`. The path is read from node `<id>`'s output; list items by index
//!   (`alerts.0.severity`). A missing value is `null`.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    HasErrors {
        node: String,
    },
    Compare {
        node: String,
        path: Vec<String>,
        op: Op,
        literal: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::HasErrors { node } => write!(f, "{node}.has_errors"),
            Condition::Compare {
                node,
                path,
                op,
                literal,
            } => write!(f, "{node}.{} {} {literal}", path.join("."), op.as_str()),
        }
    }
}

/// What a condition can ask about an earlier node.
pub trait NodeFacts {
    /// The node failed (its errors are recorded).
    fn has_errors(&self, node: &str) -> bool;
    /// The node's output, if it ran.
    fn output(&self, node: &str) -> Option<&Value>;
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let text = text.trim();
        let (lhs, op, rhs) = match split_operator(text) {
            Some(parts) => parts,
            None => {
                if let Ok((node, rest)) = split_reference(text)
                    && rest == ["has_errors"]
                {
                    return Ok(Condition::HasErrors { node });
                }
                return Err(format!(
                    "`{text}` is not a condition; write \"<node>.has_errors\" or \"<node>.<path> <op> <value>\" with one of == != < <= > >="
                ));
            }
        };
        let (node, path) = split_reference(lhs.trim())?;
        let literal = parse_literal(rhs.trim())?;
        if matches!(literal, Value::Bool(_) | Value::Null) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!(
                "`{}` can only be compared with == or !=",
                rhs.trim()
            ));
        }
        Ok(Condition::Compare {
            node,
            path,
            op,
            literal,
        })
    }

    /// The node this condition reads.
    pub fn node(&self) -> &str {
        match self {
            Condition::HasErrors { node } | Condition::Compare { node, .. } => node,
        }
    }

    pub fn evaluate(&self, facts: &dyn NodeFacts) -> bool {
        match self {
            Condition::HasErrors { node } => facts.has_errors(node),
            Condition::Compare {
                node,
                path,
                op,
                literal,
            } => {
                let value = facts
                    .output(node)
                    .and_then(|out| lookup(out, path.iter().map(String::as_str)))
                    .unwrap_or(&Value::Null);
                compare(value, *op, literal)
            }
        }
    }
}

/// Walks a dotted path into a JSON value; numeric segments index lists.
pub fn lookup<'v, 'p>(
    mut value: &'v Value,
    path: impl IntoIterator<Item = &'p str>,
) -> Option<&'v Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn compare(value: &Value, op: Op, literal: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (value, literal) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => (a == b).then_some(Ordering::Equal),
    };
    match op {
        Op::Eq => ordering == Some(Ordering::Equal),
        Op::Ne => ordering != Some(Ordering::Equal),
        Op::Lt => ordering == Some(Ordering::Less),
        Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ordering == Some(Ordering::Greater),
        Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Splits at the first comparison operator outside quotes.
fn split_operator(text: &str) -> Option<(&str, Op, &str)> {
    let bytes = text.as_bytes();
    let mut quote = None;
    for i in 0..bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
            continue;
        }
        let two = bytes.get(i + 1).copied();
        let (op, len) = match (c, two) {
            (b'=', Some(b'=')) => (Op::Eq, 2),
            (b'!', Some(b'=')) => (Op::Ne, 2),
            (b'<', Some(b'=')) => (Op::Le, 2),
            (b'>', Some(b'=')) => (Op::Ge, 2),
            (b'<', _) => (Op::Lt, 1),
            (b'>', _) => (Op::Gt, 1),
            _ => continue,
        };
        return Some((&text[..i], op, &text[i + len..]));
    }
    None
}

fn split_reference(text: &str) -> Result<(String, Vec<String>), String> {
    let mut parts = text.split('.');
    let node = parts.next().unwrap_or_default();
    let path: Vec<String> = parts.map(str::to_string).collect();
    if node.is_empty() || !is_identifier(node) {
        return Err(format!(
            "`{text}` must start with a node id, as in \"check.status\""
        ));
    }
    if path.is_empty() || path.iter().any(|p| p.is_empty() || p.contains(' ')) {
        return Err(format!(
            "`{text}` needs a path after the node id, as in \"{node}.has_errors\" or \"{node}.status\""
        ));
    }
    Ok((node.to_string(), path))
}

/// Node ids may hold letters, digits, `_` and `-`: they appear in dotted paths.
pub fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_literal(text: &str) -> Result<Value, String> {
    match text {
        "" => return Err("the comparison has no value on its right".to_string()),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "null" => return Ok(Value::Null),
        _ => {}
    }
    for quote in ['\'', '"'] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return Ok(Value::String(inner.to_string()));
        }
    }
    if let Ok(number) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(number)
    {
        return Ok(Value::Number(n));
    }
    Err(format!(
        "`{text}` is not a value: quote strings ('{text}'), or use a number, true, false or null"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Facts(HashMap<&'static str, Value>, Vec<&'static str>);
    impl NodeFacts for Facts {
        fn has_errors(&self, node: &str) -> bool {
            self.1.contains(&node)
        }
        fn output(&self, node: &str) -> Option<&Value> {
            self.0.get(node)
        }
    }

    fn facts() -> Facts {
        Facts(
            HashMap::from([(
                "check",
                json!({"status": "WARNING", "cpu": {"percent": 75.5}, "ok": true,
                       "alerts": [{"severity": "critical"}]}),
            )]),
            vec!["broken"],
        )
    }

    #[test]
    fn has_errors() {
        let c = Condition::parse("broken.has_errors").unwrap();
        assert!(c.evaluate(&facts()));
        let c = Condition::parse("check.has_errors").unwrap();
        assert!(!c.evaluate(&facts()));
    }

    #[test]
    fn comparisons_over_numbers_strings_bools() {
        let cases = [
            ("check.cpu.percent > 70", true),
            ("check.cpu.percent >= 75.5", true),
            ("check.cpu.percent < 70", false),
            ("check.status == 'WARNING'", true),
            ("check.status != \"WARNING\"", false),
            ("check.ok == true", true),
            ("check.alerts.0.severity == 'critical'", true),
            ("check.missing == null", true),
            ("check.missing > 3", false),
            ("check.status > 5", false),
        ];
        for (text, expected) in cases {
            let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.evaluate(&facts()), expected, "{text}");
        }
    }

    #[test]
    fn operator_inside_quotes_is_part_of_the_string() {
        let c = Condition::parse("check.status == 'a>b'").unwrap();
        assert!(
            matches!(c, Condition::Compare { op: Op::Eq, ref literal, .. } if literal == "a>b")
        );
    }

    #[test]
    fn rejects_what_is_not_a_condition() {
        for bad in [
            "check",
            "check.status ==",
            "check.status == warning",
            "import os; check.x == 1",
            ".status == 1",
            "check.ok < true",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
