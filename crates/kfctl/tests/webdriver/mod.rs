//! A small W3C WebDriver client for Debian's chromedriver + headless Chromium.
//!
//! chromedriver speaks plain JSON over HTTP on loopback; the few commands the end-to-end test
//! needs fit here without another dependency. Chromium always starts headless with networking
//! extras off (the machine has no network but loopback) and a fresh profile directory.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecc";

/// A running chromedriver with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    pub downloads: PathBuf,
}

/// An element on the page.
#[derive(Clone, Debug)]
pub struct Element(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session whose downloads go to `downloads`.
    pub async fn start(downloads: &Path) -> Browser {
        let chromedriver = which("chromedriver").expect("chromedriver not found\n  hint: run scripts/install-browser");
        let chromium = which("chromium").expect("chromium not found\n  hint: run scripts/install-browser");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(format!("{base}/status")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1280,1000", "--hide-scrollbars",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                    "prefs": {
                        "download.default_directory": downloads,
                        "download.prompt_for_download": false,
                        "safebrowsing.enabled": false,
                    },
                },
            }},
        });
        let response: Value = http.post(format!("{base}/session")).body(capabilities.to_string()).send().await.unwrap().json_value().await;
        let session = response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {response}")).to_string();
        let browser = Browser { driver, base, session, http, _profile: profile, downloads: downloads.to_path_buf() };
        // Headless Chromium needs downloads allowed explicitly (the prefs alone are not enough).
        browser
            .command("POST", "/chromium/send_command", json!({ "cmd": "Browser.setDownloadBehavior", "params": { "behavior": "allow", "downloadPath": downloads } }))
            .await;
        browser
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).body(body.to_string()),
        };
        let value = request.send().await.unwrap().json_value().await;
        if let Some(error) = value["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {error}: {}", value["value"]["message"]);
        }
        value["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.command("GET", "/url", Value::Null).await.as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` in the page (with `arguments`) and returns its result.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find_opt(&self, css: &str) -> Option<Element> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let value = self.http.post(url).body(json!({ "using": "css selector", "value": css }).to_string()).send().await.unwrap().json_value().await;
        value["value"][ELEMENT_KEY].as_str().map(|id| Element(id.to_string()))
    }

    /// The first element matching a CSS selector; panics if there is none.
    pub async fn find(&self, css: &str) -> Element {
        self.find_opt(css).await.unwrap_or_else(|| panic!("no element matches {css}"))
    }

    /// Waits until `css` matches a displayed element, up to `limit` (a bound against hangs).
    pub async fn wait_for(&self, css: &str, limit: Duration) -> Element {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.find_opt(css).await
                && self.is_displayed(&element).await
            {
                return element;
            }
            assert!(Instant::now() < deadline, "{css} did not appear within {limit:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `script` (a JS expression body returning a boolean) is true.
    pub async fn wait_until(&self, script: &str, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        loop {
            if self.execute(script, json!([])).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not reached within {limit:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), json!({})).await;
    }

    pub async fn clear(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/clear", element.0), json!({})).await;
    }

    /// Types `text` into an element (for a file input: the file's path).
    pub async fn send_keys(&self, element: &Element, text: &str) {
        self.command("POST", &format!("/element/{}/value", element.0), json!({ "text": text })).await;
    }

    /// Replaces an input's value by typing.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.clear(&element).await;
        self.send_keys(&element, text).await;
    }

    pub async fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), Value::Null).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn is_displayed(&self, element: &Element) -> bool {
        self.command("GET", &format!("/element/{}/displayed", element.0), Value::Null).await == Value::Bool(true)
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.command("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Sets the window's size (the viewport screenshots show).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command("POST", "/window/rect", json!({ "width": width, "height": height })).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then chromedriver itself.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async { reqwest::Client::builder().no_proxy().build().unwrap().delete(url).send().await.ok() });
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("WebDriver answered non-JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}
