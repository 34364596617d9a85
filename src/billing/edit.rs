//! Lossless edits of a tenant file: set `tier`, `state` and `billing.*` and change no other
//! byte.
//!
//! A serializer round trip would drop comments and reorder keys, and every billing change is a
//! commit a person reviews, so the bridge edits text: it parses the file with the span-aware
//! parser ([`crate::spec::yaml`]), finds the exact bytes of the one scalar it changes, and
//! splices the new value in, keeping the old quoting style (`"pro"` stays double-quoted).
//! A key that is missing is inserted as one new line after a sibling (`tier` after
//! `environment`, `state` after `tier`, a `billing:` block after the last top-level entry, a
//! billing key after the last billing key), with the file's own indentation and line endings;
//! flow mappings (`billing: { … }`) get `, key: value` before their closing brace.
//!
//! Forms the bridge will not edit — anchors, aliases, tags, block or multi-line scalars,
//! duplicate keys — are refused rather than guessed at, and every edit is checked by
//! re-parsing the result and reading the new values back.
//!
//! Pure: text in, text out.

use std::collections::BTreeMap;

use crate::spec::TenantState;
use crate::spec::yaml::{self, Node, Value};

/// A key under `billing:` the bridge writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BillingKey {
    /// `cus_…`
    Customer,
    /// `sub_…`
    Subscription,
    /// Stripe's subscription status.
    Status,
    /// The price the tier came from.
    Price,
    /// `created` of the newest event reflected.
    Updated,
}

impl BillingKey {
    /// Every key, in the order a new `billing:` block lists them.
    pub const ALL: [BillingKey; 5] = [
        BillingKey::Customer,
        BillingKey::Subscription,
        BillingKey::Status,
        BillingKey::Price,
        BillingKey::Updated,
    ];

    /// The key as written in the file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BillingKey::Customer => "customer",
            BillingKey::Subscription => "subscription",
            BillingKey::Status => "status",
            BillingKey::Price => "price",
            BillingKey::Updated => "updated",
        }
    }
}

/// What a tenant file says about the keys the bridge owns (raw scalar texts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// `environment:`
    pub environment: Option<String>,
    /// `tier:`
    pub tier: Option<String>,
    /// `state:` (absent means active).
    pub state: Option<String>,
    /// `billing.<key>` scalars.
    pub billing: BTreeMap<BillingKey, String>,
}

impl Current {
    /// `billing.updated` as a number.
    #[must_use]
    pub fn updated(&self) -> Option<i64> {
        self.billing.get(&BillingKey::Updated)?.parse().ok()
    }

    /// A billing value.
    #[must_use]
    pub fn billing(&self, key: BillingKey) -> Option<&str> {
        self.billing.get(&key).map(String::as_str)
    }

    /// The effective state (`active` when the key is absent).
    #[must_use]
    pub fn state(&self) -> Option<TenantState> {
        match self.state.as_deref() {
            None => Some(TenantState::Active),
            Some(s) => parse_state(s),
        }
    }
}

/// A state as written in a file.
#[must_use]
pub fn parse_state(text: &str) -> Option<TenantState> {
    match text {
        "active" => Some(TenantState::Active),
        "suspended" => Some(TenantState::Suspended),
        "cancelled" => Some(TenantState::Cancelled),
        "purge" => Some(TenantState::Purge),
        _ => None,
    }
}

/// A state as the file writes it.
#[must_use]
pub fn state_str(state: TenantState) -> &'static str {
    match state {
        TenantState::Active => "active",
        TenantState::Suspended => "suspended",
        TenantState::Cancelled => "cancelled",
        TenantState::Purge => "purge",
    }
}

/// The values to set; `None` and absent billing keys are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// New `tier`.
    pub tier: Option<String>,
    /// New `state`.
    pub state: Option<TenantState>,
    /// New `billing.<key>` values (plain tokens or numbers).
    pub billing: BTreeMap<BillingKey, String>,
}

impl Patch {
    /// Whether the patch sets nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tier.is_none() && self.state.is_none() && self.billing.is_empty()
    }
}

/// Why a file cannot be edited losslessly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file is not YAML the parser accepts.
    #[error("the tenant file is not valid YAML: {0}")]
    Yaml(String),
    /// The top level is not a mapping.
    #[error("the tenant file is not a mapping of keys")]
    NotAMapping,
    /// A key the bridge owns is written in a form it does not edit.
    #[error("`{key}` is written as {form}, which the bridge does not edit")]
    Unsupported {
        /// The key path (`billing.status`).
        key: String,
        /// What the form is.
        form: &'static str,
    },
    /// A key the bridge owns appears twice.
    #[error("`{key}` appears more than once")]
    Duplicate {
        /// The key path.
        key: String,
    },
    /// A value the bridge would write is not a plain token.
    #[error("refusing to write `{key}`: the value is not a plain token")]
    BadValue {
        /// The key path.
        key: String,
    },
    /// Reading the result back did not give the values written (a bug guard).
    #[error("the edited file does not read back `{key}` as written")]
    Check {
        /// The key path.
        key: String,
    },
}

/// Read the bridge-owned keys of a tenant file.
///
/// # Errors
/// Unparseable files, a non-mapping top level, duplicate owned keys.
pub fn read(text: &str) -> Result<Current, EditError> {
    let root = parse_root(text)?;
    let scalar = |node: &Node, key: &str| -> Result<Option<String>, EditError> {
        let Some(value) = unique(node, key, key)? else {
            return Ok(None);
        };
        Ok(value.as_str().map(str::to_string))
    };
    let mut current = Current {
        environment: scalar(&root, "environment")?,
        tier: scalar(&root, "tier")?,
        state: scalar(&root, "state")?,
        billing: BTreeMap::new(),
    };
    if let Some(billing) = unique(&root, "billing", "billing")? {
        for key in BillingKey::ALL {
            let path = format!("billing.{}", key.as_str());
            if let Some(v) = unique(billing, key.as_str(), &path)?.and_then(Node::as_str) {
                current.billing.insert(key, v.to_string());
            }
        }
    }
    Ok(current)
}

/// Apply a patch, changing only the bytes of the values it sets (and adding the keys that are
/// missing).
///
/// # Errors
/// See [`EditError`]; the text is never partly edited.
pub fn apply(text: &str, patch: &Patch) -> Result<String, EditError> {
    let mut out = text.to_string();
    if let Some(tier) = &patch.tier {
        out = set_top(&out, "tier", tier, &["environment"])?;
    }
    if let Some(state) = patch.state {
        out = set_top(&out, "state", state_str(state), &["tier", "environment"])?;
    }
    for (key, value) in &patch.billing {
        out = set_billing(&out, *key, value)?;
    }
    // Everything the patch does not own must parse exactly as before.
    let owned: Vec<&str> = patch.billing.keys().map(|k| k.as_str()).collect();
    let untouched = |t: &str| parse_root(t).map(|root| shape_without(&root, &owned));
    if untouched(text)? != untouched(&out)? {
        return Err(EditError::Check {
            key: "the rest of the file".into(),
        });
    }
    // Read back what was written.
    let after = read(&out)?;
    let check = |ok: bool, key: &str| {
        if ok {
            Ok(())
        } else {
            Err(EditError::Check { key: key.into() })
        }
    };
    if let Some(tier) = &patch.tier {
        check(after.tier.as_deref() == Some(tier), "tier")?;
    }
    if let Some(state) = patch.state {
        check(after.state.as_deref() == Some(state_str(state)), "state")?;
    }
    for (key, value) in &patch.billing {
        check(
            after.billing(*key) == Some(value.as_str()),
            &format!("billing.{}", key.as_str()),
        )?;
    }
    Ok(out)
}

/// A span-free copy of a node.
#[derive(Debug, PartialEq)]
enum Shape {
    Empty,
    Scalar(String, bool),
    Seq(Vec<Shape>),
    Map(Vec<(String, Shape)>),
}

fn shape(node: &Node) -> Shape {
    match &node.value {
        Value::Empty => Shape::Empty,
        Value::Scalar { text, plain } => Shape::Scalar(text.clone(), *plain),
        Value::Seq(items) => Shape::Seq(items.iter().map(shape).collect()),
        Value::Map(entries) => Shape::Map(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), shape(v)))
                .collect(),
        ),
    }
}

/// The file's shape without the keys a patch may set (`tier`, `state`, and the given billing
/// keys; a `billing` left empty by that counts as absent).
fn shape_without(root: &Node, billing_keys: &[&str]) -> Shape {
    let Shape::Map(entries) = shape(root) else {
        return shape(root);
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        match key.as_str() {
            "tier" | "state" => {}
            "billing" => match value {
                Shape::Map(inner) => {
                    let kept: Vec<_> = inner
                        .into_iter()
                        .filter(|(k, _)| !billing_keys.contains(&k.as_str()))
                        .collect();
                    if !kept.is_empty() {
                        out.push((key, Shape::Map(kept)));
                    }
                }
                Shape::Empty => {}
                other => out.push((key, other)),
            },
            _ => out.push((key, value)),
        }
    }
    Shape::Map(out)
}

fn parse_root(text: &str) -> Result<Node, EditError> {
    let root = yaml::parse(text).map_err(|e| EditError::Yaml(e.message))?;
    match root.value {
        Value::Map(_) => Ok(root),
        _ => Err(EditError::NotAMapping),
    }
}

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.value {
        Value::Map(entries) => entries,
        _ => &[],
    }
}

/// The value of `key` in a mapping, refusing duplicates.
fn unique<'n>(node: &'n Node, key: &str, path: &str) -> Result<Option<&'n Node>, EditError> {
    let mut found = entries(node)
        .iter()
        .filter(|(k, _)| k.as_str() == Some(key));
    let first = found.next();
    if found.next().is_some() {
        return Err(EditError::Duplicate { key: path.into() });
    }
    Ok(first.map(|(_, v)| v))
}

fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// The exact bytes of a single-line scalar value and its style.
fn scalar_extent(
    text: &str,
    key: &Node,
    value: &Node,
    path: &str,
    flow: bool,
) -> Result<(usize, usize, Style), EditError> {
    let unsupported = |form| EditError::Unsupported {
        key: path.into(),
        form,
    };
    let Some(expected) = value.as_str() else {
        return Err(unsupported("a mapping or a list"));
    };
    // Between the key and the value there must be only `:` and spaces: anything else is an
    // anchor, a tag or a block-scalar indicator.
    let colon = colon_after(text, key).ok_or_else(|| unsupported("a complex key"))?;
    let start = value.span.start;
    let between = text.get(colon + 1..start).unwrap_or("");
    if start <= colon || !between.chars().all(|c| c == ' ') {
        return Err(unsupported("an anchor, tag or block scalar"));
    }
    let bytes = text.as_bytes();
    let (end, style, inner) = match bytes.get(start) {
        Some(b'*' | b'&' | b'!') => return Err(unsupported("an alias, anchor or tag")),
        Some(b'|' | b'>') => return Err(unsupported("a block scalar")),
        Some(b'"') => {
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    None | Some(b'\n' | b'\r') => return Err(unsupported("a multi-line string")),
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            (i + 1, Style::Double, &text[start + 1..i])
        }
        Some(b'\'') => {
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    None | Some(b'\n' | b'\r') => return Err(unsupported("a multi-line string")),
                    Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            (i + 1, Style::Single, &text[start + 1..i])
        }
        _ => {
            let mut i = start;
            while let Some(&b) = bytes.get(i) {
                let comment = b == b'#' && i > start && matches!(bytes[i - 1], b' ' | b'\t');
                let flow_end = flow && matches!(b, b',' | b'}' | b']');
                if b == b'\n' || b == b'\r' || comment || flow_end {
                    break;
                }
                i += 1;
            }
            let end = start + text[start..i].trim_end().len();
            (end, Style::Plain, &text[start..end])
        }
    };
    // The bytes must be exactly the value the parser read (no escapes, no continuation line).
    if inner != expected {
        return Err(unsupported("a multi-line or escaped string"));
    }
    Ok((start, end, style))
}

/// Byte offset of the `:` after a key.
fn colon_after(text: &str, key: &Node) -> Option<usize> {
    let rest = text.get(key.span.end..)?;
    let offset = rest.find(|c: char| c != ' ')?;
    (rest.as_bytes()[offset] == b':').then_some(key.span.end + offset)
}

/// Render a value in a style; strings that are not plain tokens are refused.
fn render(value: &str, style: Style, path: &str) -> Result<String, EditError> {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !token {
        return Err(EditError::BadValue { key: path.into() });
    }
    let number = value.bytes().all(|b| b.is_ascii_digit());
    let special = matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
    );
    let plain_ok = number
        || (!special
            && value
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_'));
    Ok(match style {
        Style::Double => format!("\"{value}\""),
        Style::Single => format!("'{value}'"),
        Style::Plain if plain_ok => value.to_string(),
        Style::Plain => format!("\"{value}\""),
    })
}

/// Set a top-level scalar, inserting it after the first existing key of `after` (else after
/// the last entry) when missing.
fn set_top(text: &str, key: &str, value: &str, after: &[&str]) -> Result<String, EditError> {
    let root = parse_root(text)?;
    let flow = is_flow(text, &root);
    set_in_map(text, &root, key, value, key, after, flow, 0)
}

fn set_billing(text: &str, key: BillingKey, value: &str) -> Result<String, EditError> {
    let root = parse_root(text)?;
    let path = format!("billing.{}", key.as_str());
    let root_flow = is_flow(text, &root);
    let Some(billing) = unique(&root, "billing", "billing")? else {
        // No billing block: a new one after the last top-level entry.
        let nl = newline(text);
        let rendered = render(value, Style::Plain, &path)?;
        if root_flow {
            let block = format!("billing: {{{}: {rendered}}}", key.as_str());
            return Ok(insert_flow(text, &root, None, &block));
        }
        let unit = indent_unit(text);
        let block = format!(
            "billing:{nl}{}{}: {rendered}{nl}",
            " ".repeat(unit),
            key.as_str()
        );
        let last = entries(&root).len().checked_sub(1);
        return Ok(insert_block_line(text, &root, last, &block, 0));
    };
    match &billing.value {
        Value::Map(_) => {
            let flow = is_flow(text, billing);
            let column = entries(billing)
                .first()
                .map_or(0, |(k, _)| column_of(text, k.span.start));
            set_in_map(text, billing, key.as_str(), value, &path, &[], flow, column)
        }
        Value::Empty => {
            // `billing:` with nothing after it: add the key on the next line.
            let (billing_key, _) = entries(&root)
                .iter()
                .find(|(k, _)| k.as_str() == Some("billing"))
                .ok_or(EditError::NotAMapping)?;
            let colon = colon_after(text, billing_key).ok_or_else(|| EditError::Unsupported {
                key: "billing".into(),
                form: "a complex key",
            })?;
            let nl = newline(text);
            let indent = column_of(text, billing_key.span.start) + indent_unit(text);
            let rendered = render(value, Style::Plain, &path)?;
            let line = format!("{}{}: {rendered}", " ".repeat(indent), key.as_str());
            let (at, has_newline) = line_end(text, colon + 1);
            let insert = if has_newline {
                format!("{line}{nl}")
            } else {
                format!("{nl}{line}")
            };
            Ok(splice(text, at, at, &insert))
        }
        _ => Err(EditError::Unsupported {
            key: "billing".into(),
            form: "a list or a scalar",
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn set_in_map(
    text: &str,
    map: &Node,
    key: &str,
    value: &str,
    path: &str,
    after: &[&str],
    flow: bool,
    column: usize,
) -> Result<String, EditError> {
    let list = entries(map);
    let mut matching = list
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k.as_str() == Some(key));
    let found = matching.next();
    if matching.next().is_some() {
        return Err(EditError::Duplicate { key: path.into() });
    }
    if let Some((_, (k, v))) = found {
        if matches!(v.value, Value::Empty) {
            // `key:` with no value: write one right after the colon.
            let colon = colon_after(text, k).ok_or_else(|| EditError::Unsupported {
                key: path.into(),
                form: "a complex key",
            })?;
            let rendered = render(value, Style::Plain, path)?;
            return Ok(splice(text, colon + 1, colon + 1, &format!(" {rendered}")));
        }
        let (start, end, style) = scalar_extent(text, k, v, path, flow)?;
        let rendered = render(value, style, path)?;
        return Ok(splice(text, start, end, &rendered));
    }
    let rendered = render(value, Style::Plain, path)?;
    let anchor = after
        .iter()
        .find_map(|a| list.iter().position(|(k, _)| k.as_str() == Some(a)))
        .or(list.len().checked_sub(1));
    if flow {
        return Ok(insert_flow(
            text,
            map,
            anchor,
            &format!("{key}: {rendered}"),
        ));
    }
    let nl = newline(text);
    let line = format!("{}{key}: {rendered}{nl}", " ".repeat(column));
    Ok(insert_block_line(text, map, anchor, &line, column))
}

/// Insert `line` (ending in a newline) after entry `index` of a block mapping.
fn insert_block_line(
    text: &str,
    map: &Node,
    index: Option<usize>,
    line: &str,
    _column: usize,
) -> String {
    let nl = newline(text);
    let after = index
        .and_then(|i| entries(map).get(i))
        .map_or(map.span.start, |(_, v)| node_end(text, v));
    let (at, has_newline) = if index.is_none() {
        (map.span.start, true)
    } else {
        line_end(text, after)
    };
    if has_newline {
        splice(text, at, at, line)
    } else {
        let body = line.strip_suffix(nl).unwrap_or(line);
        splice(text, at, at, &format!("{nl}{body}"))
    }
}

/// Insert `key: value` into a flow mapping after entry `index` (or first when empty).
fn insert_flow(text: &str, map: &Node, index: Option<usize>, item: &str) -> String {
    match index.and_then(|i| entries(map).get(i)) {
        Some((_, v)) => {
            let end = flow_value_end(text, v);
            splice(text, end, end, &format!(", {item}"))
        }
        None => {
            let open = map.span.start + 1;
            splice(text, open, open, item)
        }
    }
}

/// End of a value inside a flow mapping (the parser's spans can run past a quoted scalar).
fn flow_value_end(text: &str, value: &Node) -> usize {
    let bytes = text.as_bytes();
    let start = value.span.start;
    match (&value.value, bytes.get(start)) {
        (Value::Scalar { .. }, Some(b'"' | b'\'')) => {
            quoted_end(bytes, start).unwrap_or(text.len())
        }
        (Value::Scalar { .. }, _) => {
            let stop = text[start..]
                .find([',', '}', ']', '\n', '\r'])
                .map_or(text.len(), |i| start + i);
            start + text[start..stop].trim_end().len()
        }
        _ => node_end(text, value),
    }
}

/// The end of a value's own text. The parser's spans of scalars can run on over the comments
/// and blank lines after them, so scalars and flow collections are measured from their start.
fn node_end(text: &str, node: &Node) -> usize {
    let bytes = text.as_bytes();
    let start = node.span.start;
    match &node.value {
        Value::Empty => node.span.end.max(start),
        Value::Scalar { text: value, .. } => match bytes.get(start) {
            Some(b'"' | b'\'') => quoted_end(bytes, start).unwrap_or(node.span.end),
            _ => {
                // A plain scalar on one line ends before ` #` or the newline; a longer one
                // (continued on the next lines) falls back to the parser's span.
                let mut i = start;
                while let Some(&b) = bytes.get(i) {
                    let comment = b == b'#' && i > start && matches!(bytes[i - 1], b' ' | b'\t');
                    if b == b'\n' || b == b'\r' || comment {
                        break;
                    }
                    i += 1;
                }
                let end = start + text[start..i].trim_end().len();
                if text[start..end] == **value {
                    end
                } else {
                    let span = text.get(start..node.span.end).unwrap_or("");
                    start + span.trim_end().len()
                }
            }
        },
        Value::Map(entries) => match bytes.get(start) {
            Some(b'{') => flow_end(bytes, start).unwrap_or(node.span.end),
            _ => entries
                .last()
                .map_or(node.span.end, |(_, v)| node_end(text, v)),
        },
        Value::Seq(items) => match bytes.get(start) {
            Some(b'[') => flow_end(bytes, start).unwrap_or(node.span.end),
            _ => items.last().map_or(node.span.end, |v| node_end(text, v)),
        },
    }
}

/// Just past the closing quote of a quoted scalar starting at `start`.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start)?;
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' && quote == b'"' {
            i += 2;
            continue;
        }
        if b == quote {
            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Just past the bracket that closes the flow collection opening at `start`.
fn flow_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\'' => {
                i = quoted_end(bytes, i)?;
                continue;
            }
            b'#' if i > 0 && matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                while bytes.get(i).is_some_and(|b| *b != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
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

/// The offset just past the end of the line holding `pos`, and whether a newline ends it.
fn line_end(text: &str, pos: usize) -> (usize, bool) {
    match text[pos.min(text.len())..].find('\n') {
        Some(i) => (pos + i + 1, true),
        None => (text.len(), false),
    }
}

fn column_of(text: &str, pos: usize) -> usize {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..pos].chars().count()
}

fn is_flow(text: &str, map: &Node) -> bool {
    text.as_bytes().get(map.span.start) == Some(&b'{')
}

/// The file's indentation step: the smallest indentation of a content line, else 2.
fn indent_unit(text: &str) -> usize {
    text.lines()
        .filter_map(|line| {
            let trimmed = line.trim_start_matches(' ');
            let indent = line.len() - trimmed.len();
            (indent > 0 && !trimmed.is_empty() && !trimmed.starts_with('#')).then_some(indent)
        })
        .min()
        .unwrap_or(2)
}

fn splice(text: &str, start: usize, end: usize, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..start]);
    out.push_str(with);
    out.push_str(&text[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(
        tier: Option<&str>,
        state: Option<TenantState>,
        billing: &[(BillingKey, &str)],
    ) -> Patch {
        Patch {
            tier: tier.map(str::to_string),
            state,
            billing: billing
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn replaces_values_in_place() {
        let text = "# head\nenvironment: production\ntier: \"starter\"   # was trial\n\nstate: active\nbilling:\n  customer: cus_1 # c\n  status: 'active'\n  updated: 10\napps: {}\n";
        let out = apply(
            text,
            &patch(
                Some("pro"),
                Some(TenantState::Suspended),
                &[(BillingKey::Status, "unpaid"), (BillingKey::Updated, "20")],
            ),
        )
        .unwrap();
        assert_eq!(
            out,
            "# head\nenvironment: production\ntier: \"pro\"   # was trial\n\nstate: suspended\nbilling:\n  customer: cus_1 # c\n  status: 'unpaid'\n  updated: 20\napps: {}\n"
        );
    }

    #[test]
    fn inserts_missing_keys() {
        let text = "name: ACME\nenvironment: production\napps:\n    web:\n        image: x\n";
        let out = apply(
            text,
            &patch(
                Some("pro"),
                Some(TenantState::Cancelled),
                &[(BillingKey::Customer, "cus_1"), (BillingKey::Updated, "5")],
            ),
        )
        .unwrap();
        assert_eq!(
            out,
            "name: ACME\nenvironment: production\ntier: pro\nstate: cancelled\napps:\n    web:\n        image: x\nbilling:\n    customer: cus_1\n    updated: 5\n"
        );
    }

    #[test]
    fn flow_billing_and_no_trailing_newline() {
        let text = "environment: p\nbilling: { customer: \"cus_1\", status: active }";
        let out = apply(
            text,
            &patch(
                None,
                None,
                &[
                    (BillingKey::Status, "past_due"),
                    (BillingKey::Price, "price_1"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            out,
            "environment: p\nbilling: { customer: \"cus_1\", status: past_due, price: price_1 }"
        );
        let text = "environment: p";
        let out = apply(text, &patch(Some("pro"), None, &[])).unwrap();
        assert_eq!(out, "environment: p\ntier: pro");
    }

    #[test]
    fn crlf_and_empty_values() {
        let text = "environment: p\r\ntier:\r\nbilling:\r\n";
        let out = apply(
            text,
            &patch(Some("pro"), None, &[(BillingKey::Status, "active")]),
        )
        .unwrap();
        assert_eq!(
            out,
            "environment: p\r\ntier: pro\r\nbilling:\r\n  status: active\r\n"
        );
    }

    #[test]
    fn refuses_forms_it_does_not_edit() {
        for text in [
            "environment: p\ntier: &t pro\n",
            "environment: p\ntier: !!str pro\n",
            "environment: p\ntier: |\n  pro\n",
            "environment: p\ntier: pro\ntier: starter\n",
            "environment: p\ntier: \"pr\\u006f\"\n",
            "environment: p\ntier: pro\n  continued\n",
        ] {
            assert!(
                apply(text, &patch(Some("starter"), None, &[])).is_err(),
                "{text:?}"
            );
        }
        assert!(matches!(
            apply("environment: p\n", &patch(Some("a: b"), None, &[])),
            Err(EditError::BadValue { .. })
        ));
    }

    #[test]
    fn reads_current_values() {
        let c =
            read("environment: p\ntier: pro\nbilling: {updated: 7, status: past_due}\n").unwrap();
        assert_eq!(c.tier.as_deref(), Some("pro"));
        assert_eq!(c.updated(), Some(7));
        assert_eq!(c.state(), Some(TenantState::Active));
        assert_eq!(c.billing(BillingKey::Status), Some("past_due"));
    }
}
