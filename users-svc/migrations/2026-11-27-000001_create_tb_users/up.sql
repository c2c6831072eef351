-- tb_users: Django's AbstractUser columns plus `mobile`, so a Django meiduo can read and log in
-- the same accounts (DESIGN §5).
--
-- `username` uses utf8mb4_unicode_520_ci: case-insensitive like the original's `_ci` default
-- (Tom12 = tom12, for the count and for the unique index), and, unlike utf8mb4_unicode_ci and
-- utf8mb4_general_ci, it gives characters outside the BMP (rare CJK such as U+20000) weights of
-- their own instead of treating them all as equal, so two different rare-CJK names never collide.
-- It exists on MySQL 5.6+ and MariaDB alike.
CREATE TABLE tb_users (
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
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_520_ci;
