//! `sms-sandbox`: the fake CCP SMS provider as a process, for `deploy/dev up` and benchmarks.
//!
//! Environment: `HOST` (127.0.0.1), `PORT` (8090), `HTTP_WORKERS` (one per core), and the
//! accounts it accepts, under the names the worker uses: `CCP_ACCOUNT_SID`, `CCP_AUTH_TOKEN`,
//! `CCP_APP_ID` (32 hex characters each); `ALIYUN_ACCESS_KEY_ID`, `ALIYUN_ACCESS_KEY_SECRET`,
//! `ALIYUN_SIGN_NAME`, `ALIYUN_TEMPLATE_CODE`; `TENCENT_SECRET_ID`, `TENCENT_SECRET_KEY`,
//! `TENCENT_SMS_SDK_APP_ID`, `TENCENT_SIGN_NAME`, `TENCENT_TEMPLATE_ID`. Defaults are fixed
//! development values (the same as `deploy/dev`'s). A bad value exits with code 2 and one
//! line naming it.

use std::net::TcpListener;

use shared::config::{Env, Listen};
use sms_sandbox::{Sandbox, SandboxConfig, aliyun, tencent};

/// Development credentials, used when the variables are unset (never valid at the real CCP).
const DEV_ACCOUNT_SID: &str = "8a216da8000000000000000000000001";
const DEV_AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const DEV_APP_ID: &str = "8a216da8000000000000000000000002";

fn hex32(env: &mut Env, name: &str, default: &str) -> String {
    let v = env.string(name, default);
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        env.invalid(name, "must be 32 hexadecimal characters");
    }
    v
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("sms-sandbox");
    let mut env = Env::from_process();
    let listen = Listen::from_env(&mut env, 8090);
    let config = SandboxConfig {
        account_sid: hex32(&mut env, "CCP_ACCOUNT_SID", DEV_ACCOUNT_SID),
        auth_token: hex32(&mut env, "CCP_AUTH_TOKEN", DEV_AUTH_TOKEN),
        app_id: hex32(&mut env, "CCP_APP_ID", DEV_APP_ID),
        aliyun: aliyun::Account {
            access_key_id: env.string("ALIYUN_ACCESS_KEY_ID", "LTAIdevelopment0001"),
            access_key_secret: env.string("ALIYUN_ACCESS_KEY_SECRET", "dev-aliyun-secret"),
            sign_name: env.string("ALIYUN_SIGN_NAME", "美多商城"),
            template_code: env.string("ALIYUN_TEMPLATE_CODE", "SMS_000000001"),
        },
        tencent: tencent::Account {
            secret_id: env.string("TENCENT_SECRET_ID", "AKIDdevelopment0001"),
            secret_key: env.string("TENCENT_SECRET_KEY", "dev-tencent-secret"),
            sdk_app_id: env.string("TENCENT_SMS_SDK_APP_ID", "1400000001"),
            sign_name: env.string("TENCENT_SIGN_NAME", "美多商城"),
            template_id: env.string("TENCENT_TEMPLATE_ID", "1000001"),
        },
    };
    env.finish().unwrap_or_else(|e| e.exit());

    let listener = TcpListener::bind(listen.address())
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", listen.address()))?;
    let (sandbox, server) = Sandbox::serve(config, listener, listen.workers)?;
    tracing::info!(
        port = sandbox.port(),
        "sms-sandbox listening: inbox at / and JSON at /messages"
    );
    server.await?;
    Ok(())
}
