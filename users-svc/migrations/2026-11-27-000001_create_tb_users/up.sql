-- tb_users: Django's AbstractUser columns plus `mobile`, so a Django meiduo can read and log in
-- the same accounts (docs/users-table.md).
--
-- Adoption: a shop that runs the Django meiduo already has a `tb_users` (made by Django's
-- migrations) when users-svc first starts against that database. Then this migration ADOPTS it
-- instead of failing: CREATE TABLE IF NOT EXISTS leaves it (and its rows, its collation, its
-- `id integer`) as it is, a unique index is added only to a column that has no single-column
-- unique index yet under ANY name (Django names its inline UNIQUE after the column: `username`,
-- `mobile`; the service resolves duplicates on such indexes by a lookup, db/users.rs), and the
-- columns the service writes are checked to exist. The table comment marks a table users-svc
-- created itself; down.sql reads it to decide what it may remove.
--
-- `username` uses utf8mb4_unicode_520_ci: case-insensitive like the original's `_ci` default
-- (Tom12 = tom12, for the count and for the unique index), and, unlike utf8mb4_unicode_ci and
-- utf8mb4_general_ci, it gives characters outside the BMP (rare CJK such as U+20000) weights of
-- their own instead of treating them all as equal, so two different rare-CJK names never collide.
-- It exists on MySQL 5.6+ and MariaDB alike. (An adopted table keeps Django's collation.)
CREATE TABLE IF NOT EXISTS tb_users (
    id BIGINT NOT NULL AUTO_INCREMENT,
    password VARCHAR(128) NOT NULL,
    last_login DATETIME(6) NULL,
    is_superuser BOOL NOT NULL DEFAULT 0,
    username VARCHAR(150) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci NOT NULL,
    first_name VARCHAR(150) NOT NULL DEFAULT '',
    last_name VARCHAR(150) NOT NULL DEFAULT '',
    email VARCHAR(254) NOT NULL DEFAULT '',
    is_staff BOOL NOT NULL DEFAULT 0,
    is_active BOOL NOT NULL DEFAULT 1,
    date_joined DATETIME(6) NOT NULL,
    mobile VARCHAR(11) NOT NULL,
    PRIMARY KEY (id),
    -- The index names are what the INSERT's duplicate-key error names; the service maps them to
    -- the field errors (db/users.rs), so keep them in step.
    UNIQUE KEY tb_users_username_uniq (username),
    UNIQUE KEY tb_users_mobile_uniq (mobile)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_520_ci
  COMMENT = 'created by users-svc';

-- An adopted table must have every column the service reads or writes: fail here, with the
-- column's name, rather than with 503s at the first registration.
SELECT id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff,
       is_active, date_joined, mobile
FROM tb_users LIMIT 0;

-- The unique indexes are the real guard against duplicate accounts, so an adopted table gets
-- ours where a column has no full single-column unique index. A redundant second one on a
-- column Django already made unique would only cost every INSERT. (Duplicate values already
-- in an adopted table make this fail: clean them up first.) Conditional DDL through PREPARE,
-- which MariaDB and MySQL both allow; the information_schema check is the only guard, because
-- `CREATE INDEX IF NOT EXISTS` is MariaDB's alone (MySQL 8 has no such clause).
SET @users_svc_sql = IF(
    EXISTS (
        SELECT 1 FROM information_schema.STATISTICS s
        WHERE s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = 'tb_users' AND s.NON_UNIQUE = 0
          AND s.COLUMN_NAME = 'username' AND s.SEQ_IN_INDEX = 1 AND s.SUB_PART IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM information_schema.STATISTICS t
              WHERE t.TABLE_SCHEMA = s.TABLE_SCHEMA AND t.TABLE_NAME = s.TABLE_NAME
                AND t.INDEX_NAME = s.INDEX_NAME AND t.SEQ_IN_INDEX = 2)),
    'DO 0',
    'CREATE UNIQUE INDEX tb_users_username_uniq ON tb_users (username)');
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;

SET @users_svc_sql = IF(
    EXISTS (
        SELECT 1 FROM information_schema.STATISTICS s
        WHERE s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = 'tb_users' AND s.NON_UNIQUE = 0
          AND s.COLUMN_NAME = 'mobile' AND s.SEQ_IN_INDEX = 1 AND s.SUB_PART IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM information_schema.STATISTICS t
              WHERE t.TABLE_SCHEMA = s.TABLE_SCHEMA AND t.TABLE_NAME = s.TABLE_NAME
                AND t.INDEX_NAME = s.INDEX_NAME AND t.SEQ_IN_INDEX = 2)),
    'DO 0',
    'CREATE UNIQUE INDEX tb_users_mobile_uniq ON tb_users (mobile)');
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;
SET @users_svc_sql = NULL;
