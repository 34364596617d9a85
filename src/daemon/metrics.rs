//! `/metrics` in the Prometheus text format (version 0.0.4), written by hand: a handful of
//! counters, one histogram and gauges read from the [`Status`].
//!
//! Architecture invariant: pure. The daemon counts; rendering is a function of the values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::status::{State, Status};

/// Upper bounds of the pass duration histogram, in seconds.
pub const PASS_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The daemon's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Passes by `(trigger, result)`.
    pub passes: BTreeMap<(String, String), u64>,
    /// Pass durations: counts per bucket of [`PASS_BUCKETS`] (not cumulative), sum, count.
    pub pass_buckets: [u64; PASS_BUCKETS.len()],
    /// Sum of pass durations in seconds.
    pub pass_seconds: f64,
    /// Passes measured.
    pub pass_count: u64,
    /// Steps by `(kind, result)`.
    pub steps: BTreeMap<(String, String), u64>,
    /// Times a pass found a host's lease held by someone else, by `environment/host`.
    pub lease_waits: BTreeMap<String, u64>,
    /// Failed fetches of the followed remote.
    pub git_fetch_errors: u64,
    /// Verified push webhooks by forge, and refused ones under `refused`.
    pub webhooks: BTreeMap<String, u64>,
}

impl Metrics {
    /// Count a pass.
    pub fn pass(&mut self, trigger: &str, result: &str, seconds: f64) {
        *self
            .passes
            .entry((trigger.to_string(), result.to_string()))
            .or_default() += 1;
        let bucket = PASS_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(PASS_BUCKETS.len() - 1);
        if seconds <= PASS_BUCKETS[PASS_BUCKETS.len() - 1] {
            self.pass_buckets[bucket] += 1;
        }
        self.pass_seconds += seconds;
        self.pass_count += 1;
    }

    /// Render everything, with the gauges taken from `status`.
    #[must_use]
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::new();
        let n = family_into(
            &mut out,
            "berth_daemon_passes_total",
            "counter",
            "Passes run, by what woke the daemon and how the pass ended.",
        );
        for ((trigger, result), v) in &self.passes {
            let _ = writeln!(
                out,
                "{n}{{trigger=\"{}\",result=\"{}\"}} {v}",
                esc(trigger),
                esc(result)
            );
        }

        let n = family_into(
            &mut out,
            "berth_daemon_pass_duration_seconds",
            "histogram",
            "Wall time of passes.",
        );
        let mut cumulative = 0;
        for (bound, count) in PASS_BUCKETS.iter().zip(&self.pass_buckets) {
            cumulative += count;
            let _ = writeln!(out, "{n}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{n}_bucket{{le=\"+Inf\"}} {}", self.pass_count);
        let _ = writeln!(out, "{n}_sum {}", self.pass_seconds);
        let _ = writeln!(out, "{n}_count {}", self.pass_count);

        let n = family_into(
            &mut out,
            "berth_daemon_steps_total",
            "counter",
            "Plan steps run by passes, by change kind and result.",
        );
        for ((kind, result), v) in &self.steps {
            let _ = writeln!(
                out,
                "{n}{{kind=\"{}\",result=\"{}\"}} {v}",
                esc(kind),
                esc(result)
            );
        }

        let n = family_into(
            &mut out,
            "berth_daemon_drifted_objects",
            "gauge",
            "Drift steps the last pass that looked at a tenant found for it.",
        );
        for (tenant, t) in &status.tenants {
            if t.drift > 0 {
                let _ = writeln!(out, "{n}{{tenant=\"{}\"}} {}", esc(tenant), t.drift);
            }
        }

        let n = family_into(
            &mut out,
            "berth_daemon_tenants",
            "gauge",
            "Tenants per state.",
        );
        for state in State::ALL {
            let count = status.counts.get(&state).copied().unwrap_or(0);
            let _ = writeln!(out, "{n}{{state=\"{}\"}} {count}", state.name());
        }

        let n = family_into(
            &mut out,
            "berth_daemon_tenant_failures",
            "gauge",
            "Failures in a row of tenants that are failing (degraded or failed).",
        );
        for (tenant, t) in &status.tenants {
            if t.failures > 0 {
                let _ = writeln!(out, "{n}{{tenant=\"{}\"}} {}", esc(tenant), t.failures);
            }
        }

        let n = family_into(
            &mut out,
            "berth_daemon_lease_waits_total",
            "counter",
            "Times a pass found a host's lease held by another holder and left the host for later.",
        );
        for (host, v) in &self.lease_waits {
            let _ = writeln!(out, "{n}{{host=\"{}\"}} {v}", esc(host));
        }

        let n = family_into(
            &mut out,
            "berth_daemon_git_fetch_errors_total",
            "counter",
            "Failed fetches of the followed remote.",
        );
        let _ = writeln!(out, "{n} {}", self.git_fetch_errors);

        let n = family_into(
            &mut out,
            "berth_daemon_webhooks_total",
            "counter",
            "Push webhooks received, by forge (refused: failed verification).",
        );
        for (forge, v) in &self.webhooks {
            let _ = writeln!(out, "{n}{{forge=\"{}\"}} {v}", esc(forge));
        }

        let n = family_into(
            &mut out,
            "berth_daemon_applied_commit_timestamp_seconds",
            "gauge",
            "Commit time of the commit each host records as applied.",
        );
        for (key, h) in &status.hosts {
            if let Some(c) = &h.applied {
                let _ = writeln!(out, "{n}{{host=\"{}\"}} {}", esc(key), c.unix);
            }
        }

        let n = family_into(
            &mut out,
            "berth_daemon_commits_behind",
            "gauge",
            "Commits the followed head has that a host's applied commit lacks.",
        );
        for (key, h) in &status.hosts {
            if let Some(b) = h.commits_behind {
                let _ = writeln!(out, "{n}{{host=\"{}\"}} {b}", esc(key));
            }
        }

        let n = family_into(
            &mut out,
            "berth_daemon_paused",
            "gauge",
            "1 while the daemon is paused.",
        );
        let _ = writeln!(out, "{n} {}", u8::from(status.daemon.paused));
        out
    }
}

fn family_into(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    name.to_string()
}

/// Escape a label value (`\`, `"`, newline).
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let mut m = Metrics::default();
        m.pass("poll", "ok", 0.07);
        m.pass("poll", "ok", 3.0);
        m.pass("webhook", "partial", 1000.0);
        m.steps.insert(("create-app".into(), "succeeded".into()), 2);
        let mut status = Status::default();
        status.tenants.insert(
            "a\"b".into(),
            super::super::status::TenantView {
                environment: "prod".into(),
                host: None,
                mode: "heal".into(),
                state: State::Degraded,
                drift: 2,
                pending: 0,
                last_pass_at: None,
                last_error: None,
                last_error_at: None,
                failures: 3,
                next_try_at: None,
                waiting_for_change: false,
                note: None,
            },
        );
        status.recount();
        let text = m.render(&status);
        assert!(text.contains("berth_daemon_passes_total{trigger=\"poll\",result=\"ok\"} 2"));
        assert!(text.contains("berth_daemon_pass_duration_seconds_bucket{le=\"0.05\"} 0"));
        assert!(text.contains("berth_daemon_pass_duration_seconds_bucket{le=\"0.1\"} 1"));
        assert!(text.contains("berth_daemon_pass_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("berth_daemon_pass_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("berth_daemon_pass_duration_seconds_count 3"));
        assert!(text.contains("berth_daemon_drifted_objects{tenant=\"a\\\"b\"} 2"));
        assert!(text.contains("berth_daemon_tenants{state=\"degraded\"} 1"));
        assert!(text.contains("berth_daemon_tenant_failures{tenant=\"a\\\"b\"} 3"));
        assert!(
            text.contains("berth_daemon_steps_total{kind=\"create-app\",result=\"succeeded\"} 2")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
