//! What a failed query means: [`classify`] turns diesel's error into a [`DbError`], from which
//! [`super::Db::run`] decides the connection's fate and the caller what to answer.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why a database step failed, as far as the caller cares.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The INSERT hit a unique index: the value is taken (also the loser of a race).
    #[error("duplicate value for {0:?}")]
    Duplicate(UniqueKey),
    /// The server rejected a value because the column (or the comparison with it) cannot
    /// represent it: error 1366 "Incorrect string value" on a write, 1267/1270/1271 "Illegal mix
    /// of collations" in a `WHERE` (a 4-byte character against a `utf8`/utf8mb3 column), MySQL
    /// 8's 3854 "Cannot convert string". `column` is named when the server names it (1366).
    /// The request's fault, not an outage: the connection went back to the pool.
    #[error("a value the column {column:?} cannot store")]
    Unstorable {
        column: Option<String>,
        #[source]
        cause: anyhow::Error,
    },
    /// The server answered with another error (a deadlock, a lock wait timeout, a read-only
    /// server, ...). Still a 503 for the client, but the connection is fine and went back to
    /// the pool, and the idle ones were kept.
    #[error("the database refused the query")]
    Refused(#[source] anyhow::Error),
    /// Unreachable, timed out, or the connection broke: the connection was discarded and the
    /// pool's idle ones with it.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Not the server's answer but diesel's (a row that does not deserialize, ...): a bug. The
    /// connection was discarded (its state is unknown), the idle ones kept.
    #[error("database query failed")]
    Failed(#[source] anyhow::Error),
}

impl From<DbError> for shared::http::ApiError {
    fn from(e: DbError) -> Self {
        match e {
            // Callers that insert map duplicates to field errors themselves; reaching this
            // means a duplicate where none can happen, which is a bug.
            DbError::Duplicate(key) => {
                Self::Unexpected(anyhow::anyhow!("unexpected duplicate {key:?}"))
            }
            DbError::Unavailable(cause) | DbError::Refused(cause) => Self::Unavailable(cause),
            // Callers that write or look up request data map this to a field error or an
            // empty result; anywhere else it is a bug.
            DbError::Unstorable { column, cause } => {
                Self::Unexpected(cause.context(format!("unexpected unstorable value ({column:?})")))
            }
            DbError::Failed(cause) => Self::Unexpected(cause),
        }
    }
}

/// The unique indexes of `tb_users` (named in the migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueKey {
    Username,
    Mobile,
    /// Another index: on a `tb_users` adopted from Django the unique indexes are Django's
    /// (`username`, `mobile`), so the caller looks up which value is taken.
    Other,
}
/// What a failed query means ([`Db::run`] decides the connection's fate from it).
///
/// diesel-async keeps only the message of a MySQL error, not its code. A server error is
/// passed on as the server's bare message, while the driver's own failures (the connection
/// broke, a protocol error) carry mysql_async's fixed, never translated prefixes: those, and
/// diesel's `ClosedConnection`, are the connection-level failures. The data errors are then
/// recognised by the server's (default, English) texts, as `unique_key` reads the duplicate-key
/// one; a server with another `lc_messages` gets `Refused` (503) for them instead, which still
/// keeps the pool.
pub fn classify(e: DieselError) -> DbError {
    const DRIVER_PREFIXES: [&str; 4] = [
        "Input/output error:",
        "Driver error:",
        "Other error:",
        "URL error:",
    ];
    // Server answers that end the connection (1053, 1927, MySQL 8's 4031): as good as an
    // I/O error, and after a shutdown the idle connections are dead too.
    const CONNECTION_ENDED: [&str; 3] = [
        "Server shutdown in progress",
        "Connection was killed",
        "The client was disconnected",
    ];
    const UNSTORABLE: [&str; 3] = [
        "Incorrect string value",
        "Illegal mix of collations",
        "Cannot convert string",
    ];
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            DbError::Duplicate(unique_key(info.message()))
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            DbError::Unavailable(anyhow::anyhow!(
                "database connection closed: {}",
                info.message()
            ))
        }
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_owned();
            if DRIVER_PREFIXES
                .iter()
                .chain(&CONNECTION_ENDED)
                .any(|p| message.starts_with(p))
            {
                DbError::Unavailable(anyhow::anyhow!("database query: {message}"))
            } else if UNSTORABLE.iter().any(|p| message.starts_with(p)) {
                DbError::Unstorable {
                    column: rejected_column(&message),
                    cause: anyhow::anyhow!("the server rejected a value: {message}"),
                }
            } else {
                DbError::Refused(anyhow::anyhow!("the server refused the query: {message}"))
            }
        }
        other => DbError::Failed(anyhow::Error::new(other).context("database query")),
    }
}

/// The column an "Incorrect string value" message names: MariaDB says ``... for column
/// `db`.`tb_users`.`username` at row 1``, MySQL 8 `... for column 'username' at row 1`. Read
/// after the last `for column `, so the rejected value (quoted earlier) cannot fake it.
fn rejected_column(message: &str) -> Option<String> {
    let (_, rest) = message.rsplit_once("for column ")?;
    let qualified = rest.split(" at row").next()?;
    let column = qualified
        .rsplit('.')
        .next()?
        .trim_matches(|c| c == '`' || c == '\'');
    (!column.is_empty()).then(|| column.to_owned())
}

/// Which unique index a duplicate-key message names. MariaDB says
/// `Duplicate entry 'x' for key 'tb_users_username_uniq'`, MySQL 8 `... for key
/// 'tb_users.tb_users_username_uniq'`. Only the text after the last `for key '` is read: the
/// duplicate value itself may contain anything, an index name included.
pub fn unique_key(message: &str) -> UniqueKey {
    let key = message
        .rsplit_once("for key '")
        .map_or("", |(_, k)| k.trim_end_matches('\''));
    if key.ends_with("tb_users_username_uniq") {
        UniqueKey::Username
    } else if key.ends_with("tb_users_mobile_uniq") {
        UniqueKey::Mobile
    } else {
        UniqueKey::Other
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_messages_name_the_index_even_when_the_value_looks_like_one() {
        let cases = [
            (
                "MariaDB username",
                "Duplicate entry 'tom12' for key 'tb_users_username_uniq'",
                UniqueKey::Username,
            ),
            (
                "MySQL 8 mobile",
                "Duplicate entry '13800138000' for key 'tb_users.tb_users_mobile_uniq'",
                UniqueKey::Mobile,
            ),
            (
                "value names the other index",
                "Duplicate entry 'tb_users_mobile_uniq' for key 'tb_users_username_uniq'",
                UniqueKey::Username,
            ),
            (
                "primary key",
                "Duplicate entry '1' for key 'PRIMARY'",
                UniqueKey::Other,
            ),
            ("no key at all", "something else", UniqueKey::Other),
        ];
        for (why, message, want) in cases {
            assert_eq!(unique_key(message), want, "{why}");
        }
    }

    /// How each kind of failure is classified, with the texts mysql_async and MariaDB really
    /// produce (the server's message bare, the driver's with its `Display` prefix).
    #[test]
    fn only_driver_failures_are_unavailable_and_data_errors_are_unstorable() {
        let db_error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        let name = |e: &DbError| match e {
            DbError::Duplicate(k) => format!("duplicate {k:?}"),
            DbError::Unstorable { column, .. } => format!("unstorable {column:?}"),
            DbError::Refused(_) => "refused".to_owned(),
            DbError::Unavailable(_) => "unavailable".to_owned(),
            DbError::Failed(_) => "failed".to_owned(),
        };
        let cases = [
            (
                "1366 on MariaDB names the column",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Incorrect string value: '\\xF0\\xA0\\x80\\x80\\xF0\\xA0...' for column `test_1`.`tb_users`.`username` at row 1",
                ),
                "unstorable Some(\"username\")",
            ),
            (
                "1366 on MySQL 8",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Incorrect string value: '\\xF0\\xA0\\x80\\x80' for column 'mobile' at row 1",
                ),
                "unstorable Some(\"mobile\")",
            ),
            (
                "1267 in a WHERE names no column",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Illegal mix of collations (utf8mb3_general_ci,IMPLICIT) and (utf8mb4_general_ci,COERCIBLE) for operation '='",
                ),
                "unstorable None",
            ),
            (
                "1271",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Illegal mix of collations for operation '='",
                ),
                "unstorable None",
            ),
            (
                "MySQL 8 3854",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Cannot convert string '\\xF0\\xA0\\x80\\x80' from utf8mb4 to utf8mb3",
                ),
                "unstorable None",
            ),
            (
                "duplicate key",
                db_error(
                    DatabaseErrorKind::UniqueViolation,
                    "Duplicate entry 'tom12' for key 'tb_users_username_uniq'",
                ),
                "duplicate Username",
            ),
            (
                "deadlock: the server answered",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Deadlock found when trying to get lock; try restarting transaction",
                ),
                "refused",
            ),
            (
                "a value that merely mentions an I/O error",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Unknown column 'Input/output error:' in 'where clause'",
                ),
                "refused",
            ),
            (
                "connection reset",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Input/output error: Connection reset by peer (os error 104)",
                ),
                "unavailable",
            ),
            (
                "driver: closed",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Driver error: `Connection to the server is closed.'",
                ),
                "unavailable",
            ),
            (
                "1053: MariaDB is shutting down",
                db_error(DatabaseErrorKind::Unknown, "Server shutdown in progress"),
                "unavailable",
            ),
            (
                "diesel: closed connection",
                db_error(DatabaseErrorKind::ClosedConnection, "closed"),
                "unavailable",
            ),
            (
                "diesel: a row that does not deserialize",
                DieselError::DeserializationError("bad".into()),
                "failed",
            ),
        ];
        for (why, error, want) in cases {
            assert_eq!(name(&classify(error)), want, "{why}");
        }
    }
}
