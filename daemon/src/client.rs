//! The CLI's side of a daemon's HTTP API: a plain HTTP/1.1 client for `status`, `import` and
//! `consult` while the daemon runs (its database can be opened by one process only). The
//! gateway's `consult` commands use it too, over TLS when the gateway serves HTTPS
//! ([`Endpoint::wrapped`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the daemon is not running (nothing answers on {0})")]
    NotRunning(SocketAddr),
    #[error("talking to the daemon on {addr}: {detail}")]
    Failed { addr: SocketAddr, detail: String },
}

/// The address to reach a daemon listening on `listen` from this PC.
pub fn local(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}

/// A stream a call can talk over.
pub trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

/// Turns the connected TCP stream into the stream the call talks over (a TLS session, for a
/// daemon serving HTTPS).
pub type Wrap = Arc<dyn Fn(TcpStream) -> std::io::Result<Box<dyn Duplex>> + Send + Sync>;

/// Where a call goes: the daemon's address, and how to talk to it.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    wrap: Option<Wrap>,
    /// How long an answer may take.
    timeout: Duration,
}

/// How long a call waits for its answer unless told otherwise.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

impl Endpoint {
    /// Plain HTTP.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            wrap: None,
            timeout: ANSWER_TIMEOUT,
        }
    }

    /// Each connection goes through `wrap` first.
    pub fn wrapped(addr: SocketAddr, wrap: Wrap) -> Self {
        Self {
            addr,
            wrap: Some(wrap),
            timeout: ANSWER_TIMEOUT,
        }
    }

    /// Waits up to `timeout` for an answer (a backup of a large archive takes its time).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Sends one request; returns the status code and the body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), ClientError> {
    call_as(addr, method, path, None, json)
}

/// Like [`call`], with `Authorization: Bearer TOKEN`.
pub fn call_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String), ClientError> {
    call_to(&Endpoint::plain(addr), method, path, token, json)
}

/// Like [`call_as`], to an [`Endpoint`].
pub fn call_to(
    to: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String), ClientError> {
    let addr = to.addr;
    let failed = |detail: String| ClientError::Failed { addr, detail };
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|_| ClientError::NotRunning(addr))?;
    tcp.set_read_timeout(Some(to.timeout))
        .map_err(|e| failed(e.to_string()))?;
    let mut stream: Box<dyn Duplex> = match &to.wrap {
        Some(wrap) => wrap(tcp).map_err(|e| failed(e.to_string()))?,
        None => Box::new(tcp),
    };
    let body = json.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    // A call without a body sends no content type: an empty "JSON" body is not JSON.
    let kind = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}{kind}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| failed(e.to_string()))?;
    let response = read_response(&mut *stream).map_err(|e| failed(e.to_string()))?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| failed("malformed HTTP answer".into()))?;
    let head = String::from_utf8_lossy(&response[..end]);
    let rest = &response[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| failed("malformed HTTP status line".into()))?;
    // Chunk sizes count bytes, so the body is reassembled before it is read as text.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        String::from_utf8_lossy(&dechunk(rest)).into_owned()
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    Ok((status, body))
}

/// Reads one answer: up to `Content-Length` when the head gives it (some servers keep the
/// connection open despite `Connection: close`), else to the end of the stream.
fn read_response(stream: &mut dyn Duplex) -> std::io::Result<Vec<u8>> {
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&buf[..n]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        if let Some(length) = length {
            while response.len() < end + 4 + length {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                response.extend_from_slice(&buf[..n]);
            }
            return Ok(response);
        }
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        response.extend_from_slice(&rest);
        return Ok(response);
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..line]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &s[line + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The token for a CLI call: `--token`, or the `TPG_TOKEN` environment variable.
pub fn token(flag: Option<String>) -> Result<String, String> {
    flag.or_else(|| std::env::var("TPG_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            "no token: pass --token, or set TPG_TOKEN (get one with the `user token` command)"
                .to_owned()
        })
}

/// Sends a call with a token and returns the body of a 2xx answer; any other answer becomes
/// an error carrying the API's message.
pub fn call_ok(
    to: &Endpoint,
    method: &str,
    path: &str,
    token: &str,
    json: Option<&str>,
) -> anyhow::Result<String> {
    let (status, body) = call_to(to, method, path, Some(token), json)?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    anyhow::bail!("{message} (HTTP {status})")
}

/// A consultation's detail (the APIs' `{consultation, timeline}`) as text for a terminal.
pub fn render_case(detail: &serde_json::Value) -> String {
    let c = &detail["consultation"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let mut out = format!(
        "consultation {}  [{}]  {} {}\n  patient {}  question: {}\n",
        s(&c["id"]),
        s(&c["state"]),
        s(&c["urgency"]),
        s(&c["specialty"]),
        s(&c["patient"]["id"]),
        s(&c["question"]),
    );
    if let Some(a) = c["assignee"].as_str() {
        out.push_str(&format!("  assigned to {a}\n"));
    }
    if c["report"].is_object() {
        let r = &c["report"];
        out.push_str(&format!(
            "  REPORT signed by {} ({})\n    findings: {}\n    impression: {}\n    recommendation: {}\n",
            s(&r["signer_name"]),
            s(&r["signer_qualification"]),
            s(&r["findings"]),
            s(&r["impression"]),
            s(&r["recommendation"]),
        ));
    }
    out.push_str("  timeline (UTC):\n");
    for e in detail["timeline"].as_array().into_iter().flatten() {
        let actor = e["actor"].as_str().unwrap_or("");
        let detail = ["text", "reason", "specialist", "to"]
            .iter()
            .find_map(|k| e[*k].as_str())
            .filter(|d| *d != actor)
            .unwrap_or("");
        out.push_str(&format!(
            "    {}  {:<10} {:<20} {}{}\n",
            utc(e["at_ms"].as_i64().unwrap_or(0)),
            format!("{}#{}", s(&e["id"]["side"]), e["id"]["seq"]),
            s(&e["kind"]),
            s(&e["actor"]),
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ));
    }
    out
}

/// How [`utc`] writes a moment: `YYYY-MM-DD HH:MM:SS`.
const UTC_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC). A moment outside the years -9999 to 9999
/// (only a corrupt or hostile value) is shown as its number.
pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(UTC_FORMAT).ok())
        .unwrap_or_else(|| format!("{ms} ms after 1970-01-01 00:00:00"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_687_858_884), "2026-11-26 10:10:58");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
        // Milliseconds are cut off, also before 1970.
        assert_eq!(super::utc(1_999), "1970-01-01 00:00:01");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59");
        assert_eq!(super::utc(-62_135_596_800_000), "0001-01-01 00:00:00");
        assert_eq!(super::utc(253_402_300_799_999), "9999-12-31 23:59:59");
        assert_eq!(
            super::utc(i64::MAX),
            "9223372036854775807 ms after 1970-01-01 00:00:00"
        );
    }

    #[test]
    fn chunks_are_joined_by_bytes_even_inside_a_character() {
        // "中文" split in the middle of its first character.
        let body = b"2\r\n\xe4\xb8\r\n4\r\n\xad\xe6\x96\x87\r\n0\r\n\r\n";
        assert_eq!(super::dechunk(body), "中文".as_bytes());
    }
}
