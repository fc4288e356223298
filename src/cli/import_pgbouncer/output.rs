//! The pgsluice TOML the importer writes: sections of keys in a fixed order, with comments
//! for what could not be carried over.

use toml::Value;

/// One `[header]` table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The header as written between brackets, e.g. `pooler` or `databases.app`.
    pub header: String,
    /// Comment lines written above the header (without `# `).
    pub comments: Vec<String>,
    /// Keys in order; a later `set` of the same key replaces the value in place.
    pub keys: Vec<(String, Value)>,
}

impl Table {
    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: Value) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.keys.push((key.to_string(), value)),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// Comment lines at the top.
    pub preamble: Vec<String>,
    pub tables: Vec<Table>,
    /// Comment blocks at the end (entries pgsluice cannot take yet, kept for the reader).
    pub trailer: Vec<String>,
}

impl Doc {
    /// The table `header`, created (at the end) when missing.
    pub fn table(&mut self, header: &str) -> &mut Table {
        let index = match self.tables.iter().position(|t| t.header == header) {
            Some(i) => i,
            None => {
                self.tables.push(Table {
                    header: header.to_string(),
                    ..Table::default()
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[index]
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.preamble {
            out.push_str(&comment(c));
        }
        for t in &self.tables {
            out.push('\n');
            for c in &t.comments {
                out.push_str(&comment(c));
            }
            out.push_str(&format!("[{}]\n", t.header));
            for (k, v) in &t.keys {
                out.push_str(&format!("{} = {}\n", key(k), v));
            }
        }
        if !self.trailer.is_empty() {
            out.push('\n');
        }
        for c in &self.trailer {
            out.push_str(&comment(c));
        }
        out
    }
}

fn comment(text: &str) -> String {
    if text.is_empty() {
        "#\n".to_string()
    } else {
        format!("# {text}\n")
    }
}

/// A key as TOML wants it: bare when it can be, quoted otherwise.
pub fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// A table header for `[databases.NAME]` / `[users.NAME]` with NAME quoted when needed.
pub fn header(section: &str, name: &str) -> String {
    format!("{section}.{}", key(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_toml() {
        let mut d = Doc::default();
        d.preamble.push("imported".into());
        d.table("pooler").set("listen_port", Value::Integer(6432));
        d.table("pooler").set("listen_port", Value::Integer(6433));
        let t = d.table(&header("databases", "my db"));
        t.comments.push("a note".into());
        t.set("host", Value::String("h\"1".into()));
        d.trailer.push("[databases.\"*\"]".into());
        let text = d.render();
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(v["pooler"]["listen_port"].as_integer(), Some(6433));
        assert_eq!(v["databases"]["my db"]["host"].as_str(), Some("h\"1"));
        assert!(text.contains("# a note\n[databases.\"my db\"]\n"), "{text}");
    }
}
