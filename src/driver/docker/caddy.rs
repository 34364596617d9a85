//! berth's routes in a host's Caddy, through Caddy's admin API (its JSON config).
//!
//! Every route berth makes carries an `@id` (`berth.<environment>.<host>.<tenant>.<app>`), so
//! it is read, replaced and removed as one object (`/id/<id>`) without touching anything
//! else in the config: routes, servers and apps the operator wrote stay as they are. The
//! server berth's routes live in (`apps.http.servers.<server>`) is created when missing,
//! with a last route that answers 404, so an unknown or removed tenant's host name gets a
//! 404 rather than Caddy's empty 200. New routes go in front (`…/routes/0`).
//!
//! A route is a host matcher and a `reverse_proxy` to the addresses of the app's web
//! containers on their network. When a container is replaced, [`Caddy::repoint`] moves the
//! dials from the old address to the new one while both run, so no request is sent to a
//! container that is going away.

use serde_json::{Value, json};

use crate::driver::http::{Answer, Http};
use crate::model::live::HostRef;

/// A route as Caddy holds it: name (`<tenant>.<app>`), host names, dial addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaddyRoute {
    /// `<tenant>.<app>`.
    pub name: String,
    /// Host names matched.
    pub hosts: Vec<String>,
    /// `address:port` of each upstream.
    pub dials: Vec<String>,
}

/// A failed admin API call.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {reason}")]
pub struct CaddyError {
    /// `PUT …/routes/0`.
    pub call: String,
    /// What Caddy (or the connection) said.
    pub reason: String,
    /// The connection failed or Caddy answered 5xx.
    pub transient: bool,
}

/// One host's Caddy.
#[derive(Debug, Clone)]
pub struct Caddy {
    http: Http,
    admin: String,
    server: String,
    listen: String,
    prefix: String,
    fallback: String,
}

impl Caddy {
    /// The Caddy configured for `host`.
    #[must_use]
    pub fn new(config: &crate::model::Caddy, host: &HostRef) -> Self {
        Caddy {
            http: Http::new(std::time::Duration::from_secs(15)),
            admin: config.admin.trim_end_matches('/').to_string(),
            server: config.server.clone(),
            listen: config.listen.clone(),
            prefix: format!("berth.{}.{}.", host.environment, host.host),
            fallback: format!("berth-fallback.{}.{}", host.environment, host.host),
        }
    }

    fn id(&self, route: &str) -> String {
        format!("{}{route}", self.prefix)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CaddyError> {
        let url = format!("{}{path}", self.admin);
        let call = format!("{method} {url}");
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        // Caddy drops its admin connections when a config change lands: never reuse one.
        self.http
            .send(method, &url, &[("connection", "close")], body)
            .await
            .map_err(|e| CaddyError {
                call,
                reason: match e {
                    crate::driver::http::HttpError::Transport { reason, .. } => reason,
                    crate::driver::http::HttpError::BadUrl { .. } => "not a usable URL".into(),
                },
                transient: true,
            })
    }

    async fn expect_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CaddyError> {
        let answer = self.call(method, path, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(refused(method, &format!("{}{path}", self.admin), &answer))
        }
    }

    /// The value at a config path; `None` when Caddy has nothing there.
    async fn get(&self, path: &str) -> Result<Option<Value>, CaddyError> {
        let answer = self.call("GET", path, None).await?;
        if answer.status == 404 || answer.status == 400 {
            return Ok(None);
        }
        if !(200..300).contains(&answer.status) {
            return Err(refused("GET", &format!("{}{path}", self.admin), &answer));
        }
        let value: Value = serde_json::from_slice(&answer.body).map_err(|e| CaddyError {
            call: format!("GET {}{path}", self.admin),
            reason: format!("not JSON: {e}"),
            transient: false,
        })?;
        Ok((!value.is_null()).then_some(value))
    }

    fn routes_path(&self) -> String {
        format!("/config/apps/http/servers/{}/routes", self.server)
    }

    /// berth's routes on this host, as Caddy holds them (one GET).
    ///
    /// # Errors
    /// Caddy unreachable, or an answer that is not a config.
    pub async fn observe(&self) -> Result<Vec<CaddyRoute>, CaddyError> {
        let routes = self.get(&self.routes_path()).await?;
        let Some(Value::Array(routes)) = routes else {
            return Ok(Vec::new());
        };
        Ok(routes.iter().filter_map(|r| self.parse(r)).collect())
    }

    fn parse(&self, route: &Value) -> Option<CaddyRoute> {
        let name = route.get("@id")?.as_str()?.strip_prefix(&self.prefix)?;
        let (tenant, app) = name.split_once('.')?;
        if tenant.is_empty() || app.is_empty() || app.contains('.') {
            return None;
        }
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut hosts: Vec<String> = route
            .get("match")
            .and_then(Value::as_array)
            .map(|m| m.iter().flat_map(|m| strings(m.get("host"))).collect())
            .unwrap_or_default();
        hosts.sort();
        let mut dials: Vec<String> = route
            .get("handle")
            .and_then(Value::as_array)
            .map(|handlers| {
                handlers
                    .iter()
                    .filter(|h| h.get("handler").and_then(Value::as_str) == Some("reverse_proxy"))
                    .filter_map(|h| h.get("upstreams").and_then(Value::as_array))
                    .flatten()
                    .filter_map(|u| u.get("dial").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        dials.sort();
        Some(CaddyRoute {
            name: name.to_string(),
            hosts,
            dials,
        })
    }

    fn route_json(&self, route: &str, hosts: &[String], dials: &[String]) -> Value {
        json!({
            "@id": self.id(route),
            "match": [{ "host": hosts }],
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": dials.iter().map(|d| json!({ "dial": d })).collect::<Vec<_>>(),
            }],
            "terminal": true,
        })
    }

    /// Create or replace route `route` (`<tenant>.<app>`).
    ///
    /// # Errors
    /// Caddy unreachable or refusing the config.
    pub async fn put(
        &self,
        route: &str,
        hosts: &[String],
        dials: &[String],
    ) -> Result<(), CaddyError> {
        let body = self.route_json(route, hosts, dials);
        let id_path = format!("/id/{}", self.id(route));
        let existing = self.call("GET", &id_path, None).await?;
        if (200..300).contains(&existing.status) {
            self.expect_ok("PATCH", &id_path, Some(&body)).await?;
            return Ok(());
        }
        self.ensure_server().await?;
        match self.get(&self.routes_path()).await? {
            Some(Value::Array(routes)) if !routes.is_empty() => {
                self.expect_ok("PUT", &format!("{}/0", self.routes_path()), Some(&body))
                    .await?;
            }
            _ => {
                self.expect_ok("POST", &self.routes_path(), Some(&json!([body])))
                    .await?;
            }
        }
        Ok(())
    }

    /// Make berth's server when Caddy has none of that name: listening where configured,
    /// with a last route answering 404. Parents (`apps`, `http`, `servers`) are made as
    /// needed; nothing that exists is changed.
    async fn ensure_server(&self) -> Result<(), CaddyError> {
        let port_443 = self.listen.rsplit(':').next() == Some("443");
        let mut server = json!({
            "listen": [self.listen],
            "routes": [{
                "@id": self.fallback,
                "handle": [{ "handler": "static_response", "status_code": 404 }],
            }],
        });
        if !port_443 {
            // Host matchers would otherwise turn on automatic HTTPS for the names.
            server["automatic_https"] = json!({ "disable": true });
        }
        let segments = ["apps", "http", "servers", self.server.as_str()];
        let mut value = server;
        let mut nested = Vec::new();
        for depth in (1..=segments.len()).rev() {
            let path = format!("/config/{}", segments[..depth].join("/"));
            if self.get(&path).await?.is_some() {
                if depth == segments.len() {
                    return Ok(());
                }
                break;
            }
            nested.push(depth);
        }
        // `nested` lists missing depths, deepest first; wrap up to the shallowest missing.
        let Some(&shallowest) = nested.last() else {
            return Ok(());
        };
        for depth in (shallowest..segments.len()).rev() {
            let mut wrapper = serde_json::Map::new();
            wrapper.insert(segments[depth].to_string(), value);
            value = Value::Object(wrapper);
        }
        let path = format!("/config/{}", segments[..shallowest].join("/"));
        self.expect_ok("PUT", &path, Some(&value)).await?;
        Ok(())
    }

    /// Remove route `route`; gone already is fine.
    ///
    /// # Errors
    /// Caddy unreachable or refusing.
    pub async fn remove(&self, route: &str) -> Result<(), CaddyError> {
        let path = format!("/id/{}", self.id(route));
        let answer = self.call("DELETE", &path, None).await?;
        if (200..300).contains(&answer.status) || answer.status == 404 {
            Ok(())
        } else {
            Err(refused("DELETE", &format!("{}{path}", self.admin), &answer))
        }
    }

    /// Send what berth's routes dial at address `old` to address `new` instead, port kept
    /// (a container replaced beside its predecessor). Returns how many routes changed.
    ///
    /// # Errors
    /// Caddy unreachable or refusing.
    pub async fn repoint(&self, old: &str, new: &str) -> Result<usize, CaddyError> {
        let Some(Value::Array(routes)) = self.get(&self.routes_path()).await? else {
            return Ok(0);
        };
        let mut changed = 0;
        for mut route in routes {
            let Some(id) = route.get("@id").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if !id.starts_with(&self.prefix) {
                continue;
            }
            let mut hit = false;
            if let Some(handlers) = route.get_mut("handle").and_then(Value::as_array_mut) {
                for upstream in handlers
                    .iter_mut()
                    .filter_map(|h| h.get_mut("upstreams").and_then(Value::as_array_mut))
                    .flatten()
                {
                    let moved = upstream
                        .get("dial")
                        .and_then(Value::as_str)
                        .and_then(|d| d.rsplit_once(':'))
                        .filter(|(address, _)| *address == old)
                        .map(|(_, port)| format!("{new}:{port}"));
                    if let Some(dial) = moved {
                        upstream["dial"] = json!(dial);
                        hit = true;
                    }
                }
            }
            if hit {
                self.expect_ok("PATCH", &format!("/id/{id}"), Some(&route))
                    .await?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

fn refused(method: &str, url: &str, answer: &Answer) -> CaddyError {
    let text = String::from_utf8_lossy(&answer.body);
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect());
    CaddyError {
        call: format!("{method} {url}"),
        reason: format!("Caddy answered {}: {}", answer.status, message.trim()),
        transient: answer.status >= 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caddy() -> Caddy {
        Caddy::new(
            &crate::model::Caddy {
                admin: "http://127.0.0.1:2019/".into(),
                server: "berth".into(),
                listen: ":80".into(),
            },
            &HostRef::new("prod", "web-1"),
        )
    }

    #[test]
    fn routes_round_trip_and_foreign_ones_are_ignored() {
        let c = caddy();
        let route = c.route_json(
            "acme.site",
            &["acme.example.com".into()],
            &["172.18.0.5:3000".into()],
        );
        assert_eq!(route["@id"], "berth.prod.web-1.acme.site");
        assert_eq!(
            c.parse(&route),
            Some(CaddyRoute {
                name: "acme.site".into(),
                hosts: vec!["acme.example.com".into()],
                dials: vec!["172.18.0.5:3000".into()],
            })
        );
        // Another host's, the operator's own, and the fallback are not berth's routes here.
        for id in [
            "berth.prod.web-2.acme.site",
            "mine",
            "berth-fallback.prod.web-1",
        ] {
            let mut other = route.clone();
            other["@id"] = json!(id);
            assert_eq!(c.parse(&other), None, "{id}");
        }
        assert_eq!(c.parse(&json!({"handle": []})), None);
    }
}
