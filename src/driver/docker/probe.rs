//! berth's own HTTP health probe: `GET path` over a plain TCP connection, read the status
//! line. No tool inside the image is needed (the image may have no shell at all).
//!
//! HTTP/1.1 with `Connection: close`, one request per connection; a 2xx or 3xx status is
//! healthy. Bodies are not read beyond the status line and a short snippet for the report,
//! and never logged whole.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// A 2xx or 3xx answer.
    Healthy,
    /// Any other answer, or none: what was seen, for the report.
    Unhealthy(String),
}

/// Probe `http://{address}:{port}{path}` once, within `timeout`.
pub async fn http(address: &str, port: u16, path: &str, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, get(address, port, path)).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => ProbeResult::Unhealthy(format!("GET {path} on {address}:{port}: {e}")),
        Err(_) => ProbeResult::Unhealthy(format!(
            "GET {path} on {address}:{port}: no answer within {:.1} s",
            timeout.as_secs_f64()
        )),
    }
}

async fn get(address: &str, port: u16, path: &str) -> std::io::Result<ProbeResult> {
    let mut stream = tokio::net::TcpStream::connect((address, port)).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 512];
    let mut filled = 0;
    // Read until the status line is complete (or the peer closes).
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
        if buf[..filled].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..filled]);
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    Ok(match code {
        Some(c) if (200..400).contains(&c) => ProbeResult::Healthy,
        Some(_) => ProbeResult::Unhealthy(format!("GET {path} answered `{status_line}`")),
        None if filled == 0 => ProbeResult::Unhealthy(format!(
            "GET {path}: the connection closed without an answer"
        )),
        None => ProbeResult::Unhealthy(format!("GET {path}: not an HTTP answer")),
    })
}
