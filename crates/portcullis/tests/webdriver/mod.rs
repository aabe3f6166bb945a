//! A small W3C WebDriver client for the browser test: starts `chromedriver` on a free loopback
//! port, opens one headless Chromium session through it, and speaks the protocol's JSON over
//! plain HTTP/1.1 on std's TCP (no HTTP crate). Dropping the [`Browser`] ends the session and
//! kills chromedriver's process group (chromedriver and every Chromium process it started),
//! whether the test passed or panicked.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a lookup or a condition is waited for.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A program the test needs on `PATH`, or a failure that says how to get it.
pub fn required_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed, and the browser test needs it: run scripts/test.sh, \
                 or install Debian's packages yourself (apt-get install chromium chromium-driver)"
            )
        })
}

/// An element of the current page, by its WebDriver reference.
#[derive(Clone, Debug)]
pub struct Element(String);

/// chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: Option<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            // Closes Chromium politely; whatever is left is killed below.
            let _ = request(
                self.port,
                "DELETE",
                &format!("/session/{s}"),
                None,
                Duration::from_secs(5),
            );
        }
        // chromedriver leads its own process group (see `start`), and Chromium's processes
        // are in it: one signal to the group ends them all. The group id is our unreaped
        // child's pid, so it cannot name anyone else's processes.
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            kill(-(self.driver.id() as i32), 9);
        }
        let _ = self.driver.wait();
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Browser {
    /// Starts `chromedriver` on `port` (its log in `dir/chromedriver.log`) and a headless
    /// `chromium` with a fresh profile under `dir`, its window `width`×`height`.
    pub fn start(
        chromium: &Path,
        chromedriver: &Path,
        port: u16,
        dir: &Path,
        width: u32,
        height: u32,
    ) -> Browser {
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver did not start: {e}"));
        let mut b = Browser {
            driver,
            port,
            session: None,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok((200, v)) = request(port, "GET", "/status", None, Duration::from_secs(2)) {
                if v["value"]["ready"] == json!(true) {
                    break;
                }
            }
            if let Ok(Some(st)) = b.driver.try_wait() {
                panic!("chromedriver exited ({st}); see {}", dir.display());
            }
            assert!(Instant::now() < deadline, "chromedriver is not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                    "--force-device-scale-factor=1", "--hide-scrollbars",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync", "--lang=en-US"
                ]
            }
        }}});
        let v = b.send("POST", "/session", Some(caps));
        b.session = Some(
            v["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session: {v}"))
                .to_string(),
        );
        b
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap())
    }

    /// One command; its `value`, or a panic with WebDriver's error.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_send(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let (status, v) = request(self.port, method, path, body, Duration::from_secs(60))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{status} {}: {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    /// Loads `url` (returns once the page has loaded).
    pub fn goto(&self, url: &str) {
        self.send("POST", &self.path("/url"), Some(json!({ "url": url })));
    }

    /// The address of the current page.
    pub fn url(&self) -> String {
        self.send("GET", &self.path("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching `css` now (perhaps none).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.send(
            "POST",
            &self.path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_string())))
            .collect()
    }

    /// The first element matching `css`, waited for.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches {css:?} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.send(
            "POST",
            &self.path(&format!("/element/{}/click", e.0)),
            Some(json!({})),
        );
    }

    /// Chooses the option `value` of the `<select>` matching `css`, as a user would.
    pub fn choose(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"));
        let now = self.property(css, "value");
        assert_eq!(now, json!(value), "{css} did not take {value:?}");
    }

    /// Empties the field matching `css` and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.send(
            "POST",
            &self.path(&format!("/element/{}/clear", e.0)),
            Some(json!({})),
        );
        self.send(
            "POST",
            &self.path(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": text })),
        );
    }

    /// A DOM property of the element matching `css`.
    pub fn property(&self, css: &str, name: &str) -> Value {
        let e = self.find(css);
        self.send(
            "GET",
            &self.path(&format!("/element/{}/property/{name}", e.0)),
            None,
        )
    }

    /// The rendered (visible) text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.send("GET", &self.path(&format!("/element/{}/text", e.0)), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The current page's markup (for failure messages).
    pub fn source(&self) -> String {
        self.send("GET", &self.path("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body) in the page with `args`; its return value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.send(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `script` returns `true` in the page; `what` names it in the failure.
    pub fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.exec(script, json!([])) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes the viewport `width`×`height` CSS pixels at scale 1, narrower than a window can
    /// be (a phone's 390 px), through chromedriver's DevTools passage (device emulation).
    pub fn emulate(&self, width: u32, height: u32) {
        self.send(
            "POST",
            &self.path("/goog/cdp/execute"),
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600
                }}),
            ),
        );
    }

    /// Back to the window's own viewport.
    pub fn stop_emulating(&self) {
        self.send(
            "POST",
            &self.path("/goog/cdp/execute"),
            Some(json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}})),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.send("GET", &self.path("/screenshot"), None);
        base64_decode(v.as_str().expect("a base64 screenshot"))
    }
}

/// One HTTP/1.1 request to chromedriver on `port`; the status and the JSON body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    // Read the head, then exactly Content-Length bytes (whether or not the peer closes).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (status, start, len) = loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed early: {}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (status, end + 4, len);
        }
    };
    match len {
        Some(len) => {
            while raw.len() < start + len {
                let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed inside the body".into());
                }
                raw.extend_from_slice(&buf[..n]);
            }
            raw.truncate(start + len);
        }
        None => {
            let _ = s.read_to_end(&mut raw);
        }
    }
    let v = serde_json::from_slice(&raw[start..])
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&raw[start..])))?;
    Ok((status, v))
}

/// Standard base64 (with padding, as WebDriver's screenshots are) to bytes.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

/// The width and height a PNG's header declares.
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    (be(16), be(20))
}

#[test]
fn base64_round_trips_known_text() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
}
