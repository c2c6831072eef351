//! users-svc owns the accounts: username and mobile availability counts
//! (`GET /usernames/{username}/count/`, `GET /mobiles/{mobile}/count/`) and registration
//! (`POST /users/`) against the Django-compatible `tb_users` table in MySQL/MariaDB, reached
//! through diesel-async (pure-Rust mysql_async) and a deadpool pool.

pub mod config;
pub mod db;
pub mod domain;
pub mod metrics;
pub mod migrate;
pub mod routes;
pub mod startup;
