//! Availability checks (`/usernames/{u}/count/`, `/mobiles/{m}/count/`): one indexed
//! `COUNT(*)` each, behind a per-client-IP limit so nobody can enumerate the accounts in bulk.
//!
//! The limit itself is [`super::enumeration_limit`], shared with registration.

use std::net::IpAddr;

use shared::domain::{Mobile, Username};
use shared::http::ApiError;

use super::enumeration_limit::{EnumerationLimit, LimitError};
use crate::db::{Db, DbError, users};

/// Why a count was not answered.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// Over the per-IP limit, or the limiter is down.
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The database did not answer.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<CountError> for ApiError {
    fn from(e: CountError) -> Self {
        match e {
            CountError::Limited(e) => e.into(),
            CountError::Db(e) => e.into(),
        }
    }
}

/// What the count endpoints share.
#[derive(Debug)]
pub struct Availability {
    pub db: Db,
    /// The per-IP limit, shared by both endpoints and registration.
    pub limiter: EnumerationLimit,
}

impl Availability {
    /// How many accounts use `name` (0 or 1, case-insensitively).
    ///
    /// A name the column cannot store (a 4-byte character such as U+20000 against an adopted
    /// Django table in `utf8`, i.e. utf8mb3) makes MariaDB reject the comparison; such a name
    /// cannot be in any row, so it counts 0 (and can never be registered, see registration).
    pub async fn username_count(
        &self,
        client: Option<IpAddr>,
        name: &Username,
    ) -> Result<i64, CountError> {
        self.limiter.hit(client).await?;
        match self
            .db
            .run(async |c| users::count_username(c, name).await)
            .await
        {
            Ok(n) => Ok(n),
            Err(DbError::Unstorable { cause, .. }) => {
                tracing::debug!(error = %cause, "a username the column cannot store counts 0");
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How many accounts use `mobile` (0 or 1).
    pub async fn mobile_count(
        &self,
        client: Option<IpAddr>,
        mobile: &Mobile,
    ) -> Result<i64, CountError> {
        self.limiter.hit(client).await?;
        Ok(self
            .db
            .run(async |c| users::count_mobile(c, mobile).await)
            .await?)
    }
}
