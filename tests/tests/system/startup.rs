//! Start-up and shutdown of the real binaries: a bad configuration value stops a service before
//! it does anything, with exit code 2 and one line naming every bad variable; SIGTERM stops a
//! running service cleanly with exit code 0.

use std::process::Command;
use std::time::Duration;

use crate::stack::{Stack, workspace_binary};

#[test]
fn a_bad_configuration_value_exits_2_with_one_line_naming_each_bad_variable() {
    for name in ["verifications-svc", "users-svc", "sms-worker"] {
        let out = Command::new(workspace_binary(name))
            .env_clear()
            .env("PORT", "eighty")
            .env("REDIS_URL", "http://127.0.0.1:1/2")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: exactly one line: {stderr:?}"
        );
        assert!(
            stderr.starts_with("invalid configuration: "),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(r#"PORT="eighty": "#), "{name}: {stderr}");
        assert!(
            stderr.contains(
                r#"REDIS_URL="http://127.0.0.1:1/2": must start with redis:// or rediss://"#
            ),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_every_service_with_exit_code_0() {
    let mut stack = Stack::start().await;
    for process in [
        &mut stack.verifications,
        &mut stack.users,
        &mut stack.worker,
    ] {
        let name = process.name;
        let status = process.terminate_within(Duration::from_secs(15));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{name} after SIGTERM; log:\n{}",
            process.log_text()
        );
    }
}
