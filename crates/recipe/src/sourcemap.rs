//! Key path to line: where in a recipe file a value was written.
//!
//! A [`SourceMap`] is built once per file from a spanned parse and answers two
//! questions: on which line is the key path `layer[1].systemd.enable[0]`
//! written, and which key path does a byte offset (from a parse error) fall
//! into. Key paths use the same spelling everywhere in nodeimg: bare keys as
//! they are, other keys in double quotes (`sysctl.set."net.ipv4.ip_forward"`),
//! array elements as `[i]`, the `[[layer]]` array indexed from 0 within the
//! file.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// Spell one key as a key path segment: bare if it only holds
/// `A-Za-z0-9_-`, quoted otherwise.
pub fn key_segment(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// Join a key to a path prefix.
pub fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        key_segment(k)
    } else {
        format!("{prefix}.{}", key_segment(k))
    }
}

/// The parent of a key path (`a.b[0]` -> `a.b`, `a.b` -> `a`, `a` -> ``);
/// `None` for the empty path.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let bytes = path.as_bytes();
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    // Find the last '.' outside quotes.
    let mut in_quote = false;
    let mut last_dot = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'.' if !in_quote => last_dot = Some(i),
            _ => {}
        }
        i += 1;
    }
    Some(match last_dot {
        Some(i) => &path[..i],
        None => "",
    })
}

#[derive(Clone, Debug)]
struct Entry {
    path: String,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// Key paths of one file with their spans.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    entries: Vec<Entry>,
    line_starts: Vec<usize>,
}

impl SourceMap {
    /// Build the map of `text`. A text that does not parse gives a map that
    /// only converts offsets to lines.
    pub fn new(text: &str) -> SourceMap {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut m = SourceMap {
            entries: Vec::new(),
            line_starts,
        };
        if let Ok(doc) = ImDocument::parse(text.to_string()) {
            m.walk_table(doc.as_table(), "");
        }
        m
    }

    fn push(&mut self, path: String, key: Option<Range<usize>>, value: Option<Range<usize>>) {
        self.entries.push(Entry { path, key, value });
    }

    fn walk_table(&mut self, t: &Table, prefix: &str) {
        for (k, _) in t.iter() {
            if let Some((key, item)) = t.get_key_value(k) {
                let path = join(prefix, k);
                self.walk_item(item, path, key.span());
            }
        }
    }

    fn walk_item(&mut self, item: &Item, path: String, key: Option<Range<usize>>) {
        match item {
            Item::None => {}
            Item::Value(v) => self.walk_value(v, path, key),
            Item::Table(t) => {
                self.push(path.clone(), key, t.span());
                self.walk_table(t, &path);
            }
            Item::ArrayOfTables(a) => {
                self.push(path.clone(), key, a.span());
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.push(p.clone(), t.span(), t.span());
                    self.walk_table(t, &p);
                }
            }
        }
    }

    fn walk_value(&mut self, v: &Value, path: String, key: Option<Range<usize>>) {
        self.push(path.clone(), key, v.span());
        match v {
            Value::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    self.walk_value(e, format!("{path}[{i}]"), None);
                }
            }
            Value::InlineTable(t) => {
                for (k, _) in t.iter() {
                    if let Some((key, item)) = t.get_key_value(k) {
                        self.walk_item(item, join(&path, k), key.span());
                    }
                }
            }
            _ => {}
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        (line + 1, offset.saturating_sub(start) + 1)
    }

    fn offset_of(&self, path: &str) -> Option<usize> {
        let e = self.entries.iter().find(|e| e.path == path)?;
        e.key.as_ref().or(e.value.as_ref()).map(|r| r.start)
    }

    /// Line and column where `path` is written; if it is not written (a
    /// missing key, or a default), the nearest written ancestor.
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(o) = self.offset_of(p) {
                return Some(self.line_col(o));
            }
            p = parent(p)?;
            if p.is_empty() {
                return None;
            }
        }
    }

    /// The innermost key path whose value contains all of `range` (the
    /// table a missing key belongs to); `None` for the document root.
    pub(crate) fn path_containing(&self, range: Range<usize>) -> Option<String> {
        self.entries
            .iter()
            .filter_map(|e| {
                let v = e.value.as_ref()?;
                (v.start <= range.start && range.end <= v.end && !v.is_empty())
                    .then_some((e, v.len()))
            })
            .min_by(|a, b| a.1.cmp(&b.1).then(b.0.path.len().cmp(&a.0.path.len())))
            .map(|(e, _)| e.path.clone())
    }

    /// The innermost key path whose key or value contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<String> {
        let mut best: Option<(&Entry, usize)> = None;
        for e in &self.entries {
            for r in [&e.key, &e.value].into_iter().flatten() {
                let contains = r.contains(&offset) || (r.is_empty() && r.start == offset);
                if contains {
                    let len = r.len();
                    let better = match best {
                        None => true,
                        Some((b, bl)) => len < bl || (len == bl && e.path.len() > b.path.len()),
                    };
                    if better {
                        best = Some((e, len));
                    }
                }
            }
        }
        best.map(|(e, _)| e.path.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEXT: &str = r#"include = ["a.toml"]

[image]
name = "x"

[[layer]]
name = "one"
sysctl = { file = "f", set = { "net.ipv4.ip_forward" = 1 } }

[[layer]]
name = "two"
systemd.enable = [
  "a.service",
  "b.service",
]
"#;

    #[test]
    fn locates_key_paths() {
        let m = SourceMap::new(TEXT);
        assert_eq!(m.locate("include[0]"), Some((1, 12)));
        assert_eq!(m.locate("image.name"), Some((4, 1)));
        assert_eq!(m.locate("layer[0]").map(|l| l.0), Some(6));
        assert_eq!(
            m.locate("layer[0].sysctl.set.\"net.ipv4.ip_forward\"")
                .map(|l| l.0),
            Some(8)
        );
        assert_eq!(m.locate("layer[1].systemd.enable[1]"), Some((14, 3)));
        // Not written: the nearest ancestor.
        assert_eq!(m.locate("layer[1].systemd.mask[0]").map(|l| l.0), Some(12));
        assert_eq!(m.locate("nothing.here"), None);
    }

    #[test]
    fn finds_path_at_offset() {
        let m = SourceMap::new(TEXT);
        let off = TEXT.find("\"b.service\"").unwrap() + 2;
        assert_eq!(
            m.path_at(off).as_deref(),
            Some("layer[1].systemd.enable[1]")
        );
        let off = TEXT.find("name = \"two\"").unwrap();
        assert_eq!(m.path_at(off).as_deref(), Some("layer[1].name"));
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[0]"), Some("a.b"));
        assert_eq!(parent("a.\"x.y\""), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
        assert_eq!(
            key_segment("net.ipv4.ip_forward"),
            "\"net.ipv4.ip_forward\""
        );
        assert_eq!(key_segment("exec-opts"), "exec-opts");
    }
}
