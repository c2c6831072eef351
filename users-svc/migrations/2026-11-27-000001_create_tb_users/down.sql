DROP TABLE tb_users;
