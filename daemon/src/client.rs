//! The CLI's side of a daemon's HTTP API: one blocking call at a time, for `status`, `import`
//! and `consult` while the daemon runs (its database can be opened by one process only), and
//! for the tests. HTTP/1.1 is hyper's; the gateway's `consult` commands go over TLS
//! (tokio-rustls) with the configuration they are given when the gateway serves HTTPS
//! ([`Endpoint::tls`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

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

/// A daemon serving HTTPS: the TLS configuration that decides whom to trust, and what to tell
/// the user when the handshake fails.
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    advice: String,
}

/// Where a call goes: the daemon's address, and how to talk to it.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    tls: Option<Tls>,
    /// How long an answer may take.
    timeout: Duration,
}

/// How long a call waits for its answer unless told otherwise.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a call waits for the daemon to take the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Endpoint {
    /// Plain HTTP.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            tls: None,
            timeout: ANSWER_TIMEOUT,
        }
    }

    /// HTTPS with `config`, which alone decides which certificate is trusted (the gateway's
    /// CLI pins the one its listener serves); the server is named by its IP address. When
    /// the handshake fails, `advice` follows the reason ("it must serve …").
    pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>, advice: String) -> Self {
        Self {
            addr,
            tls: Some(Tls { config, advice }),
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

/// Like [`call_as`], to an [`Endpoint`]. The call blocks, as a CLI wants; it runs on a thread
/// and runtime of its own, so async code (the tests) may make it too.
pub fn call_to(
    to: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String), ClientError> {
    let addr = to.addr;
    let failed = |detail: String| ClientError::Failed { addr, detail };
    let request = request(addr, method, path, token, json).map_err(failed)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| failed(format!("cannot start the client's runtime: {e}")))?;
                runtime.block_on(exchange(to, request))
            })
            .join()
            .unwrap_or_else(|_| Err(failed("the call's thread panicked".into())))
    })
}

/// The request as the daemons' APIs expect it: `Host` as the address called (the web pages
/// name their cookies after its port), the token, and JSON only when there is a body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let body = json.unwrap_or("");
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(CONNECTION, "close")
        .header(CONTENT_LENGTH, body.len());
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "the token holds characters a header cannot carry".to_owned())?;
        request = request.header(AUTHORIZATION, value);
    }
    // A call without a body sends no content type: an empty "JSON" body is not JSON.
    if json.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| format!("cannot make the request for {path}: {e}"))
}

/// Connects (over TLS when the endpoint says so), sends the request and reads the answer.
async fn exchange(
    to: &Endpoint,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, String), ClientError> {
    let addr = to.addr;
    let tcp =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            _ => return Err(ClientError::NotRunning(addr)),
        };
    let answer = async {
        match &to.tls {
            None => send(tcp, request).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::from(addr.ip());
                // The handshake comes first, so a wrong certificate is named as such.
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        format!("TLS with the web listener failed ({e}); {}", tls.advice)
                    })?;
                send(stream, request).await
            }
        }
    };
    match tokio::time::timeout(to.timeout, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(detail)) => Err(ClientError::Failed { addr, detail }),
        Err(_) => Err(ClientError::Failed {
            addr,
            detail: format!("no answer within {} s", to.timeout.as_secs()),
        }),
    }
}

/// One request and its answer over an HTTP/1.1 connection (hyper's), the body read whole:
/// by its length, in chunks, or to the end of the stream, as the daemon sends it.
async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection moves the bytes while this task waits for the answer; it ends with the
    // answer (`Connection: close`), or with an error the answer's reading reports too.
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    // Chunks count bytes: the body is whole before it is read as text.
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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
    use std::time::Duration;

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

    /// A daemon's answer as raw bytes on a loopback port; the request is read up to its end
    /// first. Returns the endpoint to call.
    fn answering(answer: &'static [u8], hold_open: Duration) -> super::Endpoint {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            tcp.write_all(answer).unwrap();
            std::thread::sleep(hold_open);
        });
        super::Endpoint::plain(addr)
    }

    #[test]
    fn chunks_are_joined_by_bytes_even_inside_a_character() {
        // "中文" split in the middle of its first character.
        let to = answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\xe4\xb8\r\n4\r\n\xad\xe6\x96\x87\r\n0\r\n\r\n",
            Duration::ZERO,
        );
        let answer = super::call_to(&to, "GET", "/x", None, None).unwrap();
        assert_eq!(answer, (200, "中文".to_owned()));
    }

    #[test]
    fn an_answer_of_known_length_is_read_without_waiting_for_the_connection_to_close() {
        let to = answering(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
            Duration::from_secs(30),
        )
        .with_timeout(Duration::from_secs(10));
        let answer = super::call_to(&to, "POST", "/x", Some("t"), Some("{}")).unwrap();
        assert_eq!(answer, (404, "no".to_owned()));
    }

    #[test]
    fn an_answer_that_does_not_come_is_an_error_after_the_timeout() {
        let to = answering(b"", Duration::from_secs(30)).with_timeout(Duration::from_millis(200));
        let e = super::call_to(&to, "GET", "/x", None, None).unwrap_err();
        assert!(e.to_string().contains("no answer within"), "{e}");
    }

    #[test]
    fn nothing_listening_means_the_daemon_is_not_running() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = super::call(addr, "GET", "/api/v1/status", None).unwrap_err();
        assert!(
            matches!(e, super::ClientError::NotRunning(a) if a == addr),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_call_can_be_made_from_async_code() {
        let to = answering(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Duration::ZERO,
        );
        let answer = super::call_to(&to, "GET", "/x", None, None).unwrap();
        assert_eq!(answer.1, "ok");
    }
}
