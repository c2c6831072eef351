//! Finding server binaries, free ports, the per-run folder shared by a binary's test processes,
//! and the watchdog that cleans it up.

use std::fs::{self, File, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts server binaries that are not on a normal user's PATH.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// The path of `program`, or a panic naming the Debian package to install.
pub fn find_binary(program: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` was not found on PATH or in /usr/sbin: install the Debian package \
                 `{debian_package}` (apt-get install {debian_package}); `deploy/dev test` does this for you"
            )
        })
}

/// Send `signal` (a name `kill` knows: `TERM`, `STOP`, `CONT`, ...) to process `pid`; whether
/// it was delivered (not: the process is already gone). `kill(1)` rather than a libc binding:
/// the tests need nothing else of it.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 works on any machine with loopback")
}

/// Wait until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Spawn a server detached from the test process: its own process group (so a runner's group
/// kill of one test does not take down a server the other tests share) and no inherited stdio
/// (output goes to `log`).
pub fn spawn_detached(cmd: &mut Command, log: &Path) -> std::process::Child {
    let out = File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let err = out.try_clone().expect("a log file handle can be cloned");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// The folder shared by all test processes of this test binary in this run, and an exclusive
/// lock on it held while the returned guard lives.
pub struct RunDir {
    pub path: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for RunDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunDir").field("path", &self.path).finish()
    }
}

/// The pid whose exit ends the run: the test runner that started this test process.
pub fn runner_pid() -> u32 {
    std::os::unix::process::parent_id()
}

/// Lock (creating if needed) `/tmp/meiduo-harness/<runner pid>-<binary>/`.
pub fn lock_run_dir() -> RunDir {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tests".to_owned());
    let path = std::env::temp_dir()
        .join("meiduo-harness")
        .join(format!("{}-{stem}", runner_pid()));
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join("lock"))
        .expect("the lock file can be opened");
    lock.lock()
        .expect("an exclusive lock on the run folder can be taken");
    RunDir { path, _lock: lock }
}

/// Start the watchdog that, once `runner_pid` has exited, kills `pids` and removes `dir`.
///
/// It is `sh` in a session of its own, so it outlives the test process that started it.
pub fn start_watchdog(dir: &Path, pids: &[u32]) {
    const SCRIPT: &str = r#"
watch=$1; dir=$2; shift 2
while kill -0 "$watch" 2>/dev/null; do sleep 0.5; done
kill "$@" 2>/dev/null
i=0; while [ $i -lt 50 ] && kill -0 "$@" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
kill -9 "$@" 2>/dev/null
rm -rf "$dir"
"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("watchdog")
        .arg(runner_pid().to_string())
        .arg(dir)
        .args(pids.iter().map(u32::to_string));
    spawn_detached(&mut cmd, &dir.join("watchdog.log"));
}

/// Start a detached `sh` that waits until process `watch` has exited, then SIGKILLs `targets`
/// (pids, or `-<pgid>` for a whole process group). Servers, drivers and browsers a test owns
/// then die even when the test process is killed without running destructors (a timeout).
pub fn kill_after_exit_of(watch: u32, targets: &[String], log: &Path) -> std::process::Child {
    const SCRIPT: &str = r#"
watch=$1; shift
while kill -0 "$watch" 2>/dev/null; do sleep 0.5; done
kill -KILL -- "$@" 2>/dev/null
"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("watchdog")
        .arg(watch.to_string())
        .args(targets);
    spawn_detached(&mut cmd, log)
}

/// A scratch folder removed when dropped (for servers a single test owns).
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meiduo-harness-")
        .tempdir()
        .expect("a temp dir can be created")
}
