//! Dokku output → values (pure). Every parser takes stdout text and returns data or a reason.
//!
//! Robust to what real hosts print (reference/dokku.md §1.6, §15): ANSI codes, `=====>`
//! headers even over a non-tty session, trailing spaces, JSON keys with and without the
//! `<plugin>-` prefix, `null` for empty lists, and "You haven't deployed any applications yet".

use std::collections::BTreeMap;

/// A parse failure, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected output: {expected}")]
pub struct ParseError {
    /// What the parser wanted.
    pub expected: String,
}

fn err(expected: impl Into<String>) -> ParseError {
    ParseError {
        expected: expected.into(),
    }
}

/// Remove ANSI escape sequences (`\x1B[…X`, `\x1B]…BEL`) and every other ESC.
///
/// No ESC survives: text from a host reaches error messages on the operator's terminal, and
/// a lone ESC kept in front of a removed sequence would form a new one (`\x1B\x1B[[31m`
/// became `\x1B[31m`; found by fuzzing).
#[must_use]
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            Some(']') => {
                // An operating-system command (a window title), ended by BEL or ESC \.
                chars.next();
                while let Some(d) = chars.next() {
                    if d == '\x07' {
                        break;
                    }
                    if d == '\x1b' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Any other escape: drop the ESC itself.
            _ => {}
        }
    }
    out
}

/// Lines that carry data: ANSI removed, headers (`=====>`, `----->`) and blank lines dropped.
fn data_lines(text: &str) -> Vec<String> {
    strip_ansi(text)
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| {
            // Headers are recognised however they are indented (an indented `=====>` line is
            // still a header, never a name).
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with("=====>") && !t.starts_with("----->")
        })
        .collect()
}

/// `dokku version 0.38.27` → `(0, 38, 27)`. Non-release builds may carry a prefix.
///
/// # Errors
/// When no `x.y.z` is found.
pub fn version(text: &str) -> Result<(u32, u32, u32), ParseError> {
    let text = strip_ansi(text);
    for word in text.split_whitespace() {
        let word = word.trim_start_matches('v');
        let parts: Vec<&str> = word.split(['.', '-', '+']).collect();
        if parts.len() >= 3
            && let (Ok(a), Ok(b), Ok(c)) = (parts[0].parse(), parts[1].parse(), parts[2].parse())
        {
            return Ok((a, b, c));
        }
    }
    Err(err("a version like `dokku version 0.38.27`"))
}

/// `apps:list --format json` → names.
///
/// # Errors
/// When the JSON is not a list of strings.
pub fn json_string_list(text: &str) -> Result<Vec<String>, ParseError> {
    let text = strip_ansi(text);
    let body = text
        .lines()
        .find(|l| l.trim_start().starts_with('[') || l.trim() == "null");
    match body.map(str::trim) {
        None | Some("null") => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json).map_err(|_| err("a JSON list of names")),
    }
}

/// One JSON object per line (all-app `:report --format json`), in order.
///
/// # Errors
/// When a line that looks like JSON does not parse as a string map.
pub fn json_report_lines(text: &str) -> Result<Vec<BTreeMap<String, String>>, ParseError> {
    let mut out = Vec::new();
    for line in strip_ansi(text).lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|_| err("one JSON object per line"))?;
        let Some(object) = value.as_object() else {
            return Err(err("a JSON object"));
        };
        let map = object
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        out.push(map);
    }
    Ok(out)
}

/// Look a report key up by its stripped name, then by its legacy `<plugin>-` name.
#[must_use]
pub fn lookup<'a>(
    report: &'a BTreeMap<String, String>,
    plugin: &str,
    key: &str,
) -> Option<&'a str> {
    report
        .get(key)
        .or_else(|| report.get(&format!("{plugin}-{key}")))
        .map(String::as_str)
}

/// `config:export --format json` → env. `null` and `{}` are empty.
///
/// # Errors
/// When the output is not a JSON string map.
pub fn config_export(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let text = strip_ansi(text);
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('{') || *l == "null")
    else {
        return Ok(BTreeMap::new());
    };
    if line == "null" {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(line).map_err(|_| err("a JSON object of config values"))
}

/// `ps:scale APP --format json` → formation, or the `--quiet` stdout form `web:  1`.
///
/// # Errors
/// When neither form parses.
pub fn scale(text: &str) -> Result<BTreeMap<String, u32>, ParseError> {
    let clean = strip_ansi(text);
    if let Some(line) = clean
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('[') || *l == "null")
    {
        if line == "null" {
            return Ok(BTreeMap::new());
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            process_type: String,
            quantity: u32,
        }
        let entries: Vec<Entry> =
            serde_json::from_str(line).map_err(|_| err("a JSON list of process types"))?;
        return Ok(entries
            .into_iter()
            .map(|e| (e.process_type, e.quantity))
            .collect());
    }
    let mut out = BTreeMap::new();
    for line in data_lines(&clean) {
        if line.starts_with("proctype") || line.starts_with("--------") {
            continue;
        }
        let Some((kind, count)) = line.split_once(':') else {
            return Err(err("`type: count` lines"));
        };
        let count: u32 = count.trim().parse().map_err(|_| err("a process count"))?;
        out.insert(kind.trim().to_string(), count);
    }
    Ok(out)
}

/// `--quiet postgres:list` / `postgres:links` → one name per line.
#[must_use]
pub fn name_lines(text: &str) -> Vec<String> {
    data_lines(text)
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.starts_with('!'))
        .collect()
}

/// `postgres:info SVC` / `redis:info SVC` (reference/dokku.md §12: a header, then
/// `printf "%-20s %-25s"` lines `Dsn:`, `Links:`, `Version:` …) → lower-case key → value,
/// values trimmed (`Links:` is `-` when there are none).
#[must_use]
pub fn service_info(text: &str) -> BTreeMap<String, String> {
    data_lines(text)
        .iter()
        .filter_map(|line| {
            let (key, value) = line.trim_start().split_once(':')?;
            Some((key.trim().to_lowercase(), value.trim().to_string()))
        })
        .collect()
}

/// The spec hash in an app's deploy-phase docker-options (`… --label=io.berth.spec=H …`,
/// space-joined as `docker-options:report` prints them).
#[must_use]
pub fn spec_label(options: &str) -> Option<String> {
    options
        .split_whitespace()
        .find_map(|w| w.strip_prefix(super::command::SPEC_OPTION_PREFIX))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The service containers an app's docker-options link to: `--link dokku.postgres.db:alias`
/// → `dokku.postgres.db` (reference/dokku.md §6.3, the entries `<kind>:link` adds).
#[must_use]
pub fn link_options(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let target = if word == "--link" {
            words.next()
        } else {
            word.strip_prefix("--link=")
        };
        if let Some(container) = target.and_then(|t| t.split(':').next())
            && !container.is_empty()
        {
            out.push(container.to_string());
        }
    }
    out
}

/// The environment label among an app's deploy-phase docker-options, if any.
#[must_use]
pub fn environment_label(options: &str) -> Option<String> {
    options
        .split_whitespace()
        .find_map(|w| w.strip_prefix(super::command::ENVIRONMENT_OPTION_PREFIX))
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// `-v /host:/container -v …` (storage report) → `host:container` mounts.
#[must_use]
pub fn mounts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-v" {
            if let Some(mount) = words.next() {
                out.push(mount.to_string());
            }
        } else if let Some(mount) = word
            .strip_prefix("-v=")
            .or_else(|| word.strip_prefix("--volume="))
            // `-v=` with nothing after it is no mount (found by the hostile catalogue).
            .filter(|m| !m.is_empty())
        {
            out.push(mount.to_string());
        }
    }
    out
}

/// The last lines of a command's error output, for error messages: ANSI removed, at most
/// `max` lines.
#[must_use]
pub fn tail(text: &str, max: usize) -> String {
    // Other control characters go too (a `\r` could hide the message behind what follows).
    let clean: String = strip_ansi(text)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let lines: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(max)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version("dokku version 0.38.27\n").unwrap(), (0, 38, 27));
        assert_eq!(
            version("dokku version v0.30.1-12-gabc\n").unwrap(),
            (0, 30, 1)
        );
        assert!(version("bash: dokku: command not found").is_err());
    }

    #[test]
    fn app_lists() {
        assert_eq!(
            json_string_list("[\"node-js-app\",\"python-app\"]\n").unwrap(),
            ["node-js-app", "python-app"]
        );
        assert!(json_string_list("[]\n").unwrap().is_empty());
        assert!(json_string_list("null\n").unwrap().is_empty());
    }

    #[test]
    fn reports_with_legacy_and_stripped_keys() {
        // reference/dokku.md §2, apps:report JSON on 0.38.8+: both key forms.
        let line = r#"{"app-created-at":"1635126111","created-at":"1635126111","deploy-source":"docker-image","deploy-source-metadata":"nginx:1.27","dir":"/home/dokku/node-js-app","global-disable-autocreation":"","locked":"false"}"#;
        let reports = json_report_lines(&format!("\x1b[1G{line}\n")).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(lookup(&reports[0], "app", "created-at"), Some("1635126111"));
        assert_eq!(
            lookup(&reports[0], "app", "deploy-source-metadata"),
            Some("nginx:1.27")
        );
        // A 0.23–0.38.7 host emits legacy keys only.
        let legacy = json_report_lines(r#"{"app-deploy-source-metadata":"nginx:1.26"}"#).unwrap();
        assert_eq!(
            lookup(&legacy[0], "app", "deploy-source-metadata"),
            Some("nginx:1.26")
        );
    }

    #[test]
    fn no_apps_message_is_not_an_error() {
        // stdout header plus stderr note: nothing to parse, no error.
        assert!(json_report_lines("=====> My Apps\n").unwrap().is_empty());
    }

    #[test]
    fn config_exports() {
        let env = config_export("{\"A\":\"x y\",\"URL\":\"a\\u0026b\"}\n").unwrap();
        assert_eq!(env["A"], "x y");
        assert_eq!(env["URL"], "a&b");
        assert!(config_export("{}\n").unwrap().is_empty());
        assert!(config_export("null\n").unwrap().is_empty());
    }

    #[test]
    fn scale_forms() {
        let json = scale("[{\"process_type\":\"web\",\"quantity\":1},{\"process_type\":\"worker\",\"quantity\":4}]\n").unwrap();
        assert_eq!(json["worker"], 4);
        // reference/dokku.md §5.1 stdout form, with the header a non-quiet session prints.
        let text =
            "-----> Scaling for node-js-app\nproctype: qty\n--------: ---\nweb:  1\nworker: 4\n";
        let parsed = scale(text).unwrap();
        assert_eq!(parsed["web"], 1);
        assert_eq!(parsed["worker"], 4);
        assert!(scale("[]\n").unwrap().is_empty());
    }

    #[test]
    fn service_names_and_links() {
        assert_eq!(
            name_lines("=====> Postgres services\nacme-db\nbolt-db\n"),
            ["acme-db", "bolt-db"]
        );
        assert!(name_lines("").is_empty());
        assert_eq!(name_lines("app1\napp2  \n"), ["app1", "app2"]);
        // Found by the fuzz corpus (reference sample): an indented header is no name.
        assert_eq!(
            name_lines("    =====> acme-db info\nacme-db\n"),
            ["acme-db"]
        );
    }

    #[test]
    fn service_info_blocks() {
        let text = "=====> acme-db postgres service information\n       Dsn:                 postgres://postgres:pw@dokku-postgres-acme-db:5432/acme_db\n       Links:               acme-web bolt-web \n       Status:              running                  \n       Version:             postgres:16              \n";
        let info = service_info(text);
        assert_eq!(
            info["dsn"],
            "postgres://postgres:pw@dokku-postgres-acme-db:5432/acme_db"
        );
        assert_eq!(info["links"], "acme-web bolt-web");
        assert_eq!(info["version"], "postgres:16");
        assert_eq!(
            service_info("       Links:               -\n")["links"],
            "-"
        );
    }

    #[test]
    fn storage_mounts() {
        assert_eq!(
            mounts("-v /var/lib/dokku/data/storage/a:/app/storage -v /b:/c"),
            ["/var/lib/dokku/data/storage/a:/app/storage", "/b:/c"]
        );
        assert!(mounts("").is_empty());
        assert!(mounts("-v= --volume=").is_empty());
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\x1b[1G\x1b[K-----> WARNING"), "-----> WARNING");
        assert_eq!(strip_ansi("\x1b[31mred\x1b[0m"), "red");
        // Fuzzing: an ESC before a removed sequence must not form a new one.
        assert_eq!(strip_ansi("\x1b\x1b[[31mx"), "31mx");
        assert!(!strip_ansi("-\x1b\x1b\x1b\x1b[[[G[[").contains('\x1b'));
        assert_eq!(
            strip_ansi("\x1b]0;title\x07ok \x1b]2;t\x1b\\done"),
            "ok done"
        );
    }
}
