//! What both daemons' web pages share: the layout, the message catalogue (Chinese by default,
//! English on request), log-in and log-out pages, the session a page runs in, and CSRF
//! protection of every form.
//!
//! Pages are rendered on the server (maud) and work without JavaScript; `app.js` only adds
//! auto-refresh, countdowns, local times and the image viewer's mouse handling.
//!
//! CSRF: every form carries a token derived from the session token (`csrf`), checked by
//! [`CsrfForm`] (or [`Session::check_csrf`] for uploads). The log-in form, which has no session
//! yet, uses a double-submit cookie. JSON calls authenticated by the session cookie rather
//! than a bearer token must send the same token in `X-CSRF-Token` (checked in
//! [`crate::login::Authenticated`]).

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod consult;
pub mod find;
mod messages;
mod sentences;

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::{AccountError, HasAccounts, Role, User};

pub use messages::Lang;

/// The session cookie's name, before its port suffix (the JSON API reads the same cookie).
const SESSION_COOKIE: &str = "tpg_session";
const LANG_COOKIE: &str = "tpg_lang";
const LOGIN_CSRF_COOKIE: &str = "tpg_login_csrf";
/// The header a cookie-authenticated JSON call carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: derived from its token, so it needs no storage and dies
/// with the session.
pub fn csrf_of(session_token: &str) -> String {
    let digest = Sha256::digest(format!("tpg-csrf\0{session_token}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the request's cookie `name` (RFC 6265 §5.4: `Cookie: a=1; b=2`, perhaps in
/// several headers); pairs that do not parse are passed over.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A cookie name of this site: browsers share cookies between the ports of one host, and
/// the pilot in a box runs a gateway and three clinics on one host, each with its own
/// accounts; so each port gets its own cookies (`tpg_session_8443`).
pub fn cookie_name(headers: &HeaderMap, base: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let port = host
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("0");
    format!("{base}_{port}")
}

/// The session cookie's token, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, &cookie_name(headers, SESSION_COOKIE))
}

/// The page language: the `tpg_lang` cookie, else the browser's first choice of the two,
/// The request's token, and whether it came from the session cookie (rather than a header a
/// script set on purpose).
pub fn token_of(headers: &axum::http::HeaderMap) -> Option<(String, bool)> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .map(|t| (t.trim().to_owned(), false));
    }
    session_token(headers).map(|t| (t, true))
}

/// else Chinese.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
        return l;
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = accept
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .find(|p| p.starts_with("zh") || p.starts_with("en"));
    match first {
        Some(p) if p.starts_with("en") => Lang::En,
        _ => Lang::Zh,
    }
}

/// A logged-in person viewing a page. As an extractor it sends anyone without a valid
/// session to the log-in page (and back here afterwards).
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub lang: Lang,
    token: String,
}

impl Session {
    /// The token every form of this session carries.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Checks a form's token (for forms not read through [`CsrfForm`], such as uploads).
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), Response> {
        match sent {
            Some(s) if constant_eq(s.as_bytes(), self.csrf().as_bytes()) => Ok(()),
            _ => Err(csrf_refused(self.lang)),
        }
    }

    /// Translates a message key into this session's language.
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }
}

/// Compares a token a browser sent with the expected one in time that does not depend on
/// where they first differ, so the answer's timing does not reveal the token byte by byte.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// What a `next=` address keeps as it is: letters, digits and `/-_.`; everything else is
/// percent-encoded (RFC 3986 §2.1).
const NEXT_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

fn csrf_refused(lang: Lang) -> Response {
    error_page(lang, StatusCode::FORBIDDEN, lang.t("err.csrf"))
}

/// The log-in page that comes back to `next` afterwards.
fn login_location(next: &str) -> String {
    format!("/login?next={}", utf8_percent_encode(next, NEXT_KEEPS))
}

impl<S> FromRequestParts<S> for Session
where
    S: HasAccounts + Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            Redirect::to(&login_location(next)).into_response()
        };
        // The cookie, or a bearer token (scripts and the authorization tests reach pages too).
        let (token, _) = token_of(&parts.headers).ok_or_else(to_login)?;
        match state.accounts().resolve(&token) {
            Ok(Some(user)) => Ok(Session { user, lang, token }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(error_page(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            )),
        }
    }
}

/// A URL-encoded form whose `csrf` field matched the session's token; the session comes
/// with it.
#[derive(Debug)]
pub struct CsrfForm<T>(pub Session, pub T);

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    S: HasAccounts + Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, 1024 * 1024).await.map_err(|_| {
            error_page(
                session.lang,
                StatusCode::PAYLOAD_TOO_LARGE,
                "form too large",
            )
        })?;
        let (sent, value) = decode_form(&bytes);
        session.check_csrf(sent.as_deref())?;
        let value = value.map_err(|e| {
            error_page(
                session.lang,
                StatusCode::BAD_REQUEST,
                &format!("{}: {e}", session.t("err.form")),
            )
        })?;
        Ok(CsrfForm(session, value))
    }
}

/// Decodes `application/x-www-form-urlencoded` into pairs (undecodable escapes stay as they
/// are).
fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

/// Decodes a URL-encoded form body as a browser sends it: the `csrf` field it carries, and the
/// other fields as `T`, repeated keys (checkboxes) collected into a list. What [`CsrfForm`]
/// reads; public so the fuzz targets (`tests/src/hostile.rs`) can feed it hostile bodies.
pub fn decode_form<T: DeserializeOwned>(
    bytes: &[u8],
) -> (Option<String>, Result<T, serde_json::Error>) {
    let pairs: Vec<(String, String)> = form_pairs(bytes);
    let sent = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.clone());
    let form = serde_json::Value::Object(pairs.into_iter().filter(|(k, _)| k != "csrf").fold(
        serde_json::Map::new(),
        |mut m, (k, v)| {
            // Repeated keys (checkboxes) collect into a list.
            match m.get_mut(&k) {
                Some(serde_json::Value::Array(list)) => list.push(v.into()),
                Some(first) => {
                    let prev = first.take();
                    *first = serde_json::Value::Array(vec![prev, v.into()]);
                }
                None => {
                    m.insert(k, v.into());
                }
            }
            m
        },
    ));
    (sent, serde_json::from_value(form))
}

/// Where a page sits in the navigation bar: (href, message key).
pub type NavItem = (&'static str, &'static str);

/// The frame of every page: header with the site's name, navigation, the user and the
/// language switch; then `body`.
pub fn layout(
    lang: Lang,
    site_key: &str,
    title: &str,
    session: Option<&Session>,
    nav: &[NavItem],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t(site_key)) }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { (lang.t(site_key)) }
                    @if let Some(s) = session {
                        nav {
                            @for (href, key) in nav {
                                a href=(href) { (lang.t(key)) }
                            }
                        }
                        span.who { (s.user.display_name) " (" (lang.t(role_key(s.user.role))) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button.link type="submit" { (lang.t("nav.logout")) }
                        }
                    }
                    span.lang {
                        a href="/lang/zh" { "中文" } " | " a href="/lang/en" { "English" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The message key of a role's name.
pub fn role_key(role: Role) -> &'static str {
    match role {
        Role::Specialist => "role.specialist",
        Role::Doctor => "role.doctor",
        Role::Admin => "role.admin",
    }
}

/// A page that only says what went wrong and what to do.
pub fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let body = html! {
        section.card {
            h1 { (status.as_u16()) " " (lang.find(&format!("status.{}", status.as_u16())).or(status.canonical_reason()).unwrap_or("")) }
            p.error { (lang.say(message)) }
            p { a href="/" { (lang.t("nav.home")) } }
        }
    };
    (
        status,
        layout(lang, "site.name", lang.t("err.title"), None, &[], body),
    )
        .into_response()
}

/// Seconds east of UTC of the times the pages show: the site's own time zone, set once at
/// start from its configuration (China's `+08:00` unless configured).
static DISPLAY_OFFSET_SECS: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(8 * 3600);

/// Sets the time zone the pages show times in, as seconds east of UTC.
pub fn set_display_offset(secs: i64) {
    DISPLAY_OFFSET_SECS.store(secs, std::sync::atomic::Ordering::Relaxed);
}

/// Unix milliseconds as the pages show them: `YYYY-MM-DD HH:MM:SS` in the site's time zone
/// (the same in Chinese and English, and on every browser), with the UTC time and the zone as
/// its tooltip.
pub fn time(ms: i64) -> Markup {
    let offset = DISPLAY_OFFSET_SECS.load(std::sync::atomic::Ordering::Relaxed);
    let local = crate::client::utc(ms.saturating_add(offset.saturating_mul(1000)));
    let zone = format!(
        "UTC{}{:02}:{:02}",
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 3600,
        offset.abs() % 3600 / 60
    );
    html! { time data-ms=(ms) data-zone=(zone) title={(crate::client::utc(ms)) " UTC"} { (local) } }
}

/// The time of day at `ms` (unix milliseconds) in the site's time zone, `HH:MM`: the labels of
/// a chart's time axis, whose zone the page states once; a time standing alone goes through
/// [`time`].
pub fn clock(ms: i64) -> String {
    let offset = DISPLAY_OFFSET_SECS.load(std::sync::atomic::Ordering::Relaxed);
    let minute = ms
        .div_euclid(1000)
        .saturating_add(offset)
        .rem_euclid(86_400)
        / 60;
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The routes every daemon's web side has: log in and out, language, assets.
pub fn routes<S>() -> axum::Router<S>
where
    S: HasAccounts + Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    axum::Router::new()
        .route("/login", get(login_page::<S>).post(login_submit::<S>))
        .route("/logout", axum::routing::post(logout::<S>))
        .route("/lang/{lang}", get(set_lang))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("web/app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("web/app.js"),
    )
        .into_response()
}

async fn set_lang(
    axum::extract::Path(lang): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::parse(&lang).unwrap_or(Lang::Zh);
    // Back to the page the switch was clicked on, when it is ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|r| r.find('/').map(|i| r[i..].to_owned()))
        .filter(|p| safe_next(p))
        .unwrap_or_else(|| "/".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Strict",
                lang.code()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

/// Adds the headers every answer of a daemon's web listener carries: no guessing of content
/// types, no framing by other sites (clickjacking a "sign" button), no referrer leaving the
/// site, and over HTTPS a year of HTTPS only.
pub fn with_security_headers(router: axum::Router, https: bool) -> axum::Router {
    router.layer(axum::middleware::map_response(
        move |mut response: Response| async move {
            let h = response.headers_mut();
            let mut set = |name: &'static str, value: &'static str| {
                h.insert(name, HeaderValue::from_static(value));
            };
            set("x-content-type-options", "nosniff");
            set("x-frame-options", "DENY");
            set("content-security-policy", "frame-ancestors 'none'");
            set("referrer-policy", "same-origin");
            if https {
                set("strict-transport-security", "max-age=31536000");
            }
            response
        },
    ))
}

/// Only paths on this site: `/x`, never `//host` or `https://`.
fn safe_next(next: &str) -> bool {
    // Browsers drop tabs and newlines from a location ("/\t/evil.example" becomes
    // "//evil.example", another site) and read a backslash as a slash: none of them, nor any
    // other control character or space, may appear.
    next.starts_with('/')
        && !next.starts_with("//")
        && next
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\')
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

fn random_token() -> String {
    let mut buf = [0u8; 16];
    // Without randomness the form cannot be protected; an empty token never matches.
    if getrandom::getrandom(&mut buf).is_err() {
        return String::new();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn login_form(
    headers: &HeaderMap,
    secure: bool,
    lang: Lang,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
    user: &str,
) -> Response {
    let csrf = random_token();
    let body = html! {
        section.card.narrow {
            h1 { (lang.t("login.title")) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { (lang.t("login.user")) input name="user" value=(user) autocomplete="username" required autofocus; }
                label { (lang.t("login.password")) input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { (lang.t("login.submit")) }
            }
        }
    };
    let mut response = (
        status,
        layout(lang, "site.name", lang.t("login.title"), None, &[], body),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={csrf}; HttpOnly; SameSite=Strict; Path=/login{}",
        cookie_name(headers, LOGIN_CSRF_COOKIE),
        if secure { "; Secure" } else { "" }
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn login_page<S: HasAccounts>(
    State(state): State<S>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = q
        .next
        .filter(|n| safe_next(n))
        .unwrap_or_else(|| "/".into());
    let lang = lang_of(&headers);
    login_form(&headers, state.tls(), lang, StatusCode::OK, &next, None, "")
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
    csrf: Option<String>,
}

async fn login_submit<S: HasAccounts + Clone + Send + Sync + 'static>(
    State(state): State<S>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    let next = form
        .next
        .clone()
        .filter(|n| safe_next(n))
        .unwrap_or_else(|| "/".into());
    let expected = cookie(&headers, &cookie_name(&headers, LOGIN_CSRF_COOKIE)).unwrap_or_default();
    match form.csrf.as_deref() {
        Some(sent) if !expected.is_empty() && constant_eq(sent.as_bytes(), expected.as_bytes()) => {
        }
        _ => return csrf_refused(lang),
    }
    let user_name = form.user.clone();
    let secure = state.tls();
    let from = state.client(&extensions);
    let result = tokio::task::spawn_blocking(move || {
        let accounts = state.accounts();
        let user = accounts.login_from(&form.user, &form.password, &from)?;
        accounts.session(&user.name)
    })
    .await;
    match result {
        Ok(Ok(token)) => {
            let mut response = Redirect::to(&next).into_response();
            let cookie = session_cookie(&headers, &token, secure);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Ok(Err(AccountError::Locked { retry_after })) => {
            let mut response = login_form(
                &headers,
                secure,
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                Some(
                    &lang
                        .t("login.locked")
                        .replace("{secs}", &retry_after.to_string()),
                ),
                &user_name,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Ok(Err(AccountError::BadLogin | AccountError::NoSuchUser(_))) => login_form(
            &headers,
            secure,
            lang,
            StatusCode::UNAUTHORIZED,
            &next,
            Some(lang.t("login.bad")),
            &user_name,
        ),
        Ok(Err(e @ AccountError::Deactivated(_))) => login_form(
            &headers,
            secure,
            lang,
            StatusCode::FORBIDDEN,
            &next,
            Some(&e.to_string()),
            &user_name,
        ),
        Ok(Err(e @ AccountError::Busy)) => login_form(
            &headers,
            secure,
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            &next,
            Some(&e.to_string()),
            &user_name,
        ),
        Ok(Err(e)) => error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The session cookie: script cannot read it, other sites cannot send it, and over TLS it
/// never travels in clear.
pub fn session_cookie(headers: &HeaderMap, token: &str, secure: bool) -> String {
    format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        cookie_name(headers, SESSION_COOKIE),
        crate::accounts::SESSION_SECS,
        if secure { "; Secure" } else { "" }
    )
}

#[derive(Deserialize)]
struct Empty {}

async fn logout<S: HasAccounts + Clone + Send + Sync + 'static>(
    State(state): State<S>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    CsrfForm(session, Empty {}): CsrfForm<Empty>,
) -> Response {
    let from = state.client(&extensions);
    if let Err(e) = state.accounts().logout_from(&session.token, &from) {
        return error_page(
            session.lang,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        );
    }
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                cookie_name(&headers, SESSION_COOKIE)
            ),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_only_local_paths_are_followed() {
        let pairs = form_pairs(b"a=1+2&b=%E4%B8%AD&c=&bad=%zz&d");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "中".into()),
                ("c".into(), "".into()),
                ("bad".into(), "%zz".into()),
                ("d".into(), "".into()),
            ]
        );
        assert!(safe_next("/cases/X"));
        assert!(!safe_next("//evil.example/"));
        assert!(!safe_next("https://evil.example/"));
        assert!(!safe_next("/\\evil"));
        for sneaky in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r//evil",
            "/ /evil",
            "/\u{0}/x",
        ] {
            assert!(!safe_next(sneaky), "{sneaky:?}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let (a, b) = (csrf_of("token-a"), csrf_of("token-b"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(constant_eq(a.as_bytes(), csrf_of("token-a").as_bytes()));
        assert!(!constant_eq(a.as_bytes(), &a.as_bytes()[..31]));
    }

    #[test]
    fn the_login_page_comes_back_to_the_page_asked_for() {
        assert_eq!(
            login_location("/cases/X-1_a.b"),
            "/login?next=/cases/X-1_a.b"
        );
        assert_eq!(
            login_location("/cases?q=a b&x=中~"),
            "/login?next=/cases%3Fq%3Da%20b%26x%3D%E4%B8%AD%7E"
        );
    }

    #[test]
    fn cookies_are_found_by_exact_name_in_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("junk; a=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("tpg_session_8443=t=k ;  tpg_session=x"),
        );
        assert_eq!(cookie(&h, "a").as_deref(), Some("1"));
        assert_eq!(cookie(&h, "tpg_session_8443").as_deref(), Some("t=k"));
        assert_eq!(cookie(&h, "tpg_session").as_deref(), Some("x"));
        assert_eq!(cookie(&h, "tpg_sess"), None);
        assert_eq!(cookie(&h, "junk"), None);
    }

    #[test]
    fn language_comes_from_the_cookie_then_the_browser_then_chinese() {
        let mut h = HeaderMap::new();
        assert_eq!(lang_of(&h), Lang::Zh);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("en-GB,en;q=0.9"),
        );
        assert_eq!(lang_of(&h), Lang::En);
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; tpg_lang=zh"));
        assert_eq!(lang_of(&h), Lang::Zh);
    }
}
