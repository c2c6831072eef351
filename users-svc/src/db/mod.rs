//! MariaDB/MySQL access, one file per concern: the connection pool and [`Db::run`] with its
//! failure policy (`pool.rs`), where connections come from and how they are closed
//! (`closing.rs`), what a failed query means (`error.rs`), the embedded migrations
//! (`migrations.rs`), and the `tb_users` queries ([`users`]).

mod closing;
mod error;
mod migrations;
mod pool;
pub mod schema;
pub mod users;

pub use closing::Closing;
pub use error::{DbError, UniqueKey, classify, unique_key};
pub use migrations::{ConnectError, MIGRATIONS, migrate, revert_last};
pub use pool::{Conn, Db};
