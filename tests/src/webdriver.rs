//! A small WebDriver client for the browser tests: starts Debian's `chromedriver` on a free
//! loopback port and drives headless Chromium through it (W3C WebDriver over HTTP/JSON).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A Chromium session; the driver process is killed when this is dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1366×768 (the pilot's oldest screens).
    pub fn start() -> anyhow::Result<Self> {
        let driver_bin = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .ok_or_else(|| {
                anyhow!("chromedriver is not installed: install Debian's chromium and chromium-driver (scripts/test does)")
            })?;
        let addr = crate::free_tcp_addr();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?;
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon::client::call(addr, "GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,768", "--lang=zh-CN"]
            }
        }}});
        let v = browser.raw("POST", "/session", Some(caps))?;
        browser.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {v}"))?
            .to_owned();
        Ok(browser)
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let text = body.map(|b| b.to_string());
        let (status, answer) = daemon::client::call(self.addr, method, path, text.as_deref())?;
        let v: Value = serde_json::from_str(&answer)
            .with_context(|| format!("chromedriver answered {status}: {answer}"))?;
        if status >= 400 {
            bail!("{method} {path}: {}", v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    pub fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .cmd("GET", "/url", None)?
            .as_str()
            .unwrap_or("")
            .to_owned())
    }

    /// The first element matching a CSS selector, waiting up to 10 s for it to appear.
    pub fn find(&self, css: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            ) {
                Ok(v) => {
                    return v[ELEMENT]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("no element id in {v}"))
                }
                Err(e) if Instant::now() > deadline => return Err(e.context(css.to_owned())),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn exists(&self, css: &str) -> bool {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v.as_array().map(|a| !a.is_empty()))
        .unwrap_or(false)
    }

    /// Types `text` into the element (for a file input: the file's path).
    pub fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.find(css)?;
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .map(drop)
    }

    /// Replaces the text of a field with `text`: emptied first (a browser may have filled it
    /// in from an earlier log-in), then typed, then read back.
    pub fn set_field(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.find(css)?;
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})))?;
        self.type_into(css, text)?;
        let now = self.script(&format!(
            "return document.querySelector({}).value",
            serde_json::to_string(css)?
        ))?;
        if now.as_str() != Some(text) {
            bail!("{css} holds {now} after typing, not what was typed");
        }
        Ok(())
    }

    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        let el = self.find(css)?;
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})))
            .map(drop)
    }

    pub fn text(&self, css: &str) -> anyhow::Result<String> {
        let el = self.find(css)?;
        Ok(self
            .cmd("GET", &format!("/element/{el}/text"), None)?
            .as_str()
            .unwrap_or("")
            .to_owned())
    }

    /// Presses `key` on the element, as a person would with it focused: a character, or a
    /// WebDriver key code such as [`keys::ARROW_DOWN`].
    pub fn press(&self, css: &str, key: &str) -> anyhow::Result<()> {
        self.type_into(css, key)
    }

    /// Turns the mouse wheel over the middle of the element by `delta_y` pixels (100: one
    /// notch of an ordinary wheel, towards the user), through the WebDriver actions API.
    pub fn wheel(&self, css: &str, delta_y: i64) -> anyhow::Result<()> {
        let el = self.find(css)?;
        let actions = json!({"actions": [{
            "type": "wheel",
            "id": "wheel",
            "actions": [{
                "type": "scroll", "x": 0, "y": 0, "deltaX": 0, "deltaY": delta_y,
                "duration": 0, "origin": { (ELEMENT): el }
            }]
        }]});
        self.cmd("POST", "/actions", Some(actions))?;
        self.cmd("DELETE", "/actions", None).map(drop)
    }

    /// Drags the mouse with its left button from the middle of the element by (`dx`, `dy`).
    pub fn drag(&self, css: &str, dx: i64, dy: i64) -> anyhow::Result<()> {
        let el = self.find(css)?;
        let at = |x: i64, y: i64| json!({"type": "pointerMove", "x": x, "y": y, "duration": 50, "origin": { (ELEMENT): el }});
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [at(0, 0), {"type": "pointerDown", "button": 0}, at(dx / 2, dy / 2),
                        at(dx, dy), {"type": "pointerUp", "button": 0}]
        }]});
        self.cmd("POST", "/actions", Some(actions))?;
        self.cmd("DELETE", "/actions", None).map(drop)
    }

    /// Drags one finger from the middle of the element by `delta_y` pixels (negative: up),
    /// in a few steps, as a touch screen would report it.
    pub fn swipe(&self, css: &str, delta_y: i64) -> anyhow::Result<()> {
        let el = self.find(css)?;
        let mut steps = vec![
            json!({"type": "pointerMove", "x": 0, "y": 0, "duration": 0, "origin": { (ELEMENT): el }}),
            json!({"type": "pointerDown", "button": 0}),
        ];
        for k in 1..=5 {
            steps.push(json!({
                "type": "pointerMove", "x": 0, "y": delta_y * k / 5, "duration": 20,
                "origin": { (ELEMENT): el }
            }));
        }
        steps.push(json!({"type": "pointerUp", "button": 0}));
        let actions = json!({"actions": [{
            "type": "pointer", "id": "finger", "parameters": {"pointerType": "touch"},
            "actions": steps
        }]});
        self.cmd("POST", "/actions", Some(actions))?;
        self.cmd("DELETE", "/actions", None).map(drop)
    }

    /// Waits up to 10 s for `script` to return `want`; the error says what it returned last.
    pub fn wait_for(&self, script: &str, want: &Value) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.script(script)?;
            if &got == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("`{script}` returned {got}, not {want}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks what submits a form or follows a link, and waits until the next page has
    /// loaded: a click returns before the browser has followed it, and the old page may hold
    /// what the next one is checked for.
    pub fn click_to_next_page(&self, css: &str) -> anyhow::Result<()> {
        self.script("window.__before_click = true;")?;
        self.click(css)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // A script run while the page changes may fail; it is asked again.
            let done = self
                .script(
                    "return window.__before_click !== true && document.readyState === 'complete'",
                )
                .unwrap_or(Value::Bool(false));
            if done == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("clicking {css} led to no new page in 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a script in the page and returns its value (it may return a promise).
    pub fn script(&self, script: &str) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Sets the window's size in CSS pixels.
    pub fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }

    /// How far the page is wider than the window (0: nothing to scroll sideways).
    pub fn overflow_x(&self) -> anyhow::Result<i64> {
        let v = self.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )?;
        Ok(v.as_i64().unwrap_or(i64::MAX))
    }

    /// Writes a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let b64 = self.cmd("GET", "/screenshot", None)?;
        let bytes = base64_decode(b64.as_str().unwrap_or(""))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)?;
        Ok(())
    }
}

/// WebDriver's codes for keys that are not characters (W3C WebDriver, "Keyboard actions").
pub mod keys {
    pub const PAGE_UP: &str = "\u{E00E}";
    pub const PAGE_DOWN: &str = "\u{E00F}";
    pub const END: &str = "\u{E010}";
    pub const HOME: &str = "\u{E011}";
    pub const ARROW_LEFT: &str = "\u{E012}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_RIGHT: &str = "\u{E014}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        acc = (acc << 6) | value(c).ok_or_else(|| anyhow!("not base64"))?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Where the browser tests put their screenshots: `target/screenshots/`.
pub fn shots() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// Logs `name` in at `base` with the tests' password, and waits until the browser has left
/// the log-in page (going elsewhere sooner would race the session cookie).
pub fn log_in(b: &Browser, base: &str, name: &str) -> anyhow::Result<()> {
    // A navigation still under way when this is called (a log-out's answer from another site)
    // can land after ours: the form filled in must be this site's log-in page.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&format!("{base}/"))?;
        std::thread::sleep(Duration::from_millis(100));
        let url = b.url()?;
        if url.starts_with(base) && url.contains("/login") {
            break;
        }
        if Instant::now() > deadline {
            bail!("anyone without a session lands on {base}'s log-in page, not {url}");
        }
    }
    // Chromium may fill the fields in from the log-in at another port of this host, and later
    // than the page's load: each field is emptied, typed and read back.
    b.set_field("input[name=user]", name)?;
    b.set_field("input[name=password]", crate::people::PASSWORD)?;
    b.click("form[action='/login'] button")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.url()?.contains("/login") {
        if Instant::now() > deadline {
            bail!(
                "{name} still at the log-in page: {}",
                b.text("body").unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Screenshots the page as `name` at 1366×768 and, as `name-tablet`, on a tablet held upright
/// (768×1024), into [`shots`]; fails when the page is wider than the tablet (only a wide table
/// may scroll, in its own box).
pub fn shot(b: &Browser, name: &str) -> anyhow::Result<()> {
    b.screenshot(&shots().join(format!("{name}.png")))?;
    b.resize(768, 1024)?;
    b.screenshot(&shots().join(format!("{name}-tablet.png")))?;
    let overflow = b.overflow_x()?;
    b.resize(1366, 768)?;
    if overflow > 0 {
        bail!("{name} is {overflow} px too wide for a tablet");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("AAEC").unwrap(), [0, 1, 2]);
    }
}
