-- Reverting must never destroy accounts users-svc did not create.
--
-- * A table users-svc created (its comment says so, up.sql): dropped, as before. Its accounts
--   go with it (Django may be using them too by then): back up before `users-svc migrate revert`.
-- * An adopted table (Django's, or one made by a users-svc older than the comment): the table and
--   its rows stay; only the unique indexes up.sql may have added are removed. Their exact names
--   are users-svc's: Django names an inline UNIQUE after the column and a later one
--   `tb_users_<column>_<hash>_uniq`, never `tb_users_<column>_uniq`.
-- * No table: nothing to do.
SET @users_svc_comment = (
    SELECT TABLE_COMMENT FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users');

SET @users_svc_sql = CASE
    WHEN @users_svc_comment IS NULL THEN 'DO 0'
    WHEN @users_svc_comment = 'created by users-svc' THEN 'DROP TABLE tb_users'
    ELSE 'DROP INDEX IF EXISTS tb_users_username_uniq ON tb_users' END;
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;

SET @users_svc_sql = CASE
    WHEN @users_svc_comment IS NULL OR @users_svc_comment = 'created by users-svc' THEN 'DO 0'
    ELSE 'DROP INDEX IF EXISTS tb_users_mobile_uniq ON tb_users' END;
PREPARE users_svc_stmt FROM @users_svc_sql;
EXECUTE users_svc_stmt;
DEALLOCATE PREPARE users_svc_stmt;
SET @users_svc_sql = NULL, @users_svc_comment = NULL;
