//! API tests of users-svc against a real MariaDB and Redis.

mod health;
mod helpers;
