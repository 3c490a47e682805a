//! The pre-defined log queries of `observability/loki/queries.json`, run over the lines a
//! test captured from the binary.
//!
//! The matcher knows exactly the LogQL subset of the file's `grammar` note, and rejects
//! anything else: one stream selector of `label="value"` / `label=~"regex"` matchers; line
//! filters `|= "text"`; exactly one `| json`; label filters `| name="value"` /
//! `| name=~"regex"`. Regexes are anchored at both ends and `.` matches a newline, as
//! in Loki (RE2 syntax, which the `regex` crate follows).
//!
//! A captured line's stream labels are those the log shipper keeps: `service` and `level`
//! from the line's own JSON fields, and `namespace` ([`NAMESPACE`], as for the local
//! stack). A line that is no JSON object (a `stderr:` line) carries none of them.
//! `| json` extracts the line's top-level fields; one whose name is a stream label is
//! named `<name>_extracted`, as Loki does, so a filter on `level` or `service` after it
//! still reads the stream label (the same value).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use super::TestApp;

/// The `namespace` stream label of every captured line.
pub const NAMESPACE: &str = "local";

/// The stream labels a shipped line carries.
const STREAM_LABELS: [&str; 3] = ["namespace", "service", "level"];

/// How a label is compared.
#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Re(Regex),
}

/// `label="value"` or `label=~"regex"`.
#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: Op,
}

impl Matcher {
    /// Whether the label's value (`""` when absent, as in Loki) satisfies the matcher.
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.label).map_or("", String::as_str);
        match &self.op {
            Op::Eq(v) => value == v,
            Op::Re(re) => re.is_match(value),
        }
    }
}

/// A parsed query of the subset.
#[derive(Debug, Clone)]
pub struct Query {
    selector: Vec<Matcher>,
    line_filters: Vec<String>,
    label_filters: Vec<Matcher>,
}

/// Reads the query text; an error names what is outside the subset.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn done(&mut self) -> bool {
        self.skip_space();
        self.rest().is_empty()
    }

    /// Consumes `token` (after spaces) if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{token}`")))
        }
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at {:?} in {:?}", self.rest(), self.text)
    }

    /// A label or field name: `[A-Za-z_][A-Za-z0-9_]*`.
    fn name(&mut self) -> Result<String, String> {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(self.error("expected a name"));
        }
        self.at += len;
        Ok(rest[..len].to_owned())
    }

    /// A double-quoted string with Go's escapes `\"`, `\\`, `\n`, `\t`, or a backquoted
    /// raw string.
    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let rest = self.rest();
        if let Some(raw) = rest.strip_prefix('`') {
            let end = raw
                .find('`')
                .ok_or_else(|| self.error("unterminated raw string"))?;
            self.at += end + 2;
            return Ok(raw[..end].to_owned());
        }
        let Some(body) = rest.strip_prefix('"') else {
            return Err(self.error("expected a string"));
        };
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    other => return Err(self.error(&format!("unsupported escape {other:?}"))),
                },
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }

    /// `name="v"` or `name=~"re"` (no `!=`, `!~`).
    fn matcher(&mut self) -> Result<Matcher, String> {
        let label = self.name()?;
        self.skip_space();
        if self.rest().starts_with("!=") || self.rest().starts_with("!~") {
            return Err(self.error("negative matchers are outside the subset"));
        }
        let op = if self.eat("=~") {
            let re = self.string()?;
            // Loki (like Prometheus) anchors label regexes at both ends.
            let anchored = format!("^(?s:{re})$");
            Op::Re(Regex::new(&anchored).map_err(|e| self.error(&format!("bad regex: {e}")))?)
        } else if self.eat("=") {
            Op::Eq(self.string()?)
        } else {
            return Err(self.error("expected `=` or `=~`"));
        };
        Ok(Matcher { label, op })
    }
}

/// Parses `query` (variables already substituted).
pub fn parse(query: &str) -> Result<Query, String> {
    let mut r = Reader { text: query, at: 0 };
    r.expect("{")?;
    let mut selector = Vec::new();
    loop {
        let m = r.matcher()?;
        if !STREAM_LABELS.contains(&m.label.as_str()) {
            return Err(r.error(&format!("`{}` is not a stream label", m.label)));
        }
        selector.push(m);
        if r.eat("}") {
            break;
        }
        r.expect(",")?;
    }
    let mut line_filters = Vec::new();
    while r.eat("|=") {
        line_filters.push(r.string()?);
    }
    r.expect("|")?;
    if r.name()? != "json" {
        return Err(r.error("expected `json`: the one parser of the subset"));
    }
    let mut label_filters = Vec::new();
    while !r.done() {
        if r.rest().starts_with("|=") {
            return Err(r.error("a line filter after `| json` is outside the subset"));
        }
        r.expect("|")?;
        let m = r.matcher()?;
        if m.label == "json" {
            return Err(r.error("a second `| json`"));
        }
        label_filters.push(m);
    }
    Ok(Query {
        selector,
        line_filters,
        label_filters,
    })
}

/// Replaces each `$name` of `query` by its value in `vars`; panics on a variable without a
/// value, so a query never runs with one left in.
pub fn substitute(query: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(after.len());
        let name = &after[..len];
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no value for ${name} in {query:?} (given {vars:?})"));
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A JSON value as `| json` extracts it: strings as they are, numbers and booleans as
/// their text; `None` for what it skips (objects are flattened by the caller, arrays and
/// nulls are left out).
fn extracted(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A JSON key as a label name: anything but `[A-Za-z0-9_]` becomes `_`.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Adds `object`'s fields to `labels` under `prefix`, nested objects flattened with `_`.
fn extract(
    prefix: &str,
    object: &serde_json::Map<String, Value>,
    labels: &mut BTreeMap<String, String>,
) {
    for (key, value) in object {
        let name = format!("{prefix}{}", label_name(key));
        if let Value::Object(inner) = value {
            extract(&format!("{name}_"), inner, labels);
        } else if let Some(text) = extracted(value) {
            let name = if STREAM_LABELS.contains(&name.as_str()) {
                format!("{name}_extracted")
            } else {
                name
            };
            labels.insert(name, text);
        }
    }
}

impl Query {
    /// Whether `line`, shipped with `namespace`, is one this query returns.
    pub fn matches(&self, namespace: &str, line: &str) -> bool {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let mut labels = BTreeMap::new();
        labels.insert("namespace".to_owned(), namespace.to_owned());
        for stream in ["service", "level"] {
            if let Some(v) = fields.get(stream).and_then(extracted) {
                labels.insert(stream.to_owned(), v);
            }
        }
        if !self.selector.iter().all(|m| m.holds(&labels)) {
            return false;
        }
        if !self
            .line_filters
            .iter()
            .all(|text| line.contains(text.as_str()))
        {
            return false;
        }
        extract("", &fields, &mut labels);
        self.label_filters.iter().all(|m| m.holds(&labels))
    }
}

/// `observability/loki/queries.json`.
pub fn queries_file() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/observability/loki/queries.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The entry of queries.json with this id.
pub fn entry(id: &str) -> Value {
    queries_file()["queries"]
        .as_array()
        .expect("queries.json has a queries array")
        .iter()
        .find(|q| q["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("queries.json has no query {id:?}"))
}

/// The query `id` with its variables substituted: `$namespace` is [`NAMESPACE`] and
/// `$service` is `.+` (all) unless `vars` names them. Returns the text and the parse.
fn prepared(id: &str, vars: &[(&str, &str)]) -> (String, Query) {
    let entry = entry(id);
    let listed: Vec<&str> = entry["variables"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, _) in vars {
        assert!(
            listed.contains(name),
            "query {id} has no variable ${name} (it has {listed:?})"
        );
    }
    let mut all: Vec<(&str, &str)> = vars.to_vec();
    for (name, default) in [("namespace", NAMESPACE), ("service", ".+")] {
        if !all.iter().any(|(k, _)| *k == name) {
            all.push((name, default));
        }
    }
    let text = substitute(entry["query"].as_str().expect("a query text"), &all);
    let query = parse(&text).unwrap_or_else(|e| panic!("query {id}: {e}"));
    (text, query)
}

/// Whether the query `id` (variables as for [`assert_query_finds`]) returns `line`.
pub fn query_matches(id: &str, vars: &[(&str, &str)], line: &str) -> bool {
    prepared(id, vars).1.matches(NAMESPACE, line)
}

/// Every line of `logs` the query `id` returns, as JSON, in order.
pub fn query_lines(logs: &[String], id: &str, vars: &[(&str, &str)]) -> Vec<Value> {
    let (_, query) = prepared(id, vars);
    logs.iter()
        .filter(|l| query.matches(NAMESPACE, l))
        .map(|l| serde_json::from_str(l).expect("a matched line is JSON"))
        .collect()
}

/// Asserts that the query `id` of queries.json returns a line of `logs` and that the line
/// carries the fields the entry lists; returns the first such line. Unnamed variables:
/// `$namespace` is [`NAMESPACE`], `$service` all services. A failure shows the query
/// and the lines that came closest (those holding the entry's `expect`, or all of them).
#[track_caller]
pub fn assert_query_finds(logs: &[String], id: &str, vars: &[(&str, &str)]) -> Value {
    let (text, query) = prepared(id, vars);
    let Some(line) = logs.iter().find(|l| query.matches(NAMESPACE, l)) else {
        let expect = entry(id)["expect"].as_str().map(str::to_owned);
        let candidates: Vec<&String> = match &expect {
            Some(e) => logs.iter().filter(|l| l.contains(e.as_str())).collect(),
            None => logs.iter().collect(),
        };
        panic!(
            "query {id} found nothing\nquery: {text}\ncandidate lines ({} of {}{}):\n{}",
            candidates.len(),
            logs.len(),
            expect.map_or(String::new(), |e| format!(", those holding {e:?}")),
            candidates
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    let found: Value = serde_json::from_str(line).expect("a matched line is JSON");
    let entry = entry(id);
    for field in entry["fields"].as_array().into_iter().flatten() {
        let field = field.as_str().expect("field names are strings");
        assert!(
            found.get(field).is_some_and(|v| !v.is_null()),
            "query {id} found a line without the field {field:?} queries.json promises: {line}"
        );
    }
    found
}

/// [`assert_query_finds`] on `app`'s logs, waiting up to 10 s for the line to be written.
pub async fn query_finds(app: &TestApp, id: &str, vars: &[(&str, &str)]) -> Value {
    let (_, query) = prepared(id, vars);
    super::eventually(Duration::from_secs(10), || async {
        app.logs()
            .iter()
            .any(|l| query.matches(NAMESPACE, l))
            .then_some(())
    })
    .await;
    assert_query_finds(&app.logs(), id, vars)
}

/// `line` (a JSON object) with `key` set to `value`: a near miss for a negative check.
pub fn with_field(line: &Value, key: &str, value: &str) -> String {
    let mut changed = line.clone();
    changed[key] = Value::String(value.to_owned());
    changed.to_string()
}
