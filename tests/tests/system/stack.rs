//! The whole system as real processes, one private copy per test: Redis databases and a MariaDB
//! database from `harness`, the sms-sandbox (in-process, speaking CCP over real HTTP), the
//! `verifications-svc`, `users-svc` and `sms-worker` binaries from the target dir, and Debian's
//! nginx rendering `deploy/nginx/meiduo.conf.template` exactly as `deploy/dev up` does.
//!
//! Every process runs on a free loopback port with its output in a log file of the stack's
//! temporary folder; a failing test prints the tail of every log. The processes are SIGTERMed
//! when the [`Stack`] is dropped, and a small watchdog kills them if the test process dies
//! without running destructors (a timeout's SIGKILL).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use harness::process::{find_binary, free_port, spawn_detached, wait_for_port};
use harness::{RedisServer, TestDatabase, TestRedis};
use serde_json::Value;
use sms_sandbox::{Sandbox, SandboxConfig};

/// The root of the workspace (this crate is `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// `target/<profile>/`: the test executable is `target/<profile>/deps/system-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps/")
        .to_path_buf()
}

/// A workspace binary next to the test executable, or a panic that says how to build it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: the end-to-end tests run the real service binaries; \
         run `cargo build --workspace --bins` first (`deploy/dev test` does)",
        path.display()
    );
    path
}

/// Where tests leave artifacts a person may want to look at (screenshots): `target/e2e-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("e2e-artifacts");
    fs::create_dir_all(&dir).expect("the artifacts folder can be created");
    dir
}

/// What a test may change about the stack.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment for every service (e.g. lower rate limits).
    pub env: BTreeMap<String, String>,
    /// Give verifications-svc and users-svc a Redis server of the test's own, which it may stop.
    pub private_redis: bool,
    /// The gateway's `REAL_IP_FROM`: proxies in front of it whose X-Forwarded-For it believes.
    pub real_ip_from: Option<String>,
    /// Other variables of the gateway template (e.g. `USERS_MAX_CONNS`), for render.sh.
    pub gateway: BTreeMap<String, String>,
}

impl Options {
    /// Set one environment variable for every service.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Set one variable of the gateway template.
    pub fn gateway(mut self, name: &str, value: &str) -> Self {
        self.gateway.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// One service process.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// SIGTERM and reap (SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            harness::redis::terminate(&mut child);
        }
    }

    /// SIGTERM and wait up to `within` for the exit status (None: still running, then killed).
    pub fn terminate_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        harness::process::signal(child.id(), "TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGSTOP: the process stops reading its sockets; the kernel still accepts connections
    /// for it, so a request sent to it is held, unanswered, until [`Process::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the process is running");
        assert!(
            harness::process::signal(child.id(), signal),
            "SIG{signal} to {}",
            self.name
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The running system. Field order is drop order: nginx and the services stop before the
/// databases they use go away.
#[derive(Debug)]
pub struct Stack {
    pub gateway: Process,
    pub verifications: Process,
    pub users: Process,
    pub worker: Process,
    pub sandbox: Sandbox,
    /// The verify-codes database (`REDIS_URL`).
    pub redis_url: String,
    /// Set when [`Options::private_redis`] asked for a server the test may stop.
    pub private_redis: Option<RedisServer>,
    pub database: TestDatabase,
    _redis: Option<TestRedis>,
    _queue: TestRedis,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl Stack {
    /// The system with default settings.
    pub async fn start() -> Stack {
        Self::start_with(Options::default()).await
    }

    /// The system with `options`.
    pub async fn start_with(options: Options) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("meiduo-e2e-")
            .tempdir()
            .expect("a temp dir can be created");
        // Readable by every user, whichever user nginx's workers run as.
        set_mode(dir.path(), 0o755);

        let (redis, private_redis, redis_url) = if options.private_redis {
            let server = RedisServer::start();
            let url = server.url(2);
            (None, Some(server), url)
        } else {
            let db = harness::test_redis();
            let url = db.url();
            (Some(db), None, url)
        };
        let queue = harness::test_redis();
        let database = harness::test_database();
        let sandbox = Sandbox::start(SandboxConfig::random()).await;

        let ccp = sandbox.config().clone();
        let mut env: BTreeMap<String, String> = [
            ("HOST", "127.0.0.1".to_owned()),
            ("HTTP_WORKERS", "2".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("REDIS_URL", redis_url.clone()),
            ("QUEUE_REDIS_URL", queue.url()),
            ("DATABASE_URL", database.url()),
            ("SMS_PROVIDER", "ccp".to_owned()),
            ("CCP_BASE_URL", sandbox.base_url()),
            ("CCP_ACCOUNT_SID", ccp.account_sid),
            ("CCP_AUTH_TOKEN", ccp.auth_token),
            ("CCP_APP_ID", ccp.app_id),
            (
                "JWT_SECRET",
                "e2e-secret-0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("BCRYPT_COST", "10".to_owned()),
            ("SMS_WORKER_POLL_MS", "50".to_owned()),
            ("TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(options.env);

        let mut verifications = spawn_service(dir.path(), "verifications-svc", &env);
        let mut users = spawn_service(dir.path(), "users-svc", &env);
        let mut worker = spawn_service(dir.path(), "sms-worker", &env);
        for p in [&mut verifications, &mut users, &mut worker] {
            wait_healthy(p).await;
        }
        let gateway = spawn_gateway(
            dir.path(),
            verifications.port,
            users.port,
            &workspace_root().join("deploy/web"),
            default_nginx_user(),
            options.real_ip_from.as_deref(),
            &options.gateway,
        );
        let watchdog = watch_test_process(
            dir.path(),
            [&gateway, &verifications, &users, &worker]
                .iter()
                .filter_map(|p| p.child.as_ref().map(Child::id)),
        );

        Stack {
            gateway,
            verifications,
            users,
            worker,
            sandbox,
            redis_url,
            private_redis,
            database,
            _redis: redis,
            _queue: queue,
            watchdog: Some(watchdog),
            dir,
        }
    }

    /// The gateway's access log so far.
    pub fn gateway_access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nginx/access.log")).unwrap_or_default()
    }

    /// The gateway's access log once it has a line containing `needle`: nginx writes a
    /// request's line after sending its answer, so a client can read the answer first. Waits
    /// up to ten seconds, then gives the log as it is.
    pub async fn gateway_access_log_with(&self, needle: &str) -> String {
        for _ in 0..1000 {
            let log = self.gateway_access_log();
            if log.contains(needle) {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.gateway_access_log()
    }

    /// The gateway's error log so far.
    pub fn gateway_error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nginx/error.log")).unwrap_or_default()
    }

    /// The value of `key` in the verify-codes database.
    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let client = redis::Client::open(self.redis_url.as_str()).expect("a redis:// URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the test's Redis accepts connections");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("GET works")
    }

    /// `http://127.0.0.1:<gateway port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway.port)
    }

    /// The captcha text verifications-svc stored for `image_code_id` (`img_{id}`), read straight
    /// from Redis: what a person reads off the picture.
    pub async fn captcha_text(&self, image_code_id: &str) -> String {
        let client = redis::Client::open(self.redis_url.as_str()).expect("a redis:// URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the test's Redis accepts connections");
        let text: Option<String> = redis::cmd("GET")
            .arg(format!("img_{image_code_id}"))
            .query_async(&mut conn)
            .await
            .expect("GET works");
        text.unwrap_or_else(|| panic!("no captcha text stored under img_{image_code_id}"))
    }

    /// Whether a key exists in the verify-codes database.
    pub async fn redis_exists(&self, key: &str) -> bool {
        let client = redis::Client::open(self.redis_url.as_str()).expect("a redis:// URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the test's Redis accepts connections");
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut conn)
            .await
            .expect("EXISTS works")
    }

    /// The SMS code the worker delivered to `mobile`, read from the sandbox's inbox over HTTP
    /// (`GET /messages?mobile=`), waiting up to 20 s for the message to arrive.
    pub async fn sms_code_from_inbox(&self, mobile: &str) -> String {
        let url = format!("{}/messages?mobile={mobile}", self.sandbox.base_url());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages: Vec<Value> = harness::http_client()
                .get(&url)
                .send()
                .await
                .expect("the sandbox answers")
                .json()
                .await
                .expect("the sandbox's /messages is a JSON list");
            if let Some(last) = messages.last() {
                let code = last["datas"][0]
                    .as_str()
                    .expect("a verification SMS carries the code as its first template value");
                return code.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no SMS reached the sandbox for {mobile} within 20 s\n{}",
                self.worker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message the sandbox accepted for `mobile`.
    pub fn inbox(&self, mobile: &str) -> Vec<sms_sandbox::Message> {
        self.sandbox.messages_for(mobile)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The processes are stopped by their own Drop right after this; the watchdog must not
        // outlive them and later kill a process that reused one of their pids.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if std::thread::panicking() {
            for p in [
                &self.gateway,
                &self.verifications,
                &self.users,
                &self.worker,
            ] {
                let log = p.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("----- last lines of {} (port {}) -----", p.name, p.port);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            let nginx_errors = fs::read_to_string(self.dir.path().join("nginx/error.log"));
            eprintln!(
                "----- nginx error.log -----\n{}",
                nginx_errors.unwrap_or_default()
            );
        }
    }
}

/// A mobile number no other test uses (each test has its own databases anyway).
pub fn random_mobile() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 100_000_000;
    format!("139{n:08}")
}

/// A username that passes `^\w{5,20}$`.
pub fn random_username() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("e2e_{}", &id[..12])
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn spawn_service(dir: &Path, name: &'static str, env: &BTreeMap<String, String>) -> Process {
    let bin = workspace_binary(name);
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .env("PORT", port.to_string());
    let child = spawn_detached(&mut cmd, &log);
    Process {
        name,
        port,
        log,
        child: Some(child),
    }
}

/// Wait until `GET /healthz` answers 200 (users-svc runs its migrations first).
async fn wait_healthy(p: &mut Process) {
    let url = format!("http://127.0.0.1:{}/healthz", p.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = harness::http_client();
    loop {
        if let Ok(res) = client.get(&url).send().await
            && res.status().as_u16() == 200
        {
            return;
        }
        if let Some(child) = p.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited with {status} at start:\n{}",
                p.name,
                p.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer /healthz within 30 s:\n{}",
            p.name,
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Render the gateway template with `deploy/nginx/render.sh`, as `deploy/dev`'s `start_nginx`
/// does, with this stack's ports, and start nginx in the foreground.
pub fn spawn_nginx(dir: &Path, verifications_port: u16, users_port: u16) -> Process {
    spawn_nginx_with(
        dir,
        verifications_port,
        users_port,
        &workspace_root().join("deploy/web"),
        default_nginx_user(),
    )
}

/// The `user` directive `deploy/dev` puts in the main config: `user root;` when started as root
/// (else the workers are `nobody`, who may not read a checkout under /root), nothing otherwise.
pub fn default_nginx_user() -> &'static str {
    if running_as_root() { "user root;" } else { "" }
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// [`spawn_nginx`] with the folder served as the register page and the main config's `user`
/// line chosen by the test. Both configs are rendered by `deploy/nginx/render.sh`, the script
/// `deploy/dev`, `deploy/checks` and the gateway container run.
pub fn spawn_nginx_with(
    dir: &Path,
    verifications_port: u16,
    users_port: u16,
    web_root: &Path,
    user_directive: &str,
) -> Process {
    spawn_gateway(
        dir,
        verifications_port,
        users_port,
        web_root,
        user_directive,
        None,
        &BTreeMap::new(),
    )
}

/// [`spawn_nginx_with`], the gateway believing X-Forwarded-For from `real_ip_from`, with the
/// template's other variables from `extra`.
fn spawn_gateway(
    dir: &Path,
    verifications_port: u16,
    users_port: u16,
    web_root: &Path,
    user_directive: &str,
    real_ip_from: Option<&str>,
    extra: &BTreeMap<String, String>,
) -> Process {
    let nginx = find_binary("nginx", "nginx-light");
    let port = free_port();
    let conf_dir = dir.join("nginx");
    fs::create_dir_all(&conf_dir).expect("the nginx folder can be created");
    set_mode(&conf_dir, 0o755);
    let mut vars = vec![
        ("LISTEN", format!("127.0.0.1:{port}")),
        (
            "VERIFICATIONS_UPSTREAM",
            format!("127.0.0.1:{verifications_port}"),
        ),
        ("USERS_UPSTREAM", format!("127.0.0.1:{users_port}")),
        ("WEB_ROOT", web_root.display().to_string()),
        ("REAL_IP_FROM", real_ip_from.unwrap_or_default().to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
    render_nginx("gateway", &conf_dir.join("meiduo.conf"), &vars);
    render_nginx(
        "local",
        &conf_dir.join("nginx.conf"),
        &[
            ("NGINX_DIR", conf_dir.display().to_string()),
            ("NGINX_USER", user_directive.to_owned()),
            ("NGINX_WORKERS", "1".to_owned()),
            ("NGINX_CONNECTIONS", "1024".to_owned()),
        ],
    );
    let log = dir.join("nginx.log");
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(&conf_dir)
        .arg("-c")
        .arg(conf_dir.join("nginx.conf"))
        .arg("-e")
        .arg(conf_dir.join("error.log"));
    let mut child = spawn_detached(&mut cmd, &log);
    if !wait_for_port(port, Duration::from_secs(10)) {
        let _ = child.kill();
        panic!(
            "nginx did not open port {port}:\n{}\n{}",
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(conf_dir.join("error.log")).unwrap_or_default()
        );
    }
    Process {
        name: "nginx",
        port,
        log,
        child: Some(child),
    }
}

/// `deploy/nginx/render.sh KIND OUT` with exactly `vars` in its environment: the one renderer
/// (envsubst from gettext-base, which `deploy/dev` installs), which fails on an empty variable
/// or a `${NAME}` left unrendered.
pub fn render_nginx(kind: &str, out: &Path, vars: &[(&str, String)]) {
    let script = workspace_root().join("deploy/nginx/render.sh");
    let result = Command::new("sh")
        .arg(&script)
        .arg(kind)
        .arg(out)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("sh runs deploy/nginx/render.sh");
    assert!(
        result.status.success(),
        "deploy/nginx/render.sh {kind} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// If this test process dies without dropping the stack, kill its processes anyway.
fn watch_test_process(dir: &Path, pids: impl Iterator<Item = u32>) -> Child {
    let pids: Vec<String> = pids.map(|p| p.to_string()).collect();
    harness::process::kill_after_exit_of(std::process::id(), &pids, &dir.join("watchdog.log"))
}

/// An HTTP client whose connections come from `source` (any 127.0.0.0/8 address is local on
/// Linux): a second "client machine" for per-IP limits.
pub fn http_client_from(source: std::net::IpAddr) -> reqwest::Client {
    // harness::http_client installs the rustls crypto provider reqwest needs.
    drop(harness::http_client());
    reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client builds")
}

/// A response reduced to what the assertions look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Send `req` and read the whole answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.expect("the request gets an answer");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.bytes().await.expect("the body can be read").to_vec();
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    /// The body as JSON; panics (showing the body) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a refusal in the contract's shape: exactly `status`, JSON `{"detail": detail}`
    /// and `Retry-After: retry_after`.
    pub fn assert_refusal(&self, status: u16, detail: &str, retry_after: &str) {
        assert_eq!(
            (self.status, self.content_type.as_str()),
            (status, "application/json"),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.json(), serde_json::json!({ "detail": detail }));
        assert_eq!(self.header("retry-after"), Some(retry_after));
    }
}

/// The steps of the meiduo flow, through the gateway.
impl Stack {
    /// `GET /image_codes/{new uuid}/`: asserts a PNG or JPEG came back, and returns the id and
    /// the text stored for it.
    pub async fn captcha(&self) -> (String, String) {
        let id = uuid::Uuid::new_v4().to_string();
        let reply =
            Reply::of(harness::http_client().get(self.url(&format!("/image_codes/{id}/")))).await;
        assert_eq!(
            reply.status,
            200,
            "captcha: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply.content_type == "image/png" || reply.content_type == "image/jpeg",
            "captcha content type {}",
            reply.content_type
        );
        let text = self.captcha_text(&id).await;
        (id, text)
    }

    /// `GET /sms_codes/{mobile}/?image_code_id=&text=` with `client`.
    pub async fn send_sms(
        &self,
        client: &reqwest::Client,
        mobile: &str,
        image_code_id: &str,
        text: &str,
    ) -> Reply {
        Reply::of(client.get(self.url(&format!(
            "/sms_codes/{mobile}/?image_code_id={image_code_id}&text={text}"
        ))))
        .await
    }

    /// Captcha, then an SMS to `mobile`; returns the code from the sandbox inbox.
    pub async fn sms_code_for(&self, mobile: &str) -> String {
        let (id, text) = self.captcha().await;
        let reply = self
            .send_sms(&harness::http_client(), mobile, &id, &text)
            .await;
        assert_eq!(reply.status, 200, "sms_codes: {}", reply.json());
        self.sms_code_from_inbox(mobile).await
    }

    /// `POST /users/` with the meiduo front end's JSON body.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        mobile: &str,
        sms_code: &str,
    ) -> Reply {
        Reply::of(
            harness::http_client()
                .post(self.url("/users/"))
                .json(&serde_json::json!({
                    "username": username,
                    "password": password,
                    "password2": password,
                    "sms_code": sms_code,
                    "mobile": mobile,
                    "allow": "true",
                })),
        )
        .await
    }
}
