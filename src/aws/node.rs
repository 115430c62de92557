//! An ordered document that renders as commented YAML or as JSON: the one model behind both
//! forms of `aws template`. serde_json's maps are sorted (its `preserve_order` feature would change
//! every map in the crate, the request path's included), and a CloudFormation template reads best
//! in its own order: Type before Properties, Allow before Deny.

use std::fmt::Write as _;

/// A value: a scalar, a list, or a map whose entries keep their order and may carry a comment.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<Node>),
    Map(Map),
}

/// Map entries in the order they were added. A comment is printed above its entry in YAML and
/// left out of JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<Entry>,
    pending_comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    comment: Option<String>,
    value: Node,
}

impl Map {
    pub fn new() -> Self {
        Map::default()
    }

    /// The comment of the next entry (several lines allowed).
    pub(crate) fn comment(mut self, text: impl Into<String>) -> Self {
        self.pending_comment = Some(text.into());
        self
    }

    /// Adds an entry (and the pending comment with it).
    pub fn entry(mut self, key: impl Into<String>, value: impl Into<Node>) -> Self {
        self.push(key, value);
        self
    }

    /// Adds an entry in place.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Node>) {
        self.entries.push(Entry {
            key: key.into(),
            comment: self.pending_comment.take(),
            value: value.into(),
        });
    }

    /// Adds an entry with its comment, in place.
    pub(crate) fn push_commented(
        &mut self,
        comment: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<Node>,
    ) {
        self.pending_comment = Some(comment.into());
        self.push(key, value);
    }

    /// Moves `other`'s entries (with their comments) to the end of this map.
    pub fn append(&mut self, other: Map) {
        self.entries.extend(other.entries);
    }
}

impl From<Map> for Node {
    fn from(m: Map) -> Node {
        Node::Map(m)
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Node {
        Node::Str(s.to_string())
    }
}

impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(s)
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::Bool(b)
    }
}

impl From<i64> for Node {
    fn from(i: i64) -> Node {
        Node::Int(i)
    }
}

impl<T: Into<Node>> From<Vec<T>> for Node {
    fn from(items: Vec<T>) -> Node {
        Node::List(items.into_iter().map(Into::into).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// Pretty JSON (two-space indentation), comments left out, entries in their order.
pub(crate) fn to_json(root: &Map) -> String {
    let mut out = String::new();
    json_map(&mut out, root, 0);
    out.push('\n');
    out
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn json_node(out: &mut String, node: &Node, indent: usize) {
    let pad = |n: usize| " ".repeat(n);
    match node {
        Node::Str(s) => out.push_str(&json_string(s)),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::List(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                json_node(out, item, indent + 2);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Node::Map(m) => json_map(out, m, indent),
    }
}

fn json_map(out: &mut String, map: &Map, indent: usize) {
    if map.entries.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, e) in map.entries.iter().enumerate() {
        let _ = write!(out, "{}{}: ", " ".repeat(indent + 2), json_string(&e.key));
        json_node(out, &e.value, indent + 2);
        out.push_str(if i + 1 < map.entries.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str(&" ".repeat(indent));
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// YAML
// ---------------------------------------------------------------------------------------------

/// Block-style YAML with the comments, `header` first (as `#` lines). A commented entry after
/// the first of its map gets a blank line above it, so that sections stand apart.
pub(crate) fn to_yaml(header: &str, root: &Map) -> String {
    let mut out = String::new();
    comment_lines(&mut out, header, 0);
    yaml_map(&mut out, root, 0);
    out
}

/// A scalar as YAML: plain when it cannot be read as anything but this string (letters, digits
/// and `_.:/-`, starting with a letter, not a YAML 1.1 boolean or null word), else double-quoted
/// with JSON's escapes (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(s: &str) -> String {
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf",
    ];
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
        && !s.ends_with(':')
        && !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w));
    if plain {
        s.to_string()
    } else {
        json_string(s)
    }
}

/// Comment lines wrap at this column; a line of the text is a paragraph, an indented one is
/// kept as it is.
const COMMENT_WIDTH: usize = 100;

fn comment_lines(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    let width = COMMENT_WIDTH.saturating_sub(indent + 2).max(40);
    for paragraph in text.lines() {
        let paragraph = paragraph.trim_end();
        if paragraph.is_empty() {
            let _ = writeln!(out, "{pad}#");
            continue;
        }
        // An indented line (a command, an example) is kept as it is.
        if paragraph.starts_with(' ') {
            let _ = writeln!(out, "{pad}# {paragraph}");
            continue;
        }
        // A list item's continuation lines line up with its text.
        let hang = if paragraph.starts_with("- ") {
            "  "
        } else {
            ""
        };
        let mut line = String::new();
        for word in paragraph.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                let _ = writeln!(out, "{pad}# {line}");
                line = hang.to_string();
            } else if !line.is_empty() && line != hang {
                line.push(' ');
            }
            line.push_str(word);
        }
        let _ = writeln!(out, "{pad}# {line}");
    }
}

/// A value that fits on its key's line: a scalar or an empty collection.
fn inline(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some(yaml_scalar(s)),
        Node::Bool(b) => Some(b.to_string()),
        Node::Int(i) => Some(i.to_string()),
        Node::List(items) if items.is_empty() => Some("[]".into()),
        Node::Map(m) if m.entries.is_empty() => Some("{}".into()),
        Node::List(_) | Node::Map(_) => None,
    }
}

fn yaml_map(out: &mut String, map: &Map, indent: usize) {
    for (i, e) in map.entries.iter().enumerate() {
        if let Some(c) = &e.comment {
            if i > 0 {
                out.push('\n');
            }
            comment_lines(out, c, indent);
        }
        yaml_entry(out, e, indent, &" ".repeat(indent));
    }
}

/// One entry; `lead` is what stands before the key on its line (its indentation, or `- ` for
/// the first entry of a map in a list).
fn yaml_entry(out: &mut String, e: &Entry, indent: usize, lead: &str) {
    let key = yaml_scalar(&e.key);
    match (&e.value, inline(&e.value)) {
        (_, Some(v)) => {
            let _ = writeln!(out, "{lead}{key}: {v}");
        }
        (Node::Map(m), None) => {
            let _ = writeln!(out, "{lead}{key}:");
            yaml_map(out, m, indent + 2);
        }
        (Node::List(items), None) => {
            let _ = writeln!(out, "{lead}{key}:");
            yaml_list(out, items, indent + 2);
        }
        (Node::Str(_) | Node::Bool(_) | Node::Int(_), None) => {
            unreachable!("scalars are inline")
        }
    }
}

fn yaml_list(out: &mut String, items: &[Node], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        match (item, inline(item)) {
            (_, Some(v)) => {
                let _ = writeln!(out, "{pad}- {v}");
            }
            (Node::Map(m), None) => {
                // The first entry shares the dash's line; its comment goes above the dash.
                for (i, e) in m.entries.iter().enumerate() {
                    if i == 0 {
                        if let Some(c) = &e.comment {
                            comment_lines(out, c, indent);
                        }
                        yaml_entry(out, e, indent + 2, &format!("{pad}- "));
                    } else {
                        if let Some(c) = &e.comment {
                            comment_lines(out, c, indent + 2);
                        }
                        yaml_entry(out, e, indent + 2, &" ".repeat(indent + 2));
                    }
                }
            }
            (Node::List(inner), None) => {
                let _ = writeln!(out, "{pad}-");
                yaml_list(out, inner, indent + 2);
            }
            (Node::Str(_) | Node::Bool(_) | Node::Int(_), None) => {
                unreachable!("scalars are inline")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map {
        Map::new()
            .comment("the first\n\nthird line")
            .entry("Type", "AWS::ApiGateway::Method")
            .entry(
                "Properties",
                Map::new()
                    .entry("Pattern", "4\\d{2}")
                    .entry("Quote", "'application/x-amz-json-1.1'")
                    .entry("Yes", "yes")
                    .entry("Number", "200")
                    .entry("Count", 3i64)
                    .entry("Flag", false)
                    .entry("Empty", Map::new())
                    .entry("None", Vec::<Node>::new())
                    .comment("a list of maps")
                    .entry(
                        "Statement",
                        vec![
                            Node::from(
                                Map::new()
                                    .comment("allow")
                                    .entry("Effect", "Allow")
                                    .comment("everyone")
                                    .entry("Principal", "*"),
                            ),
                            Node::from(vec!["a", "b: c"]),
                            Node::from("ends:"),
                        ],
                    ),
            )
    }

    #[test]
    fn yaml_keeps_order_quotes_what_needs_it_and_places_comments() {
        let yaml = to_yaml("header", &sample());
        let expected = r#"# header
# the first
#
# third line
Type: AWS::ApiGateway::Method
Properties:
  Pattern: "4\\d{2}"
  Quote: "'application/x-amz-json-1.1'"
  "Yes": "yes"
  Number: "200"
  Count: 3
  Flag: false
  Empty: {}
  None: []

  # a list of maps
  Statement:
    # allow
    - Effect: Allow
      # everyone
      Principal: "*"
    -
      - a
      - "b: c"
    - "ends:"
"#;
        assert_eq!(yaml, expected);
    }

    #[test]
    fn comments_wrap_at_the_width_and_list_items_hang() {
        let mut out = String::new();
        let long = format!("- {}", ["word"; 30].join(" "));
        comment_lines(&mut out, &long, 4);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines.iter().all(|l| l.len() <= COMMENT_WIDTH), "{out}");
        assert!(lines[0].starts_with("    # - word word"));
        assert!(lines[1].starts_with("    #   word word"), "{out}");
        assert_eq!(out.matches("word").count(), 30);
    }

    #[test]
    fn yaml_scalar_quotes_every_ambiguous_word() {
        for s in [
            "",
            "true",
            "False",
            "NO",
            "y",
            "null",
            "1",
            "0x1f",
            "-1",
            ".inf",
            "a b",
            "a#b",
            "@x",
            "${AWS::Region}",
            "a: b",
            "é",
        ] {
            assert!(yaml_scalar(s).starts_with('"'), "{s:?} must be quoted");
        }
        for s in [
            "Allow",
            "execute-api:Invoke",
            "Fn::Sub",
            "arn:aws:iam::1:role/x",
        ] {
            assert_eq!(yaml_scalar(s), s);
        }
    }

    #[test]
    fn json_is_the_same_content_in_order_without_comments() {
        let json = to_json(&sample());
        assert!(!json.contains("allow\"") && !json.contains('#'));
        let type_at = json.find("\"Type\"").unwrap();
        let props_at = json.find("\"Properties\"").unwrap();
        assert!(type_at < props_at);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["Properties"]["Pattern"], "4\\d{2}");
        assert_eq!(v["Properties"]["Count"], 3);
        assert_eq!(v["Properties"]["Empty"], serde_json::json!({}));
        assert_eq!(v["Properties"]["Statement"][0]["Principal"], "*");
        assert_eq!(v["Properties"]["Statement"][1][1], "b: c");
    }
}
