//! users-svc owns the accounts: username and mobile availability counts
//! (`GET /usernames/{username}/count/`, `GET /mobiles/{mobile}/count/`) and registration
//! (`POST /users/`) against the Django-compatible `tb_users` table in MySQL/MariaDB.

pub mod config;
pub mod routes;
pub mod startup;
