//! Finds where a JSON path points in the original text, so that a semantic
//! error ("unknown provider") carries a line and column like a syntax error.
//!
//! serde_json's `Value` forgets positions; this is a small scanner over text
//! that serde_json has already accepted, so it never has to report errors of
//! its own: if anything looks odd it just answers "not found".

/// 1-based (line, column) of the value at `path`, or of the key itself when the
/// path ends in an object member. `path` uses the `a.b[2].c` form.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segments = split_path(path)?;
    let bytes = text.as_bytes();
    let mut pos = skip_ws(bytes, 0);
    let mut key_pos = None;
    for segment in &segments {
        match segment {
            Segment::Key(key) => {
                let (kp, vp) = find_member(bytes, pos, key)?;
                key_pos = Some(kp);
                pos = vp;
            }
            Segment::Index(index) => {
                pos = find_element(bytes, pos, *index)?;
                key_pos = None;
            }
        }
    }
    Some(line_col(text, key_pos.unwrap_or(pos)))
}

enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name.to_string()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            out.push(Segment::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
    }
    Some(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// In the object starting at `pos`, the positions of `key` and of its value.
fn find_member(bytes: &[u8], pos: usize, key: &str) -> Option<(usize, usize)> {
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    let mut pos = skip_ws(bytes, pos + 1);
    // The last occurrence wins, as in serde_json.
    let mut found = None;
    while bytes.get(pos) == Some(&b'"') {
        let key_start = pos;
        let key_end = skip_string(bytes, pos)?;
        let name: String = serde_json::from_slice(&bytes[key_start..key_end]).ok()?;
        pos = skip_ws(bytes, key_end);
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, pos + 1);
        if name == key {
            found = Some((key_start, value_start));
        }
        pos = skip_ws(bytes, skip_value(bytes, value_start)?);
        if bytes.get(pos) == Some(&b',') {
            pos = skip_ws(bytes, pos + 1);
        }
    }
    found
}

fn find_element(bytes: &[u8], pos: usize, index: usize) -> Option<usize> {
    if bytes.get(pos) != Some(&b'[') {
        return None;
    }
    let mut pos = skip_ws(bytes, pos + 1);
    let mut i = 0;
    while pos < bytes.len() && bytes[pos] != b']' {
        if i == index {
            return Some(pos);
        }
        pos = skip_ws(bytes, skip_value(bytes, pos)?);
        if bytes.get(pos) == Some(&b',') {
            pos = skip_ws(bytes, pos + 1);
        }
        i += 1;
    }
    None
}

fn skip_string(bytes: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_value(bytes: &[u8], pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'"' => skip_string(bytes, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = skip_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = pos;
            while i < bytes.len() && !matches!(bytes[i], b',' | b'}' | b']') {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str = "{\n  \"version\": \"1\",\n  \"nodes\": [\n    {\"id\": \"a\"},\n    {\"id\": \"b\", \"config\": {\"provider\": \"x\"}}\n  ]\n}";

    #[test]
    fn finds_nested_member_key() {
        assert_eq!(locate(DOC, "nodes[1].config.provider"), Some((5, 28)));
        assert_eq!(locate(DOC, "version"), Some((2, 3)));
    }

    #[test]
    fn finds_array_element() {
        assert_eq!(locate(DOC, "nodes[0]"), Some((4, 5)));
    }

    #[test]
    fn missing_path_is_none() {
        assert_eq!(locate(DOC, "nodes[7]"), None);
        assert_eq!(locate(DOC, "nope"), None);
    }
}
