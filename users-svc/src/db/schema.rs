//! The diesel schema of `tb_users`, written by hand to match
//! `migrations/2026-11-27-000001_create_tb_users/up.sql` (the diesel CLI is not a build tool we
//! install). Keep the two in step; the API tests run the real migration, so a mismatch fails them.
//! A `tb_users` adopted from Django may have `id integer` instead of `BIGINT`: no query reads
//! `id` through this schema (the insert reads `LAST_INSERT_ID()`), and the adoption test
//! registers on such a table.

diesel::table! {
    use diesel::sql_types::*;
    use diesel::mysql::sql_types::Datetime;

    /// Django `AbstractUser` columns plus `mobile` (docs/users-table.md §1).
    tb_users (id) {
        id -> BigInt,
        password -> Varchar,
        last_login -> Nullable<Datetime>,
        is_superuser -> Bool,
        username -> Varchar,
        first_name -> Varchar,
        last_name -> Varchar,
        email -> Varchar,
        is_staff -> Bool,
        is_active -> Bool,
        date_joined -> Datetime,
        mobile -> Varchar,
    }
}
