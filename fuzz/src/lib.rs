//! Fuzz harness cores: one plain `fn(&[u8])` per target, each driving a parser of outside input
//! through berth's public entry points and asserting what must hold for every input.
//!
//! AFL runs them from `src/bin/<target>.rs` (`scripts/fuzz.sh`); berth's own test binary
//! includes this file (`tests/it/fuzz_corpus.rs`) and replays the committed corpora
//! (`fuzz/corpus/<target>/`) through the same functions on every `cargo test`, so a harness
//! that stops compiling, or an input that once crashed, fails CI without AFL.
//!
//! A panic is a finding: every assertion here is an invariant the library promises.

use std::collections::BTreeMap;

use berth::billing::decide::{self, Decision, Snapshot, Stripe};
use berth::billing::edit::{self, BillingKey, Patch};
use berth::billing::event::{self, Object};
use berth::billing::message::{self, Origin};
use berth::billing::signature;
use berth::driver::dokku::parse;
use berth::model::live::Live;
use berth::plan::{PlanOptions, plan};
use berth::spec::TenantState;
use berth::spec::source::{Found, FoundEntry, SourceSet, build_source_set};
use berth::spec::yaml::{self, Value};

/// A harness core.
pub type Target = fn(&[u8]);

/// The targets, by name (the folder under `fuzz/corpus/` and the AFL binary).
pub const TARGETS: &[(&str, Target)] = &[
    ("loader", loader),
    ("dokku_parse", dokku_parse),
    ("webhook", webhook),
    ("yaml_edit", yaml_edit),
    ("push_webhook", push_webhook),
];

/// The Dokku fleet example's environment: tenant-only inputs are read beside it.
const DOKKU_ENV: &str = include_str!("../../examples/dokku-fleet/environments/production.yaml");
/// The isolated-stacks example's environment (Docker hosts, port ranges).
const DOCKER_ENV: &str = include_str!("../../examples/isolated-stacks/environments/stacks.yaml");
/// The Dokku fleet example's tenant and new-tenant template (the webhook target's files).
const ACME: &str = include_str!("../../examples/dokku-fleet/tenants/acme.yaml");
const TEMPLATE: &str = include_str!("../../examples/dokku-fleet/templates/tenant.yaml");

/// A section header of a multi-file loader input: `==> tenants/acme.yaml <==`.
const SECTION: &str = "==> ";
const SECTION_END: &str = " <==";

/// Split a loader input into repo entries.
///
/// An input that starts with `==> path <==` lines is a repo: each header names a file
/// (`environments/…` or `tenants/…`, any name, traversal and dot files included) and the bytes
/// up to the next header are its content; a header ending in ` <== link` makes the entry a
/// symlink. Any other input is one tenant file, `tenants/acme.yaml`, beside the two example
/// environments.
#[must_use]
pub fn split_repo(data: &[u8]) -> Vec<Found> {
    let entry = |path: &str, bytes: &[u8], link: bool| {
        let (dir, name) = path.split_once('/').unwrap_or(("tenants", path));
        Found {
            dir: dir.to_string(),
            name: name.to_string(),
            entry: if link {
                FoundEntry::Other
            } else {
                FoundEntry::File {
                    bytes: bytes.to_vec(),
                    size: bytes.len() as u64,
                }
            },
        }
    };
    if !data.starts_with(SECTION.as_bytes()) {
        return vec![
            entry("environments/production.yaml", DOKKU_ENV.as_bytes(), false),
            entry("environments/stacks.yaml", DOCKER_ENV.as_bytes(), false),
            entry("tenants/acme.yaml", data, false),
        ];
    }
    let mut out: Vec<Found> = Vec::new();
    let mut rest = data;
    while let Some(after) = rest.strip_prefix(SECTION.as_bytes()) {
        let line_end = after
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(after.len());
        let header = String::from_utf8_lossy(&after[..line_end]);
        let body_start = (line_end + 1).min(after.len());
        let body = &after[body_start..];
        let next = find(body, b"\n==> ").map_or(body.len(), |i| i + 1);
        let (path, link) = match header.split_once(SECTION_END) {
            Some((path, tail)) => (path.to_string(), tail.trim() == "link"),
            None => (header.to_string(), false),
        };
        // A directory holds a name once: a repeated path is dropped, as no reader could
        // list it twice.
        let found = entry(&path, &body[..next], link);
        if !out
            .iter()
            .any(|f| f.dir == found.dir && f.name == found.name)
        {
            out.push(found);
        }
        rest = &body[next..];
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const PLAN_OPTIONS: PlanOptions<'static> = PlanOptions {
    allow_destroys: true,
    allow_empty: true,
    baseline: None,
    scope: None,
    now: None,
    purge_now: &[],
    allow_upgrades: false,
};

/// Loader: files → spec → validate → (when valid) plan against an empty host, apply in memory,
/// plan again.
///
/// Invariants: no panic; every diagnostic points inside its file on character boundaries and
/// renders; validation is deterministic; a valid fleet's plan is well formed and converges.
pub fn loader(data: &[u8]) {
    let sources = build_source_set(split_repo(data), Some(berth::repo::embedded_local()));
    let (fleet, diagnostics) = berth::validate::validate(&sources);
    check_locations(&sources, &diagnostics);
    let _ = berth::output::diagnostics::render_text(&sources, &diagnostics, false);
    let _ = berth::output::diagnostics::render_json(&sources, &diagnostics);
    let (again, diagnostics_again) = berth::validate::validate(&sources);
    assert_eq!(
        diagnostics, diagnostics_again,
        "validation is not deterministic"
    );
    assert_eq!(fleet, again, "validation is not deterministic");
    let Some(fleet) = fleet else { return };
    let mut live = Live::default();
    let first = plan(&fleet, &live, &PLAN_OPTIONS);
    let defects = berth::plan::check::check(&first, &live);
    assert!(defects.is_empty(), "malformed plan: {defects:?}");
    let _ = berth::output::plan::render_text(&first, false);
    if !first.refusals.is_empty() {
        return;
    }
    let secrets = fleet
        .environments
        .values()
        .flat_map(|e| e.secrets.names.iter())
        .map(|name| (name.clone(), format!("fuzz-{name}")))
        .collect::<BTreeMap<_, _>>();
    if berth::driver::memory::apply(&first, &mut live, &secrets).is_err() {
        return;
    }
    let after = plan(&fleet, &live, &PLAN_OPTIONS);
    assert!(
        after.steps.is_empty(),
        "plan does not converge:\n{}",
        berth::output::plan::render_text(&after, false)
    );
}

fn check_locations(sources: &SourceSet, diagnostics: &[berth::validate::Diagnostic]) {
    for d in diagnostics {
        for l in std::iter::once(&d.location).chain(&d.related) {
            let Some(file) = sources.files.iter().find(|f| f.path == l.file) else {
                panic!("diagnostic names a file that was not read: {}", l.file);
            };
            let text = file.text();
            assert!(
                l.span.start <= l.span.end && l.span.end <= text.len(),
                "span {:?} outside {} ({} bytes): {}",
                l.span,
                l.file,
                text.len(),
                d.message
            );
            assert!(
                text.is_char_boundary(l.span.start) && text.is_char_boundary(l.span.end),
                "span {:?} splits a character in {}",
                l.span,
                l.file
            );
            assert!(l.line >= 1 && l.column >= 1);
        }
    }
}

/// Dokku output parsers: the same bytes through every parser of `parse.rs` (stdout is read
/// lossily as UTF-8, as the transport does).
///
/// Invariants: no panic; ANSI stripping removes every CSI introducer and is idempotent; list
/// parsers return no blank or header entries; `tail` keeps at most the lines asked for.
pub fn dokku_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let stripped = parse::strip_ansi(&text);
    assert!(!stripped.contains('\x1b'), "an ESC left after stripping");
    assert_eq!(parse::strip_ansi(&stripped), stripped, "stripping twice");
    let _ = parse::version(&text);
    let _ = parse::json_string_list(&text);
    if let Ok(reports) = parse::json_report_lines(&text) {
        for report in &reports {
            for plugin in ["app", "domains", "ps", "postgres", "redis", "letsencrypt"] {
                let _ = parse::lookup(report, plugin, "deployed");
            }
        }
    }
    let _ = parse::config_export(&text);
    if let Ok(scale) = parse::scale(&text) {
        assert!(scale.keys().all(|k| !k.contains('\n')));
    }
    for name in parse::name_lines(&text) {
        assert!(!name.trim().is_empty() && !name.contains('\n'));
        assert!(!name.starts_with("=====>") && !name.starts_with("----->"));
    }
    for mount in parse::mounts(&text) {
        assert!(!mount.is_empty() && !mount.contains(char::is_whitespace));
    }
    for max in [0, 1, 5] {
        let tail = parse::tail(&text, max);
        assert!(tail.lines().count() <= max);
        assert!(
            !tail
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "a control character reaches an error message"
        );
    }
}

/// The webhook's endpoint secret in the harness (a test value).
const SECRET: &[u8] = b"whsec_fuzz";
/// The harness's clock.
const NOW: i64 = 1_750_000_000;

/// Stripe webhook path: `Stripe-Signature` header (first line) + body (the rest) → signature
/// check → event → decision → edited file.
///
/// The fuzzer cannot forge an HMAC, so after checking the fuzzed header the harness signs the
/// body itself and follows the verified path, as the bridge would for a genuine request.
///
/// Invariants: no panic; a fuzzed header verifies only when it carries the real signature; a
/// genuine header always verifies; an edit reads back as decided; the same event applied to
/// its own result changes nothing (replays are harmless).
pub fn webhook(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let _ = signature::parse_header(&header);
    if let Ok(t) = signature::verify(&header, body, &[SECRET], NOW, 300) {
        let genuine = signature::signature(SECRET, t, body);
        let parsed = signature::parse_header(&header).expect("a verified header parses");
        assert!(
            parsed.v1.iter().any(|s| hex_eq(s, &genuine)),
            "a header without the genuine signature verified"
        );
    }
    let signed = signature::header(&[SECRET, b"whsec_other"], NOW, body);
    assert_eq!(
        signature::verify(&signed, body, &[SECRET], NOW, 300),
        Ok(NOW),
        "a genuine signature did not verify"
    );
    assert!(signature::verify(&signed, body, &[b"whsec_wrong"], NOW, 300).is_err());
    let Ok(event) = event::parse(body) else {
        return;
    };
    let _ = event.subscription_id();
    let _ = event.customer();
    let tenant = match event.tenant_id() {
        Some(raw) if berth::model::is_dns_label(raw) => raw.to_string(),
        Some(raw) => {
            let reason = berth::billing::git::invalid_tenant_id(raw);
            assert!(!reason.contains('\n'), "multi-line refusal reason");
            return;
        }
        None => "acme".to_string(),
    };
    let file = (tenant == "acme").then_some(ACME);
    let prices = BTreeMap::from([
        ("price_1Starter".to_string(), "starter".to_string()),
        ("price_1Pro".to_string(), "pro".to_string()),
        ("price_1Enterprise".to_string(), "enterprise".to_string()),
    ]);
    let stripe = Stripe {
        environment: "production",
        prices: &prices,
        template: Some(TEMPLATE),
    };
    let snapshots: Vec<Snapshot<'_>> = match &event.object {
        Object::Subscription(subscription) => [false, true]
            .into_iter()
            .map(|authoritative| Snapshot::Subscription {
                subscription,
                authoritative,
            })
            .collect(),
        Object::Checkout(checkout) => vec![Snapshot::Checkout(checkout)],
        Object::Invoice(_) | Object::Ignored => return,
    };
    for snapshot in snapshots {
        let Decision::Write { text, change } =
            decide::decide(&tenant, file, stripe, event.created, snapshot)
        else {
            continue;
        };
        let _ = message::summary(&change);
        let _ = message::message(
            &tenant,
            &change,
            Origin {
                event_id: &event.id,
                event_type: &event.event_type,
                subscription: event.subscription_id(),
                refetched: false,
            },
        );
        let current = edit::read(&text).expect("a written tenant file reads back");
        if let Some((_, tier)) = &change.tier {
            assert_eq!(current.tier.as_deref(), Some(tier.as_str()));
        }
        if let Some((_, state)) = change.state {
            assert_eq!(current.state(), Some(state));
        }
        assert!(
            !matches!(
                decide::decide(&tenant, Some(&text), stripe, event.created, snapshot),
                Decision::Write { .. }
            ),
            "replaying the event on its own result writes again"
        );
    }
}

fn hex_eq(bytes: &[u8], hex: &str) -> bool {
    bytes.len() * 2 == hex.len()
        && bytes
            .iter()
            .zip(hex.as_bytes().chunks(2))
            .all(|(b, pair)| format!("{b:02x}").as_bytes() == pair)
}

const TIERS: &[&str] = &["starter", "pro", "enterprise", "tier-2", "9"];
const STATES: &[TenantState] = &[
    TenantState::Active,
    TenantState::Suspended,
    TenantState::Cancelled,
];
const VALUES: &[&str] = &[
    "cus_Fuzz1",
    "sub_1Fuzz",
    "active",
    "1750000000",
    "true",
    "null",
    "price_1Pro",
    "a b",
    "",
];

/// The patch a yaml_edit input asks for: byte 0 picks tier and state, byte 1 the billing keys,
/// byte 2 their values.
fn patch_of(selector: [u8; 3]) -> Patch {
    let [a, b, c] = selector;
    let mut patch = Patch {
        tier: (a & 0x07 != 0).then(|| TIERS[usize::from(a & 0x07) % TIERS.len()].to_string()),
        state: ((a >> 3) & 0x03 != 0).then(|| STATES[usize::from((a >> 3) & 0x03) - 1]),
        billing: BTreeMap::new(),
    };
    for (i, key) in BillingKey::ALL.iter().enumerate() {
        if b & (1 << (i % 8)) != 0 {
            let value = VALUES[(usize::from(c) + i) % VALUES.len()];
            patch.billing.insert(*key, value.to_string());
        }
    }
    patch
}

/// Lossless YAML editor: three selector bytes (see [`patch_of`]) then the tenant file.
///
/// Invariants: no panic; an edit either fails whole or yields YAML that reads back as
/// written; each key's edit changes only the bytes of that key's old value (or inserts without
/// removing anything), so every other byte — comments, order, quoting, layout — is unchanged.
pub fn yaml_edit(data: &[u8]) {
    let Some((selector, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let patch = patch_of(*selector);
    if edit::read(text).is_err() {
        assert!(
            edit::apply(text, &patch).is_err(),
            "an unreadable file was edited"
        );
        return;
    }
    let whole = edit::apply(text, &patch);
    // The same edit, one key at a time, as `apply` performs it.
    let mut steps: Vec<(Vec<&str>, Patch)> = Vec::new();
    if let Some(tier) = &patch.tier {
        let p = Patch {
            tier: Some(tier.clone()),
            ..Patch::default()
        };
        steps.push((vec!["tier"], p));
    }
    if let Some(state) = patch.state {
        let p = Patch {
            state: Some(state),
            ..Patch::default()
        };
        steps.push((vec!["state"], p));
    }
    for (key, value) in &patch.billing {
        let mut p = Patch::default();
        p.billing.insert(*key, value.clone());
        steps.push((vec!["billing", key.as_str()], p));
    }
    let mut current = text.to_string();
    let mut failed = false;
    for (path, step) in &steps {
        match edit::apply(&current, step) {
            Ok(next) => {
                assert_only_value_changed(&current, &next, path);
                let read = edit::read(&next).expect("an edited file reads back");
                assert!(yaml::parse(&next).is_ok());
                if let Some(tier) = &step.tier {
                    assert_eq!(read.tier.as_deref(), Some(tier.as_str()));
                }
                current = next;
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match whole {
        Ok(out) => {
            assert!(!failed, "the whole patch applied but a single key did not");
            assert_eq!(
                out, current,
                "the whole patch differs from its keys applied in turn"
            );
        }
        Err(_) => assert!(
            failed || steps.is_empty(),
            "a patch failed whole but each key applied"
        ),
    }
}

/// `before` → `after` changed only the value bytes of the key at `path` (or inserted text).
///
/// A pure insertion keeps every old byte, in order. Otherwise the edit must be a splice inside
/// the value: `after` starts with every byte before the value and ends with every byte from
/// the end of its text on. (A greedy common-prefix/suffix diff is not enough to tell: when
/// the new value shares bytes with its surroundings — `pro  \x1f  x pro` → `pro` before
/// blanks — the greedy regions spill past a splice that is in fact confined; AFL found that.)
fn assert_only_value_changed(before: &str, after: &str, path: &[&str]) {
    let (b, a) = (before.as_bytes(), after.as_bytes());
    let common = |x: &mut dyn Iterator<Item = (&u8, &u8)>| x.take_while(|(p, q)| p == q).count();
    let prefix = common(&mut b.iter().zip(a));
    let suffix = common(
        &mut b
            .iter()
            .rev()
            .zip(a.iter().rev())
            .take(b.len().min(a.len()) - prefix),
    );
    if prefix + suffix == b.len() {
        return; // a pure insertion: every old byte is still there, in order
    }
    let root = yaml::parse(before).expect("the file parsed before the edit");
    let value = root
        .at(path)
        .expect("bytes were removed, so the key existed");
    assert!(
        matches!(value.value, Value::Scalar { .. }),
        "a non-scalar value was rewritten at {path:?}"
    );
    // Nothing before the value's first byte, and nothing from the end of its text on (a
    // trailing comment, the next line) may move.
    let (start, end) = (value.span.start, scalar_text_end(before, value.span.start));
    let confined =
        a.len() >= start + (b.len() - end) && a.starts_with(&b[..start]) && a.ends_with(&b[end..]);
    assert!(
        confined,
        "edit of {path:?} changed bytes outside its value {:?}: {:?} became {:?}",
        start..end,
        before,
        after
    );
}

/// Where a single-line scalar's text ends: after its closing quote, or for a plain scalar
/// before a ` #` comment or the end of the line (trailing blanks excluded).
fn scalar_text_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let line_end = text[start..]
        .find(['\n', '\r'])
        .map_or(text.len(), |i| start + i);
    let mut i = start + 1;
    match bytes.get(start) {
        Some(b'"') => {
            while i < line_end {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            line_end
        }
        Some(b'\'') => {
            while i < line_end {
                match (bytes[i], bytes.get(i + 1)) {
                    (b'\'', Some(b'\'')) => i += 2,
                    (b'\'', _) => return i + 1,
                    _ => i += 1,
                }
            }
            line_end
        }
        _ => {
            let line_start = text[..start].rfind(['\n', '\r']).map_or(0, |i| i + 1);
            let in_flow = text[line_start..start].contains(['{', '[']);
            let line_end = if in_flow {
                text[start..line_end]
                    .find([',', '}', ']'])
                    .map_or(line_end, |i| start + i)
            } else {
                line_end
            };
            let comment = (start + 1..line_end)
                .find(|&i| bytes[i] == b'#' && matches!(bytes[i - 1], b' ' | b'\t'))
                .unwrap_or(line_end);
            start + text[start..comment].trim_end().len()
        }
    }
}

/// `berth daemon`'s git push webhooks (`/hooks/git`). The first byte picks the header (GitHub's
/// `X-Hub-Signature-256`, Gitea's `X-Gitea-Signature`, GitLab's `X-Gitlab-Token`), the rest of
/// the first line is its value, the remaining bytes the body.
///
/// Invariants: no panic; a fuzzed header verifies only when it is the genuine signature (or
/// token) of the body; genuine headers of every forge always verify, and never under another
/// secret; a refusal never quotes the header.
pub fn push_webhook(data: &[u8]) {
    use berth::daemon::webhook::{
        Forge, WebhookSecrets, gitea_signature, github_signature, verify,
    };
    const KEY: &[u8] = b"push-hook-secret";
    let (selector, rest) = data.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let value = String::from_utf8_lossy(&rest[..split]).into_owned();
    let body = rest.get(split + 1..).unwrap_or_default();
    let names = ["x-hub-signature-256", "x-gitea-signature", "x-gitlab-token"];
    let name = names[usize::from(selector % 3)];
    let secrets = |key: &[u8]| WebhookSecrets {
        github: vec![key.to_vec()],
        gitlab: vec![key.to_vec()],
        gitea: vec![key.to_vec()],
    };
    let ours = secrets(KEY);
    match verify(|h| (h == name).then(|| value.clone()), body, &ours) {
        Ok(Forge::GitHub) => assert_eq!(
            value.trim().to_ascii_lowercase(),
            github_signature(KEY, body),
            "a forged GitHub signature verified"
        ),
        Ok(Forge::Gitea) => assert_eq!(
            value.trim().to_ascii_lowercase(),
            gitea_signature(KEY, body),
            "a forged Gitea signature verified"
        ),
        Ok(Forge::GitLab) => assert_eq!(value.as_bytes(), KEY, "a wrong GitLab token verified"),
        Err(refused) => {
            let message = refused.to_string();
            assert!(
                value.len() < 16 || !message.contains(value.as_str()),
                "a refusal quotes the header: {message}"
            );
        }
    }
    let genuine = [
        (names[0], github_signature(KEY, body), Forge::GitHub),
        (names[1], gitea_signature(KEY, body), Forge::Gitea),
        (
            names[2],
            String::from_utf8_lossy(KEY).into_owned(),
            Forge::GitLab,
        ),
    ];
    let other = secrets(b"another-secret");
    for (header, value, forge) in genuine {
        let lookup = |h: &str| (h == header).then(|| value.clone());
        assert_eq!(
            verify(lookup, body, &ours),
            Ok(forge),
            "a genuine {header} was refused"
        );
        assert!(
            verify(lookup, body, &other).is_err(),
            "{header} verified under another secret"
        );
    }
}
