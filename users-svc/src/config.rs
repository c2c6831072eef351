//! Settings of users-svc, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`). `JWT_SECRET` is the one setting without a
//! default: a token signed with a guessable key would let anyone log in as anyone.

use std::time::Duration;

use ipnet::IpNet;
use shared::config::{ConfigError, Env, Listen, RedisSettings};
use shared::cors::AllowedOrigins;

/// The shortest `JWT_SECRET` accepted, in bytes: HS256 wants a key of at least its output size.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Everything users-svc reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8002), `HTTP_WORKERS`.
    pub listen: Listen,
    /// `REDIS_URL`, `REDIS_TIMEOUT_MS`: the verify-codes database (the codes registration
    /// checks, the limits).
    pub redis: RedisSettings,
    /// `DATABASE_URL`, `DB_POOL_SIZE` (16), `DB_TIMEOUT_MS` (2000).
    pub database: DatabaseConfig,
    /// `BCRYPT_COST` (12, at least 10), `HASH_CONCURRENCY` (cores), `HASH_MAX_WAIT_MS` (3000).
    pub hashing: HashingConfig,
    /// `JWT_SECRET` (required), `JWT_EXPIRATION_SECS` (86400).
    pub jwt: JwtConfig,
    /// `COUNT_LIMIT_PER_IP_PER_MINUTE`, default 120: availability checks per client IP, against
    /// bulk enumeration of usernames and mobiles.
    pub count_limit_per_minute: u64,
    /// `REGISTER_WRONG_CODES_PER_IP_PER_HOUR`, default 20: wrong SMS codes per client IP per
    /// hour, across mobiles; past it 429 without a comparison.
    pub wrong_codes_per_ip_per_hour: u64,
    /// `TRUSTED_PROXIES`, default `127.0.0.1/32`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`, default none (through the gateway the page and the API share one
    /// origin).
    pub cors_allowed_origins: AllowedOrigins,
}

/// Where the users table lives and how long we wait for it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`, default `mysql://meiduo:meiduo@127.0.0.1:3306/meiduo_mall`.
    pub url: String,
    /// `DB_POOL_SIZE`, default 16 connections per HTTP worker (each worker has its own pool, see
    /// `startup.rs`): MariaDB sees at most `HTTP_WORKERS × DB_POOL_SIZE` from one instance.
    pub pool_size: usize,
    /// `DB_TIMEOUT_MS`, default 2000: bound on a pool checkout, a new connection and each query,
    /// so a dead or frozen MariaDB turns into a quick 503 instead of a hanging request.
    pub timeout: Duration,
    /// `DB_IDLE_CHECK_MS`, default 1000: a pooled connection unused for this long is checked
    /// (one `DO 0`) before a request gets it, so one that died meanwhile (a MariaDB restart,
    /// `wait_timeout`) is replaced instead of failing the request's query.
    pub idle_check: Duration,
    /// `DB_MAX_IDLE_MS`, default 600000 (10 min): a pooled connection unused for this long is
    /// closed (with `COM_QUIT`). Keep it under the server's `wait_timeout` (8 h by default),
    /// else the server cuts idle connections itself and logs each as an aborted connection.
    pub max_idle: Duration,
    /// `MIGRATE_AT_START`, default true: apply pending migrations before serving. Compose sets
    /// false: a one-shot `users-svc migrate` runs them with its own account, and the serving
    /// account may not alter tables (it could not create diesel's bookkeeping table).
    pub migrate_at_start: bool,
}

/// How passwords are hashed (docs/users-table.md §2).
#[derive(Debug, Clone)]
pub struct HashingConfig {
    /// `BCRYPT_COST`, default 12, between 10 and 31.
    pub bcrypt_cost: u32,
    /// `HASH_CONCURRENCY`, default one per core: bcrypt is pure CPU, more at once only adds latency.
    pub concurrency: usize,
    /// `HASH_MAX_WAIT_MS`, default 3000: a registration is admitted when its expected wait for
    /// a hashing slot (the ones admitted before it, times the recent hash time) is at most
    /// this; otherwise the answer is an immediate 503, so latency stays bounded (at cost 12 on
    /// two cores, about 22 waiting). 0: only when a slot is free.
    pub max_wait: Duration,
}

/// The login token handed out at registration.
#[derive(Clone)]
pub struct JwtConfig {
    /// `JWT_SECRET`: required, at least [`MIN_JWT_SECRET_BYTES`] bytes.
    pub secret: Vec<u8>,
    /// `JWT_EXPIRATION_SECS`, default 86400 (djangorestframework-jwt's one day).
    pub expiration: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("JwtConfig")
            .field("secret", &"***")
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl Config {
    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let listen = Listen::from_env(&mut env, 8002);
        let config = Self {
            listen,
            redis: RedisSettings::from_env(&mut env),
            database: DatabaseConfig::read(&mut env),
            hashing: HashingConfig {
                bcrypt_cost: env.int_in("BCRYPT_COST", 12, 10, 31),
                concurrency: env.int_in("HASH_CONCURRENCY", cores, 1, 256),
                max_wait: Duration::from_millis(env.int_in("HASH_MAX_WAIT_MS", 3000, 0, 600_000)),
            },
            jwt: JwtConfig::read(&mut env),
            wrong_codes_per_ip_per_hour: env.int_in(
                "REGISTER_WRONG_CODES_PER_IP_PER_HOUR",
                20,
                1,
                1_000_000_000,
            ),
            count_limit_per_minute: env.int_in(
                "COUNT_LIMIT_PER_IP_PER_MINUTE",
                120,
                1,
                1_000_000_000,
            ),
            trusted_proxies: env.networks("TRUSTED_PROXIES", "127.0.0.1/32"),
            cors_allowed_origins: AllowedOrigins::from_env(&mut env),
        };
        env.finish()?;
        Ok(config)
    }
}

impl DatabaseConfig {
    /// Read `DATABASE_URL`, `DB_POOL_SIZE`, `DB_TIMEOUT_MS`, `DB_IDLE_CHECK_MS`,
    /// `DB_MAX_IDLE_MS`, `MIGRATE_AT_START` (also used alone by `users-svc migrate`).
    pub fn read(env: &mut Env) -> Self {
        Self {
            url: env.url(
                "DATABASE_URL",
                "mysql://meiduo:meiduo@127.0.0.1:3306/meiduo_mall",
                &["mysql://"],
            ),
            pool_size: env.int_in("DB_POOL_SIZE", 16, 1, 1024),
            timeout: env.millis("DB_TIMEOUT_MS", 2000),
            idle_check: env.millis("DB_IDLE_CHECK_MS", 1000),
            max_idle: env.millis("DB_MAX_IDLE_MS", 600_000),
            migrate_at_start: env.parse("MIGRATE_AT_START", true),
        }
    }
}

impl JwtConfig {
    fn read(env: &mut Env) -> Self {
        let secret = env.string("JWT_SECRET", "").into_bytes();
        if secret.is_empty() {
            env.invalid(
                "JWT_SECRET",
                "is required (the key that signs login tokens; at least 32 random bytes)",
            );
        } else if secret.len() < MIN_JWT_SECRET_BYTES {
            env.invalid(
                "JWT_SECRET",
                format!(
                    "is {} bytes, must be at least {MIN_JWT_SECRET_BYTES}",
                    secret.len()
                ),
            );
        }
        Self {
            secret,
            expiration: env.seconds("JWT_EXPIRATION_SECS", 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from(Env::from_vars(vars.iter().copied()))
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = with(&[("JWT_SECRET", SECRET)]).expect("valid");
        assert_eq!(
            c.database.url,
            "mysql://meiduo:meiduo@127.0.0.1:3306/meiduo_mall"
        );
        assert_eq!(c.hashing.bcrypt_cost, 12);
        assert_eq!(c.jwt.expiration, Duration::from_secs(86_400));
        assert_eq!(c.count_limit_per_minute, 120);
        assert_eq!(c.wrong_codes_per_ip_per_hour, 20);
        assert_eq!(c.trusted_proxies.len(), 1);
        assert_eq!(c.listen.port, 8002);
        assert!(c.database.migrate_at_start);
        assert_eq!(c.database.max_idle, Duration::from_secs(600));
        let c = with(&[("JWT_SECRET", SECRET), ("MIGRATE_AT_START", "false")]).expect("valid");
        assert!(!c.database.migrate_at_start);
    }

    #[test]
    fn a_missing_or_short_secret_and_a_low_cost_are_refused_together() {
        let err = with(&[]).expect_err("no secret").to_string();
        assert!(err.contains("JWT_SECRET: is required"), "{err}");
        let err = with(&[
            ("JWT_SECRET", "short"),
            ("BCRYPT_COST", "9"),
            ("DATABASE_URL", "postgres://x"),
        ])
        .expect_err("three errors")
        .to_string();
        assert!(err.contains("JWT_SECRET: is 5 bytes"), "{err}");
        assert!(
            err.contains("BCRYPT_COST=9: must be between 10 and 31"),
            "{err}"
        );
        assert!(err.contains("DATABASE_URL=\"postgres://x\""), "{err}");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = with(&[("JWT_SECRET", SECRET)]).expect("valid");
        assert!(!format!("{c:?}").contains(SECRET));
    }
}
