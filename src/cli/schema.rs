//! `berth schema`: write the JSON Schemas editors use to check berth files as you type.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::Printer;

/// Arguments of `berth schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Directory to write `tenant.schema.json`, `environment.schema.json`, `plan.schema.json`
    /// and `events.schema.json` into.
    #[arg(long, default_value = "schema")]
    pub out: PathBuf,
    /// Also write the Markdown file reference (docs/reference.md) to this path.
    #[arg(long)]
    pub reference: Option<PathBuf>,
}

/// The files `berth schema` writes, name and content.
#[must_use]
pub fn schema_files() -> Vec<(&'static str, String)> {
    let render = |v: serde_json::Value| {
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("tenant.schema.json", render(crate::spec::tenant_schema())),
        (
            "environment.schema.json",
            render(crate::spec::environment_schema()),
        ),
        ("plan.schema.json", render(crate::output::plan::schema())),
        (
            "events.schema.json",
            render(crate::output::events::schema()),
        ),
    ]
}

/// Run it.
pub fn run(args: &SchemaArgs, printer: &Printer) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    for (name, text) in schema_files() {
        let path = args.out.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("wrote {}", path.display()));
    }
    if let Some(path) = &args.reference {
        std::fs::write(path, reference_markdown())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("wrote {}", path.display()));
    }
    Ok(0)
}

/// docs/reference.md, generated from the same schemas so it cannot drift from the types.
#[must_use]
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# berth file reference\n\n\
         Generated from the spec types by `berth schema --reference docs/reference.md`; a test\n\
         fails when this file is stale. Keys are kebab-case; unknown keys are errors. Both files\n\
         take `version: 1` (alias `api-version`).\n\n",
    );
    for (title, file, schema, example) in [
        (
            "Environment file",
            "environments/<env>.yaml",
            crate::spec::environment_schema(),
            ENVIRONMENT_EXAMPLE,
        ),
        (
            "Tenant file",
            "tenants/<id>.yaml",
            crate::spec::tenant_schema(),
            TENANT_EXAMPLE,
        ),
    ] {
        out.push_str(&format!(
            "## {title}: `{file}`\n\n```yaml\n{example}```\n\n"
        ));
        let mut seen = Vec::new();
        describe_object(&mut out, &schema, &schema, "", &mut seen);
    }
    out
}

const ENVIRONMENT_EXAMPLE: &str =
    include_str!("../../examples/dokku-fleet/environments/production.yaml");
const TENANT_EXAMPLE: &str = include_str!("../../examples/isolated-stacks/tenants/northwind.yaml");

fn resolve<'a>(
    root: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match schema
        .get("$ref")
        .and_then(serde_json::Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => &root["$defs"][name],
        None => schema,
    }
}

/// Type of a property, in words.
fn type_words(root: &serde_json::Value, schema: &serde_json::Value) -> String {
    let schema = resolve(root, schema);
    if let Some(values) = schema.get("enum").and_then(serde_json::Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(branches) = schema
        .get("anyOf")
        .or(schema.get("oneOf"))
        .and_then(serde_json::Value::as_array)
    {
        // An enum of strings (each branch a `const`): list the values.
        let consts: Vec<String> = branches
            .iter()
            .filter_map(|b| b.get("const").and_then(serde_json::Value::as_str))
            .map(|v| format!("`{v}`"))
            .collect();
        if !consts.is_empty() && consts.len() == branches.len() {
            return format!("one of {}", consts.join(", "));
        }
        let parts: Vec<String> = branches
            .iter()
            .filter(|b| b.get("type").and_then(serde_json::Value::as_str) != Some("null"))
            .map(|b| type_words(root, b))
            .collect();
        return parts.join(" or ");
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.as_str()],
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(serde_json::Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    if let Some(props) = schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        && props.len() == 1
    {
        let (k, v) = props.iter().next().unwrap_or_else(|| unreachable!());
        return format!("`{{ {k}: {} }}`", type_words(root, v));
    }
    match types.first().copied() {
        Some("array") => format!(
            "list of {}",
            schema
                .get("items")
                .map_or("values".into(), |i| type_words(root, i))
        ),
        Some("object") if schema.get("properties").is_some() => "mapping (below)".into(),
        Some("object") => match schema.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of name → {}", type_words(root, v)),
            _ => "mapping".into(),
        },
        Some(t) => t.to_string(),
        None if schema.get("properties").is_some() => "mapping (below)".into(),
        None => "value".into(),
    }
}

fn describe_object(
    out: &mut String,
    root: &serde_json::Value,
    schema: &serde_json::Value,
    prefix: &str,
    seen: &mut Vec<String>,
) {
    let schema = resolve(root, schema);
    let Some(props) = schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
    else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(serde_json::Value::as_array)
        .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| key | type | required | meaning |\n|---|---|---|---|\n");
    let mut nested = Vec::new();
    for (name, prop) in props {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let description = prop
            .get("description")
            .or_else(|| resolve(root, prop).get("description"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .replace('\n', " ");
        out.push_str(&format!(
            "| `{key}` | {} | {} | {description} |\n",
            type_words(root, prop).replace('|', "\\|"),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            }
        ));
        // Find object schemas below this property (directly, in maps, lists or options).
        for child in child_objects(root, prop) {
            let child_key = match child.1 {
                "map" => format!("{key}.<name>"),
                "list" => format!("{key}[]"),
                _ => key.clone(),
            };
            nested.push((child_key, child.0));
        }
    }
    out.push('\n');
    for (key, child) in nested {
        let id = child.to_string();
        if seen.contains(&id) && !key.contains('.') {
            continue;
        }
        seen.push(id);
        out.push_str(&format!("### `{key}`\n\n"));
        describe_object(out, root, child, &key, seen);
    }
}

fn child_objects<'a>(
    root: &'a serde_json::Value,
    prop: &'a serde_json::Value,
) -> Vec<(&'a serde_json::Value, &'static str)> {
    let prop = resolve(root, prop);
    let mut found = Vec::new();
    if prop.get("properties").is_some() {
        found.push((prop, "object"));
    }
    if let Some(branches) = prop
        .get("anyOf")
        .or(prop.get("oneOf"))
        .and_then(serde_json::Value::as_array)
    {
        for b in branches {
            let b = resolve(root, b);
            if b.get("properties").is_some() && !found.iter().any(|(f, _)| *f == b) {
                found.push((b, "object"));
            }
        }
    }
    if let Some(v) = prop.get("additionalProperties").filter(|v| v.is_object()) {
        let v = resolve(root, v);
        if v.get("properties").is_some() {
            found.push((v, "map"));
        }
    }
    if let Some(items) = prop.get("items") {
        let items = resolve(root, items);
        if items.get("properties").is_some() {
            found.push((items, "list"));
        }
    }
    found
}
