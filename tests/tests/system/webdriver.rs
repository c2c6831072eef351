//! A small W3C WebDriver client over reqwest, and chromedriver + headless Debian chromium as
//! child processes.
//!
//! Why not fantoccini or thirtyfour: the browser test needs a dozen commands (navigate, find,
//! type, click, read text and attributes, run a script, screenshot), all plain JSON over HTTP,
//! and reqwest is already compiled for the workspace; either crate would add a second HTTP
//! stack (hyper client, its own TLS features) and ~40 crates to a 2-core build. The protocol is
//! <https://www.w3.org/TR/webdriver2/>; errors come back as `{"value": {"error", "message"}}`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine;
use harness::process::{find_binary, free_port, spawn_detached, wait_for_port};
use serde_json::{Value, json};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's code for the Tab key (moves focus, so the field gets its `blur`).
pub const TAB: &str = "\u{E004}";

/// chromedriver on a free port. It leads a process group of its own, and the browsers it starts
/// join it: dropping it (or the test process dying) kills the whole group, so no chromium
/// outlives the test even when a session was never closed.
#[derive(Debug)]
pub struct ChromeDriver {
    port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
    _dir: tempfile::TempDir,
}

impl ChromeDriver {
    /// Start Debian's chromedriver (package `chromium-driver`).
    pub fn start() -> ChromeDriver {
        let bin = find_binary("chromedriver", "chromium-driver");
        let dir = tempfile::Builder::new()
            .prefix("meiduo-chromedriver-")
            .tempdir()
            .expect("a temp dir can be created");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ));
        let mut child = spawn_detached(&mut cmd, &dir.path().join("stdout.log"));
        let watchdog = watch_group(dir.path(), child.id());
        if !wait_for_port(port, Duration::from_secs(20)) {
            kill_group(child.id(), "-KILL");
            let _ = child.wait();
            panic!("chromedriver did not open port {port}");
        }
        ChromeDriver {
            port,
            child: Some(child),
            watchdog: Some(watchdog),
            _dir: dir,
        }
    }

    /// A new headless chromium session with a fresh profile.
    pub async fn session(&self) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("meiduo-chromium-")
            .tempdir()
            .expect("a temp dir can be created");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-default-apps".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--metrics-recording-only".to_owned(),
            "--window-size=1100,900".to_owned(),
            "--lang=zh-CN".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // Keep traffic on this machine: no proxy auto-detection, no DNS prefetch.
        args.push("--no-proxy-server".to_owned());
        args.push("--dns-prefetch-disable".to_owned());
        let mut chrome_options = json!({ "args": args });
        if let Some(binary) = chromium_binary() {
            chrome_options["binary"] = json!(binary.display().to_string());
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": chrome_options,
                }
            }
        });
        let base = format!("http://127.0.0.1:{}", self.port);
        let client = harness::http_client();
        let value = call(
            &client,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await
        .unwrap_or_else(|e| panic!("chromedriver refused a new session: {e}"));
        let session_id = value["sessionId"]
            .as_str()
            .expect("a new session has an id")
            .to_owned();
        Browser {
            client,
            base: format!("{base}/session/{session_id}"),
            _profile: profile,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), "-TERM");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Whatever is left of the group (browser helpers slow to exit) goes now.
            kill_group(child.id(), "-KILL");
            let _ = child.wait();
        }
    }
}

/// Signal every process of the group `leader` leads.
fn kill_group(leader: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{leader}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// If the test process dies without dropping the driver, kill its process group anyway.
fn watch_group(dir: &Path, leader: u32) -> Child {
    harness::process::kill_after_exit_of(
        std::process::id(),
        &[format!("-{leader}")],
        &dir.join("watchdog.log"),
    )
}

/// Debian installs a wrapper script as /usr/bin/chromium; the real binary is beside its data.
fn chromium_binary() -> Option<PathBuf> {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One browser session.
#[derive(Debug)]
pub struct Browser {
    client: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = client.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| format!("{url}: {e}"))?;
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{url}: HTTP {status}: {} {}",
            value["error"].as_str().unwrap_or("?"),
            value["message"].as_str().unwrap_or("")
        ))
    }
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.client, method, &format!("{}{path}", self.base), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver command failed: {e}"))
    }

    /// Open `url` and wait for the page load.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element matching a CSS selector, waiting up to 10 s for it to exist.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = call(
                &self.client,
                reqwest::Method::POST,
                &format!("{}/element", self.base),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
            match found {
                Ok(v) => {
                    return Element(
                        v[ELEMENT_KEY]
                            .as_str()
                            .unwrap_or_else(|| panic!("an element reference: {v}"))
                            .to_owned(),
                    );
                }
                Err(e) if Instant::now() > deadline => panic!("no element {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Type `text` into the element (keys, as a person types).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Empty an input.
    pub async fn clear(&self, css: &str) {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            Some(json!({})),
        )
        .await;
    }

    /// Click the element.
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/click", el.0),
            Some(json!({})),
        )
        .await;
    }

    /// The element's rendered text.
    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/text", el.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// A DOM property of the element (`src`, `value`, `hidden`, `disabled`, ...).
    pub async fn property(&self, css: &str, name: &str) -> Value {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/property/{name}", el.0),
            None,
        )
        .await
    }

    /// Whether the element is rendered visibly.
    pub async fn displayed(&self, css: &str) -> bool {
        let el = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/displayed", el.0),
            None,
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// Run a synchronous script in the page and return its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Poll `condition` every 50 ms until it is true, up to `timeout`; panic with `what`.
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Save a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("a screenshot is base64 text"))
            .expect("the screenshot is valid base64");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// End the session (closes the browser).
    pub async fn quit(self) {
        let _ = call(&self.client, reqwest::Method::DELETE, &self.base, None).await;
    }
}
