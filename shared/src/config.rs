//! Configuration from environment variables.
//!
//! Every setting has a documented default for local use. Values are read through [`Env`], which
//! collects *every* bad value instead of stopping at the first one, so that an operator fixing a
//! deployment sees all mistakes at once. [`Env::finish`] turns them into a [`ConfigError`];
//! `main` then calls [`ConfigError::exit`], which prints one line naming the variables and exits
//! with code 2 (the conventional "usage error" code, distinct from a crash).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::redis_client::{RedisClient, Timeouts};

/// Reads typed settings from a snapshot of the environment, remembering every invalid value.
#[derive(Debug)]
pub struct Env {
    vars: HashMap<String, String>,
    errors: Vec<String>,
}

/// One or more environment variables held values that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    /// Print the one-line message to stderr and exit with code 2.
    pub fn exit(&self) -> ! {
        eprintln!("{self}");
        std::process::exit(2)
    }
}

impl Env {
    /// A snapshot of the process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// A snapshot of the given variables (tests use this instead of mutating the process env); a
    /// name given twice keeps its last value, so test overrides go after the defaults.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            errors: Vec::new(),
        }
    }

    /// The raw value of `name`, if set and not empty (an empty value means "use the default",
    /// which is what a `FOO=` line in an env file or compose file usually intends).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A string setting.
    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    /// A setting parsed with `FromStr`; a value that does not parse is recorded as an error and
    /// the default is returned so that reading can go on and collect further errors.
    pub fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => default,
            Some(raw) => match raw.trim().parse() {
                Ok(v) => v,
                Err(e) => {
                    self.errors.push(format!("{name}={raw:?}: {e}"));
                    default
                }
            },
        }
    }

    /// An integer setting that must lie in `min..=max`.
    pub fn int_in<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let v = self.parse(name, default);
        if v < min || v > max {
            self.errors
                .push(format!("{name}={v}: must be between {min} and {max}"));
            return default;
        }
        v
    }

    /// A duration in milliseconds (`FOO_MS=250`), at least 1 ms.
    pub fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        Duration::from_millis(self.int_in(name, default_ms, 1, 86_400_000))
    }

    /// A duration in whole seconds, at least 1 s.
    pub fn seconds(&mut self, name: &str, default_s: u64) -> Duration {
        Duration::from_secs(self.int_in(name, default_s, 1, 31_536_000))
    }

    /// A comma-separated list (blank items dropped).
    pub fn list(&mut self, name: &str, default: &str) -> Vec<String> {
        self.raw(name)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A comma-separated list of CIDR networks; a bare address means a single host.
    pub fn networks(&mut self, name: &str, default: &str) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for item in self.list(name, default) {
            let parsed = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => self.errors.push(format!(
                    "{name}: {item:?} is not an IP address or CIDR network"
                )),
            }
        }
        nets
    }

    /// A URL setting that must start with one of `schemes` (e.g. `redis://`).
    pub fn url(&mut self, name: &str, default: &str, schemes: &[&str]) -> String {
        let v = self.string(name, default);
        if !schemes.iter().any(|s| v.starts_with(s)) {
            self.errors.push(format!(
                "{name}={v:?}: must start with {}",
                schemes.join(" or ")
            ));
        }
        v
    }

    /// A value that must be one of `choices`.
    pub fn choice(&mut self, name: &str, default: &str, choices: &[&str]) -> String {
        let v = self.string(name, default).to_ascii_lowercase();
        if !choices.contains(&v.as_str()) {
            self.errors.push(format!(
                "{name}={v:?}: must be one of {}",
                choices.join(", ")
            ));
            return default.to_owned();
        }
        v
    }

    /// Record a rule that involves more than one value (checked by the caller).
    pub fn invalid(&mut self, name: &str, why: impl Display) {
        self.errors.push(format!("{name}: {why}"));
    }

    /// All values read; fail if any was bad.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

/// Read a service's settings with `read` from the process environment; on any bad value print
/// the one line naming every bad variable and exit with code 2 ([`ConfigError::exit`]). Each
/// `main` calls this with its `Config::from`, tests call `Config::from` with a snapshot.
pub fn from_process_or_exit<T>(read: impl FnOnce(Env) -> Result<T, ConfigError>) -> T {
    read(Env::from_process()).unwrap_or_else(|e| e.exit())
}

/// The verify-codes Redis every service reaches, read the same way everywhere: `REDIS_URL`
/// (default `redis://127.0.0.1:6379/2`, `redis://` or `rediss://`) and `REDIS_TIMEOUT_MS`
/// (default 1000: connect and response timeout, so a request fails fast while Redis is down).
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub timeout: Duration,
}

impl RedisSettings {
    /// Read `REDIS_URL` and `REDIS_TIMEOUT_MS`.
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            url: env.url(
                "REDIS_URL",
                "redis://127.0.0.1:6379/2",
                &["redis://", "rediss://"],
            ),
            timeout: env.millis("REDIS_TIMEOUT_MS", 1000),
        }
    }

    /// The verify-codes connection (lazy: nothing connects until the first command), the way
    /// [`QueueSettings::connection`](crate::queue::QueueSettings::connection) is the queue's.
    pub fn connection(&self) -> anyhow::Result<RedisClient> {
        RedisClient::new(&self.url, "verify codes", Timeouts::both(self.timeout))
    }
}

/// Where an HTTP service listens. `PORT=0` asks the OS for a free port (tests do this).
#[derive(Debug, Clone)]
pub struct Listen {
    /// `HOST`, default `127.0.0.1`.
    pub host: String,
    /// `PORT`, default given by the service.
    pub port: u16,
    /// `HTTP_WORKERS`, default: one per core.
    pub workers: usize,
    /// `MAX_IN_FLIGHT`, default 1024 per worker: requests answered at once before the next one
    /// is shed with 503 ([`crate::http::Admission`]); 0 = no bound.
    pub max_in_flight: usize,
}

impl Listen {
    /// Read `HOST`, `PORT`, `HTTP_WORKERS` and `MAX_IN_FLIGHT`.
    pub fn from_env(env: &mut Env, default_port: u16) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let host = env.string("HOST", "127.0.0.1");
        let port = env.parse("PORT", default_port);
        let workers = env.int_in("HTTP_WORKERS", cores, 1, 256);
        Self {
            host,
            port,
            workers,
            max_in_flight: env.int_in("MAX_IN_FLIGHT", 1024 * workers, 0, 1_000_000),
        }
    }

    /// `host:port`, for binding.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_values_take_the_default() {
        let mut env = Env::from_vars([("EMPTY", "  ")]);
        assert_eq!(env.string("MISSING", "d"), "d");
        assert_eq!(env.parse("EMPTY", 7u32), 7);
        env.finish().expect("no errors");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_name() {
        let mut env = Env::from_vars([
            ("PORT", "eighty"),
            ("BCRYPT_COST", "3"),
            ("REDIS_URL", "http://x"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, nonsense"),
        ]);
        assert_eq!(env.parse("PORT", 80u16), 80);
        assert_eq!(env.int_in("BCRYPT_COST", 12u32, 10, 31), 12);
        env.url(
            "REDIS_URL",
            "redis://127.0.0.1/",
            &["redis://", "rediss://"],
        );
        assert_eq!(env.networks("TRUSTED_PROXIES", "").len(), 1);
        let err = env.finish().expect_err("four errors").to_string();
        assert!(
            err.starts_with("invalid configuration: PORT=\"eighty\": "),
            "{err}"
        );
        assert!(
            err.contains("BCRYPT_COST=3: must be between 10 and 31"),
            "{err}"
        );
        assert!(
            err.contains("REDIS_URL=\"http://x\": must start with redis:// or rediss://"),
            "{err}"
        );
        assert!(
            err.contains("TRUSTED_PROXIES: \"nonsense\" is not an IP address"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn lists_and_networks_parse() {
        let mut env = Env::from_vars([("A", "x, ,y"), ("N", "127.0.0.1,10.0.0.0/8,::1")]);
        assert_eq!(env.list("A", ""), ["x", "y"]);
        let nets = env.networks("N", "");
        assert_eq!(nets.len(), 3);
        assert_eq!(nets[0].to_string(), "127.0.0.1/32");
        assert_eq!(env.choice("P", "ccp", &["ccp", "log"]), "ccp");
        env.finish().expect("valid");
    }

    #[test]
    fn listen_reads_host_port_and_workers() {
        let mut env = Env::from_vars([("PORT", "0"), ("HTTP_WORKERS", "3")]);
        let l = Listen::from_env(&mut env, 8001);
        assert_eq!((l.address().as_str(), l.workers), ("127.0.0.1:0", 3));
        assert_eq!(
            l.max_in_flight, 3072,
            "1024 per worker unless MAX_IN_FLIGHT says otherwise"
        );
    }
}
