//! Structural check of a spanned YAML tree against the JSON Schema of a spec type.
//!
//! serde stops at the first problem in a file and has no spans for values; users want every
//! problem at once with a label under the text. So the schema that schemars derives from the
//! spec types (the same one committed under `schema/` for editors) is walked here over the
//! [`yaml::Node`](super::yaml::Node) tree. The walk reports every unknown key (with a
//! did-you-mean hint), missing key, wrong type and out-of-range number, and builds the JSON
//! value serde then deserializes — typed by the schema, so `PORT: 8080` is the string `"8080"`
//! where a string is expected and the integer `8080` where an integer is.
//!
//! Only the subset of JSON Schema that schemars emits for berth's types is understood:
//! `$ref` into `$defs`, `type`, `anyOf`/`oneOf`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `minimum`, `maximum`.

use serde_json::{Map, Value as Json};

use super::source::Span;
use super::yaml::{Node, Value};

/// One structural problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub span: Span,
    /// What, lowercase.
    pub message: String,
    /// Label under the text.
    pub label: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// A second place that explains the first (a duplicate key's first occurrence).
    pub related: Option<(Span, String)>,
}

/// Check `node` against `schema` (compiled from a root schema with `$defs`).
///
/// Returns the JSON value to deserialize and every problem found; the value is only
/// meaningful when the problem list is empty.
#[must_use]
pub fn check(node: &Node, schema: &Compiled) -> (Json, Vec<Problem>) {
    let mut problems = Vec::new();
    let head = first_line(node.span);
    let value = schema.walk(node, schema.root, head, &mut problems);
    (value, problems)
}

fn first_line(span: Span) -> Span {
    Span::new(span.start, span.start)
}

/// What a YAML node is, in schema words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Integer,
    Number,
    String,
    Object,
    Array,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Null => "nothing",
            Kind::Bool => "a boolean",
            Kind::Integer => "an integer",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Object => "a mapping",
            Kind::Array => "a list",
        }
    }
}

fn kind_of(node: &Node) -> Kind {
    match &node.value {
        Value::Empty => Kind::Null,
        Value::Seq(_) => Kind::Array,
        Value::Map(_) => Kind::Object,
        Value::Scalar { text, plain } => {
            if !plain {
                Kind::String
            } else {
                plain_scalar_kind(text)
            }
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar_kind(text: &str) -> Kind {
    match text {
        "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return Kind::Bool,
        _ => {}
    }
    if parse_int(text).is_some() {
        return Kind::Integer;
    }
    if parse_float(text).is_some() {
        return Kind::Number;
    }
    Kind::String
}

fn parse_int(text: &str) -> Option<i64> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    if let Some(hex) = digits.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| v * sign);
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(|v| v * sign);
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(|v| v * sign)
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let ok = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if ok { text.parse::<f64>().ok() } else { None }
}

/// A schema made ready for walking many files: every subschema resolved (`$ref` followed)
/// and its keywords read once, so checking a node does no lookups in JSON maps. Built once
/// per `validate` and shared by every file (and thread).
pub struct Compiled {
    subs: Vec<Sub>,
    root: usize,
}

/// One resolved subschema.
#[derive(Default)]
struct Sub {
    /// `anyOf` / `oneOf` branches.
    any_of: Option<Vec<usize>>,
    /// The kinds it accepts (the union of the branches' for `anyOf`).
    accepted: Vec<Kind>,
    /// The literal schema `true` (a property so typed is taken as plain JSON).
    anything: bool,
    /// `properties`, sorted by name.
    properties: Option<Vec<(String, usize)>>,
    /// The names of `properties`, in the same order (for did-you-mean hints).
    property_names: Vec<String>,
    /// `additionalProperties`.
    additional: Additional,
    /// `required` keys and the hint for each (the property's description).
    required: Vec<(String, Option<String>)>,
    /// `items` (the schema `true` when absent).
    items: usize,
    /// `enum` strings, or the `const` string.
    allowed: Option<Vec<String>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

#[derive(Default, Clone, Copy)]
enum Additional {
    /// Absent or `true`: unknown keys are kept as plain JSON.
    #[default]
    Plain,
    /// `false`: unknown keys are problems.
    Forbidden,
    /// A schema for every other key.
    Schema(usize),
}

/// Index of the literal `true` schema in every [`Compiled`].
const ANYTHING: usize = 0;

impl Compiled {
    /// Compile a root schema (with `$defs`).
    #[must_use]
    pub fn new(schema: Json) -> Self {
        let mut builder = Build {
            root: &schema,
            subs: vec![Sub {
                anything: true,
                ..Sub::default()
            }],
            seen: std::collections::HashMap::new(),
        };
        let root = builder.compile(&schema);
        Compiled {
            subs: builder.subs,
            root,
        }
    }
}

struct Build<'a> {
    root: &'a Json,
    subs: Vec<Sub>,
    /// Resolved subschemas already compiled, by address (schemas may refer to themselves).
    seen: std::collections::HashMap<*const Json, usize>,
}

impl<'a> Build<'a> {
    fn resolve(&self, schema: &'a Json) -> &'a Json {
        let mut schema = schema;
        // References are a short chain at most; the bound guards against a cycle.
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Json::as_str) else {
                break;
            };
            let Some(name) = reference.strip_prefix("#/$defs/") else {
                break;
            };
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn compile(&mut self, schema: &'a Json) -> usize {
        if schema == &Json::Bool(true) {
            return ANYTHING;
        }
        let schema = self.resolve(schema);
        let key: *const Json = schema;
        if let Some(&index) = self.seen.get(&key) {
            return index;
        }
        let index = self.subs.len();
        self.subs.push(Sub::default());
        self.seen.insert(key, index);
        let mut sub = Sub {
            items: ANYTHING,
            ..Sub::default()
        };
        if let Some(branches) = any_of(schema) {
            let compiled: Vec<usize> = branches.iter().map(|b| self.compile(b)).collect();
            for &branch in &compiled {
                for kind in self.accepted_of(branch) {
                    if !sub.accepted.contains(&kind) {
                        sub.accepted.push(kind);
                    }
                }
            }
            sub.any_of = Some(compiled);
            self.subs[index] = sub;
            return index;
        }
        match schema.get("type") {
            Some(Json::String(t)) => sub.accepted.extend(kind_from_name(t)),
            Some(Json::Array(types)) => sub.accepted.extend(
                types
                    .iter()
                    .filter_map(Json::as_str)
                    .flat_map(kind_from_name),
            ),
            _ => {}
        }
        if sub.accepted.is_empty() {
            if schema.get("enum").is_some() || schema.get("const").is_some() {
                sub.accepted.push(Kind::String);
            } else if schema.get("properties").is_some() {
                sub.accepted.push(Kind::Object);
            }
        }
        let properties = schema.get("properties").and_then(Json::as_object);
        if let Some(properties) = properties {
            let mut compiled = Vec::new();
            for (name, property) in properties {
                compiled.push((name.clone(), self.compile(property)));
                sub.property_names.push(name.clone());
            }
            compiled.sort_by(|a, b| a.0.cmp(&b.0));
            sub.properties = Some(compiled);
        }
        sub.additional = match schema.get("additionalProperties") {
            Some(Json::Bool(false)) => Additional::Forbidden,
            Some(other) if other.is_object() => Additional::Schema(self.compile(other)),
            _ => Additional::Plain,
        };
        if let Some(required) = schema.get("required").and_then(Json::as_array) {
            for name in required.iter().filter_map(Json::as_str) {
                let hint = properties
                    .and_then(|p| p.get(name))
                    .and_then(|p| self.resolve(p).get("description").or(p.get("description")))
                    .and_then(Json::as_str)
                    .map(|d| format!("`{name}`: {}", d.trim_end_matches('.')));
                sub.required.push((name.to_string(), hint));
            }
        }
        if let Some(items) = schema.get("items") {
            sub.items = self.compile(items);
        }
        if let Some(values) = schema.get("enum").and_then(Json::as_array) {
            sub.allowed = Some(
                values
                    .iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect(),
            );
        } else if let Some(value) = schema.get("const").and_then(Json::as_str) {
            sub.allowed = Some(vec![value.to_string()]);
        }
        sub.minimum = schema.get("minimum").and_then(Json::as_f64);
        sub.maximum = schema.get("maximum").and_then(Json::as_f64);
        self.subs[index] = sub;
        index
    }

    /// The kinds a compiled subschema accepts; a subschema still being compiled (a cycle
    /// through `anyOf`) accepts none yet.
    fn accepted_of(&self, index: usize) -> Vec<Kind> {
        self.subs[index].accepted.clone()
    }
}

impl Compiled {
    fn walk(&self, node: &Node, at: usize, key_span: Span, out: &mut Vec<Problem>) -> Json {
        let schema = &self.subs[at];
        if let Some(branches) = &schema.any_of {
            return self.walk_any_of(node, schema, branches, key_span, out);
        }
        let kind = kind_of(node);
        let accepted = &schema.accepted;
        let is_accepted = |k: Kind| {
            accepted.is_empty()
                || accepted.contains(&k)
                || (k == Kind::Integer && accepted.contains(&Kind::Number))
        };
        // Scalars of any kind are acceptable where a string is expected: `PORT: 8080`.
        let as_string = accepted.contains(&Kind::String)
            && !is_accepted(kind)
            && matches!(kind, Kind::Integer | Kind::Number | Kind::Bool);
        if !is_accepted(kind) && !as_string {
            out.push(type_problem(node, kind, accepted, key_span));
            return Json::Null;
        }
        match (&node.value, kind) {
            (Value::Map(entries), _) => self.walk_object(node, entries, schema, key_span, out),
            (Value::Seq(items), _) => Json::Array(
                items
                    .iter()
                    .map(|item| self.walk(item, schema.items, item.span, out))
                    .collect(),
            ),
            (Value::Empty, _) => Json::Null,
            (Value::Scalar { text, .. }, _) if as_string || kind == Kind::String => {
                check_enum(node, text, schema, out);
                Json::String(text.clone())
            }
            (Value::Scalar { .. }, Kind::Null) => Json::Null,
            (Value::Scalar { text, .. }, Kind::Bool) => {
                Json::Bool(matches!(text.as_str(), "true" | "True" | "TRUE"))
            }
            (Value::Scalar { text, .. }, Kind::Integer) => {
                let value = parse_int(text).unwrap_or_default();
                check_range(node, value as f64, schema, out);
                Json::from(value)
            }
            (Value::Scalar { text, .. }, _) => {
                let value = parse_float(text).unwrap_or_default();
                check_range(node, value, schema, out);
                serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
            }
        }
    }

    fn walk_any_of(
        &self,
        node: &Node,
        schema: &Sub,
        branches: &[usize],
        key_span: Span,
        out: &mut Vec<Problem>,
    ) -> Json {
        let kind = kind_of(node);
        let mut best: Option<(Json, Vec<Problem>)> = None;
        let mut fits = 0;
        for &branch in branches {
            let accepted = &self.subs[branch].accepted;
            let fits_kind = accepted.contains(&kind)
                || (kind == Kind::Integer && accepted.contains(&Kind::Number))
                || (accepted.contains(&Kind::String)
                    && matches!(kind, Kind::Integer | Kind::Number | Kind::Bool));
            if !fits_kind {
                continue;
            }
            fits += 1;
            let mut problems = Vec::new();
            let value = self.walk(node, branch, key_span, &mut problems);
            if problems.is_empty() {
                return value;
            }
            let better = best
                .as_ref()
                .is_none_or(|(_, prev)| problems.len() < prev.len());
            if better {
                best = Some((value, problems));
            }
        }
        match best {
            Some((value, problems)) if fits > 0 => {
                out.extend(problems);
                value
            }
            _ => {
                out.push(type_problem(node, kind, &schema.accepted, key_span));
                Json::Null
            }
        }
    }

    fn walk_object(
        &self,
        node: &Node,
        entries: &[(Node, Node)],
        schema: &Sub,
        key_span: Span,
        out: &mut Vec<Problem>,
    ) -> Json {
        let property = |name: &str| {
            let properties = schema.properties.as_ref()?;
            properties
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .ok()
                .map(|i| properties[i].1)
        };
        let mut object = Map::new();
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for (key, value) in entries {
            let name = key.as_str().unwrap_or_default();
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                out.push(Problem {
                    span: key.span,
                    message: format!("duplicate key `{name}`"),
                    label: "set again here".into(),
                    hint: Some("a key may appear once per mapping; remove one of them".into()),
                    related: Some((*first, "first set here".into())),
                });
                continue;
            }
            seen.push((name, key.span));
            // serde aliases are not in the schema; `api-version` is the one berth has.
            let found = property(name).or_else(|| {
                (name == "api-version")
                    .then(|| property("version"))
                    .flatten()
            });
            let value_schema = match (found, schema.additional) {
                (Some(at), _) => at,
                (None, Additional::Forbidden) => {
                    let known: Vec<&str> =
                        schema.property_names.iter().map(String::as_str).collect();
                    out.push(unknown_key(key.span, name, &known));
                    continue;
                }
                (None, Additional::Schema(at)) => at,
                (None, Additional::Plain) => ANYTHING,
            };
            let json = if self.subs[value_schema].anything {
                to_plain_json(value)
            } else {
                self.walk(value, value_schema, key.span, out)
            };
            let stored_name = if name == "api-version" {
                "version"
            } else {
                name
            };
            object.insert(stored_name.to_string(), json);
        }
        for (name, hint) in &schema.required {
            if !object.contains_key(name) && !seen.iter().any(|(n, _)| n == name) {
                let span = if key_span == first_line(node.span) {
                    first_line(node.span)
                } else {
                    key_span
                };
                out.push(Problem {
                    span,
                    message: format!("missing required key `{name}`"),
                    label: format!("`{name}` is required here"),
                    hint: hint.clone(),
                    related: None,
                });
            }
        }
        Json::Object(object)
    }
}

fn check_enum(node: &Node, text: &str, schema: &Sub, out: &mut Vec<Problem>) {
    let Some(allowed) = &schema.allowed else {
        return;
    };
    if allowed.iter().any(|a| a == text) {
        return;
    }
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let hint = match did_you_mean(text, &allowed) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of {}", ticked(&allowed)),
    };
    out.push(Problem {
        span: node.span,
        message: format!("unknown value `{text}`"),
        label: "not one of the allowed values".into(),
        hint: Some(hint),
        related: None,
    });
}

fn check_range(node: &Node, value: f64, schema: &Sub, out: &mut Vec<Problem>) {
    let (min, max) = (schema.minimum, schema.maximum);
    let too_small = min.is_some_and(|m| value < m);
    let too_large = max.is_some_and(|m| value > m);
    if too_small || too_large {
        let range = match (min, max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => String::new(),
        };
        out.push(Problem {
            span: node.span,
            message: format!("number out of range: must be {range}"),
            label: "out of range".into(),
            hint: None,
            related: None,
        });
    }
}

fn type_problem(node: &Node, found: Kind, accepted: &[Kind], key_span: Span) -> Problem {
    let expected: Vec<&str> = accepted.iter().map(|k| k.describe()).collect();
    let expected = match expected.as_slice() {
        [] => "something else".to_string(),
        [one] => (*one).to_string(),
        many => {
            let (last, rest) = many.split_last().unwrap_or((&"", &[]));
            format!("{} or {last}", rest.join(", "))
        }
    };
    let span = if matches!(node.value, Value::Empty) && key_span != node.span {
        key_span
    } else {
        node.span
    };
    let hint = match (found, node.as_str()) {
        (Kind::String, Some("yes" | "no" | "on" | "off")) if accepted.contains(&Kind::Bool) => {
            Some("YAML 1.2 booleans are `true` and `false`".to_string())
        }
        (Kind::String, Some(_)) if accepted.contains(&Kind::Integer) => {
            Some("write the number without quotes".to_string())
        }
        _ => None,
    };
    Problem {
        span,
        message: format!("expected {expected}, found {}", found.describe()),
        label: format!("this is {}", found.describe()),
        hint,
        related: None,
    }
}

fn any_of(schema: &Json) -> Option<&[Json]> {
    schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Json::as_array)
        .map(Vec::as_slice)
}

fn kind_from_name(name: &str) -> Option<Kind> {
    Some(match name {
        "null" => Kind::Null,
        "boolean" => Kind::Bool,
        "integer" => Kind::Integer,
        "number" => Kind::Number,
        "string" => Kind::String,
        "object" => Kind::Object,
        "array" => Kind::Array,
        _ => return None,
    })
}

fn to_plain_json(node: &Node) -> Json {
    match &node.value {
        Value::Empty => Json::Null,
        Value::Scalar { text, .. } => Json::String(text.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_plain_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_plain_json(v)))
                .collect(),
        ),
    }
}

fn unknown_key(span: Span, name: &str, known: &[&str]) -> Problem {
    let hint = match did_you_mean(name, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => "this mapping takes no keys".to_string(),
        None => format!("expected one of {}", ticked(known)),
    };
    Problem {
        span,
        message: format!("unknown key `{name}`"),
        label: "unknown key".into(),
        hint: Some(hint),
        related: None,
    }
}

/// The closest candidate, if it is close enough to be a typo.
#[must_use]
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `` `a`, `b`, `c` ``
#[must_use]
pub fn ticked(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{tenant_schema, yaml};

    fn problems(text: &str) -> Vec<Problem> {
        let node = yaml::parse(text).unwrap();
        check(&node, &Compiled::new(tenant_schema())).1
    }

    #[test]
    fn all_problems_at_once() {
        let p = problems("environment: prod\nstat: active\napps:\n  web:\n    imge: x\n");
        let messages: Vec<_> = p.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown key `stat`",
                "unknown key `imge`",
                "missing required key `image`"
            ]
        );
        assert_eq!(p[0].hint.as_deref(), Some("did you mean `state`?"));
    }

    #[test]
    fn numbers_become_strings_where_strings_are_expected() {
        let node =
            yaml::parse("environment: prod\napps: {web: {image: x, env: {PORT: 8080}}}\n").unwrap();
        let (json, p) = check(&node, &Compiled::new(tenant_schema()));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(json["apps"]["web"]["env"]["PORT"], "8080");
    }

    #[test]
    fn env_value_variants() {
        let p = problems(
            "environment: p\napps: {web: {image: x, env: {A: {generate: 32}, B: {secret: s}, C: {generat: 1}}}}\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].hint.as_deref(), Some("did you mean `generate`?"));
    }
}
