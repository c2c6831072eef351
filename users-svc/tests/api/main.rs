//! API tests of users-svc against a real MariaDB and Redis.

mod abuse;
mod health;
mod helpers;
mod lifecycle;
mod mariadb_faults;
mod migrations;
mod mobile_count;
mod register;
mod username_count;
