//! Queries on `tb_users`. Each takes the connection first and does one round trip (the insert
//! two: MySQL has no `RETURNING`), so the callers decide about pooling and timeouts.

use chrono::NaiveDateTime;
use diesel::dsl::{exists, sql};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::{BigInt, Unsigned};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use shared::domain::{Mobile, Username};

use super::schema::tb_users;

/// How many accounts use `username`, compared case-insensitively by the column's collation
/// (`Tom12` counts `tom12`). 0 or 1, the unique index sees to that.
pub async fn count_username(conn: &mut AsyncMysqlConnection, name: &Username) -> QueryResult<i64> {
    tb_users::table
        .filter(tb_users::username.eq(name.as_str()))
        .count()
        .get_result(conn)
        .await
}

/// How many accounts use `mobile` (0 or 1).
pub async fn count_mobile(conn: &mut AsyncMysqlConnection, mobile: &Mobile) -> QueryResult<i64> {
    tb_users::table
        .filter(tb_users::mobile.eq(mobile.as_str()))
        .count()
        .get_result(conn)
        .await
}

/// Which of a username and a mobile already belong to an account, in one round trip. A value
/// that is `None` (it failed its own checks) is not looked up and reported as free.
pub async fn taken(
    conn: &mut AsyncMysqlConnection,
    name: Option<&Username>,
    mobile: Option<&Mobile>,
) -> QueryResult<(bool, bool)> {
    let by_name =
        |n: &Username| exists(tb_users::table.filter(tb_users::username.eq(n.as_str().to_owned())));
    let by_mobile =
        |m: &Mobile| exists(tb_users::table.filter(tb_users::mobile.eq(m.as_str().to_owned())));
    match (name, mobile) {
        (Some(n), Some(m)) => {
            diesel::select((by_name(n), by_mobile(m)))
                .get_result(conn)
                .await
        }
        (Some(n), None) => Ok((diesel::select(by_name(n)).get_result(conn).await?, false)),
        (None, Some(m)) => Ok((false, diesel::select(by_mobile(m)).get_result(conn).await?)),
        (None, None) => Ok((false, false)),
    }
}

/// A row to insert; the password is already hashed (`bcrypt_sha256$...`), so the plain text
/// never reaches the database, not even inside a statement.
#[derive(Debug, Insertable)]
#[diesel(table_name = tb_users)]
pub struct NewUser<'a> {
    pub password: &'a str,
    pub is_superuser: bool,
    pub username: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: NaiveDateTime,
    pub mobile: &'a str,
}

impl<'a> NewUser<'a> {
    /// An ordinary active account with Django's defaults for the columns we do not collect.
    pub fn new(
        username: &'a Username,
        mobile: &'a Mobile,
        password_hash: &'a str,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            password: password_hash,
            is_superuser: false,
            username: username.as_str(),
            first_name: "",
            last_name: "",
            email: "",
            is_staff: false,
            is_active: true,
            date_joined: now,
            mobile: mobile.as_str(),
        }
    }
}

/// Insert `user` and return its id. A duplicate username or mobile fails with diesel's
/// `UniqueViolation`, which [`super::unique_key`] names.
///
/// Safe to repeat, as [`super::Db::run`] requires: when the connection broke after the server
/// had already committed the row (its answer was lost), the repeat hits the unique indexes, and
/// the row found under this username and mobile is recognised as this request's own by its
/// password hash: bcrypt's 128-bit random salt makes every hash unique to the request that made
/// it. Then its id is returned as if the first answer had arrived; a row with another hash is a
/// genuine duplicate. Costs one more round trip, and only on a duplicate.
pub async fn insert(conn: &mut AsyncMysqlConnection, user: &NewUser<'_>) -> QueryResult<i64> {
    match diesel::insert_into(tb_users::table)
        .values(user)
        .execute(conn)
        .await
    {
        Ok(_) => {}
        Err(duplicate @ Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            return own_row(conn, user).await?.ok_or(duplicate);
        }
        Err(e) => return Err(e),
    }
    // LAST_INSERT_ID() is per connection, so this is our row's id even under concurrency.
    let id: u64 = diesel::select(sql::<Unsigned<BigInt>>("LAST_INSERT_ID()"))
        .get_result(conn)
        .await?;
    i64::try_from(id).map_err(|e| Error::DeserializationError(Box::new(e)))
}

/// The id of the row `user` itself inserted earlier, if there is one (see [`insert`]). The
/// hashes are compared here, byte for byte: the column's collation is case-insensitive.
async fn own_row(conn: &mut AsyncMysqlConnection, user: &NewUser<'_>) -> QueryResult<Option<i64>> {
    // `id` may be an `integer` on a table adopted from Django: read it as a BIGINT.
    let found: Option<(i64, String)> = tb_users::table
        .filter(tb_users::username.eq(user.username))
        .filter(tb_users::mobile.eq(user.mobile))
        .select((sql::<BigInt>("CAST(`id` AS SIGNED)"), tb_users::password))
        .first(conn)
        .await
        .optional()?;
    Ok(found
        .filter(|(_, hash)| hash == user.password)
        .map(|(id, _)| id))
}
