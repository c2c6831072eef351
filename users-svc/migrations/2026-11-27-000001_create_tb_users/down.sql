-- Reverting must never destroy accounts users-svc did not create.
--
-- * A table users-svc created (its comment says so, up.sql): dropped, as before. Its accounts
--   go with it (Django may be using them too by then): back up before `users-svc migrate revert`.
-- * An adopted table (Django's, or one made by a users-svc older than the comment): the table and
--   its rows stay; only the unique indexes up.sql may have added are removed. Their exact names
--   are users-svc's: Django names an inline UNIQUE after the column and a later one
--   `tb_users_<column>_<hash>_uniq`, never `tb_users_<column>_uniq`.
-- * No table: nothing to do.
--
-- Each index is dropped only where information_schema shows it: `DROP INDEX IF EXISTS` is
-- MariaDB's alone (MySQL 8 has no such clause), and up.sql did not add an index to a column
-- Django had already made unique.
SET @users_svc_comment = (
    SELECT TABLE_COMMENT FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users');

SET @users_svc_sql = CASE
    WHEN @users_svc_comment IS NULL THEN 'DO 0'
    WHEN @users_svc_comment = 'created by users-svc' THEN 'DROP TABLE tb_users'
    ELSE IF(
        EXISTS (
            SELECT 1 FROM information_schema.STATISTICS
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users'
              AND INDEX_NAME = 'tb_users_username_uniq'),
        'DROP INDEX tb_users_username_uniq ON tb_users',
        'DO 0') END;
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;

SET @users_svc_sql = CASE
    WHEN @users_svc_comment IS NULL OR @users_svc_comment = 'created by users-svc' THEN 'DO 0'
    ELSE IF(
        EXISTS (
            SELECT 1 FROM information_schema.STATISTICS
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users'
              AND INDEX_NAME = 'tb_users_mobile_uniq'),
        'DROP INDEX tb_users_mobile_uniq ON tb_users',
        'DO 0') END;
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;
SET @users_svc_sql = NULL, @users_svc_comment = NULL;
