//! Encryption. The master key comes from the stand-in key command in pg_test::postgresql_conf_options. Each test
//! is one transaction, so it uses one tenant (the other-tenant cases are in tests/e2e/test_encryption.py).

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    #[pg_test]
    fn encryption_round_trips_text_and_bytea_up_to_a_megabyte() {
        setup();
        authenticate_a();
        for len in [0usize, 1, 100, 65_536, 1 << 20] {
            let sql = format!(
                "SELECT tenant.decrypt(tenant.encrypt(repeat('é', {len}) || 'x'), NULL) = repeat('é', {len}) || 'x' \
                   AND tenant.decrypt(tenant.encrypt(repeat('z', {len}), 'app.t.c:1'), 'app.t.c:1') = repeat('z', {len}) \
                   AND octet_length(tenant.encrypt(repeat('z', {len}))) = 33 + {len}"
            );
            assert_eq!(one::<bool>(&sql), Some(true), "text, {len} bytes");
            let sql = format!(
                "SELECT tenant.decrypt_bytea(tenant.encrypt_bytea(b), 'ctx') IS NULL \
                        AND tenant.decrypt_bytea(tenant.encrypt_bytea(b, 'ctx'), 'ctx') = b \
                   FROM (SELECT decode(repeat('00ff', {len} / 2), 'hex') AS b) v"
            );
            // the first operand raises: a NULL context is not the context 'ctx'
            assert_eq!(outcome(&sql).split(':').next(), Some("XX001"), "bytea, {len} bytes");
            let sql = format!(
                "SELECT tenant.decrypt_bytea(tenant.encrypt_bytea(b, 'ctx'), 'ctx') = b \
                   FROM (SELECT decode(repeat('00ff', {len} / 2), 'hex') AS b) v"
            );
            assert_eq!(one::<bool>(&sql), Some(true), "bytea, {len} bytes");
        }
        // a fresh nonce every call: the same plaintext never gives the same ciphertext
        assert_eq!(one::<bool>("SELECT tenant.encrypt('same') <> tenant.encrypt('same')"), Some(true));
        // NULL in, NULL out
        for f in [
            "tenant.encrypt(NULL)",
            "tenant.decrypt(NULL)",
            "tenant.encrypt_bytea(NULL, 'c')",
            "tenant.decrypt_bytea(NULL)",
        ] {
            assert_eq!(one::<bool>(&format!("SELECT {f} IS NULL")), Some(true), "{f}");
        }
        // the first encryption created version 1, which the header names
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('x'))"), Some(1));
    }

    #[pg_test]
    fn encryption_needs_a_tenant_context() {
        setup();
        for f in [
            "tenant.encrypt('x')",
            "tenant.decrypt('\\x0100000001000000000000000000000000000000000000000000000000000000000000'::bytea)",
            "tenant.encrypt_bytea('\\x00')",
            "tenant.decrypt_bytea('\\x00')",
        ] {
            assert_eq!(outcome(&format!("SELECT {f}")), "42501: no tenant context", "{f}");
        }
    }

    #[pg_test]
    fn bad_ciphertexts_are_errors_never_garbage() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('the secret plaintext', 'app.p.d:42') AS c");
        assert_eq!(
            one::<String>("SELECT tenant.decrypt(c, 'app.p.d:42') FROM ct").as_deref(),
            Some("the secret plaintext")
        );
        let not_authentic = "XX001: ciphertext does not authenticate: it was altered, or belongs to another tenant or \
                             another context";
        let cases = [
            ("tenant.decrypt(c, 'app.p.d:43')", not_authentic),
            ("tenant.decrypt(c)", not_authentic),
            ("tenant.decrypt(c, '')", not_authentic),
            ("tenant.decrypt(set_byte(c, 20, get_byte(c, 20) # 1), 'app.p.d:42')", not_authentic),
            ("tenant.decrypt(set_byte(c, 8, get_byte(c, 8) # 128), 'app.p.d:42')", not_authentic),
            (
                "tenant.decrypt(set_byte(c, octet_length(c) - 1, get_byte(c, octet_length(c) - 1) # 1), 'app.p.d:42')",
                not_authentic,
            ),
            ("tenant.decrypt(substr(c, 1, octet_length(c) - 1), 'app.p.d:42')", not_authentic),
            (
                "tenant.decrypt(substr(c, 1, 32), 'app.p.d:42')",
                "22P03: ciphertext is truncated (shorter than 33 bytes)",
            ),
            ("tenant.decrypt(''::bytea)", "22P03: ciphertext is truncated (shorter than 33 bytes)"),
            ("tenant.decrypt(set_byte(c, 0, 2), 'app.p.d:42')", "22P03: ciphertext has unknown format byte 0x02"),
            ("tenant.decrypt(set_byte(c, 0, 0), 'app.p.d:42')", "22P03: ciphertext has unknown format byte 0x00"),
            (
                "tenant.decrypt(set_byte(c, 4, 7), 'app.p.d:42')",
                "22P03: ciphertext names data key version 7, which the current tenant does not have",
            ),
            ("tenant.key_version(set_byte(c, 0, 9))", "22P03: ciphertext has unknown format byte 0x09"),
        ];
        for (expr, want) in cases {
            assert_eq!(outcome(&format!("SELECT {expr} FROM ct")), want, "{expr}");
        }
        // bytes that are not text: decrypt() refuses, decrypt_bytea() returns them
        run("CREATE TEMP TABLE bin AS SELECT tenant.encrypt_bytea('\\xff00fe'::bytea) AS c");
        assert_eq!(outcome("SELECT tenant.decrypt(c) FROM bin"), "22021: decrypted value is not valid UTF-8 text");
        assert_eq!(one::<String>("SELECT tenant.decrypt_bytea(c)::text FROM bin").as_deref(), Some("\\xff00fe"));
        // no error message carried the plaintext
        let all = cases.iter().map(|(_, m)| *m).collect::<Vec<_>>().join(" ");
        assert!(!all.contains("secret plaintext"));
    }

    #[pg_test]
    fn rotation_keeps_old_data_readable_and_reencrypt_migrates() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('v1 data', 'ctx') AS c");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.create_key('{TENANT_A}')")), Some(1), "already there");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('new'))"), Some(2));
        assert_eq!(one::<String>("SELECT tenant.decrypt(c, 'ctx') FROM ct").as_deref(), Some("v1 data"));
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(3));
        // reencrypt is an admin function: the admin migrates in the tenant's context
        assert_eq!(outcome("SELECT tenant.reencrypt(c, 'ctx') FROM ct").split(':').next(), Some("42501"));
        run("RESET ROLE");
        run("UPDATE ct SET c = tenant.reencrypt(c, 'ctx')");
        assert_eq!(one::<i64>("SELECT tenant.key_version(c) FROM ct"), Some(3));
        assert_eq!(one::<String>("SELECT tenant.decrypt(c, 'ctx') FROM ct").as_deref(), Some("v1 data"));
        assert_eq!(outcome("SELECT tenant.reencrypt(c, 'other') FROM ct").split(':').next(), Some("XX001"));
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(version || ':' || state || ':' || (kek_id ~ '^[0-9a-f]{{16}}$') || ':' \
                        || (retired_at IS NOT NULL), ',' ORDER BY version) FROM tenant.keys WHERE tenant = '{TENANT_A}'"
            ))
            .as_deref(),
            Some("1:retired:true:true,2:retired:true:true,3:active:true:false")
        );
        run("SET ROLE tg_app");
    }

    #[pg_test]
    fn shredding_destroys_every_version_for_good() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('doomed') AS c");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.shred('{TENANT_A}')")), Some(2));
        let destroyed = "55000: keys destroyed: the data keys of the current tenant were shredded";
        assert_eq!(outcome("SELECT tenant.decrypt(c) FROM ct"), destroyed);
        assert_eq!(outcome("SELECT tenant.encrypt('new data')"), destroyed, "no new key is created");
        run("RESET ROLE");
        let admin_destroyed = format!("55000: keys destroyed: the data keys of tenant {TENANT_A} were shredded");
        assert_eq!(outcome(&format!("SELECT tenant.create_key('{TENANT_A}')")), admin_destroyed);
        assert_eq!(outcome(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), admin_destroyed);
        assert_eq!(one::<i32>(&format!("SELECT tenant.shred('{TENANT_A}')")), Some(0), "idempotent");
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(version || ':' || state || ':' || (wrapped IS NULL) || ':' || (destroyed_at IS NOT NULL), \
                        ',' ORDER BY version) FROM tenant.data_key WHERE tenant = '{TENANT_A}'"
            ))
            .as_deref(),
            Some("1:destroyed:true:true,2:destroyed:true:true")
        );
        // a tenant shredded before it ever had a key gets a tombstone, and never a key
        assert_eq!(one::<i32>(&format!("SELECT tenant.shred('{TENANT_B}')")), Some(0));
        assert_eq!(
            outcome(&format!("SELECT tenant.create_key('{TENANT_B}')")),
            format!("55000: keys destroyed: the data keys of tenant {TENANT_B} were shredded")
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT state || ':' || (kek_id IS NULL) FROM tenant.keys WHERE tenant = '{TENANT_B}'"
            ))
            .as_deref(),
            Some("destroyed:true")
        );
    }

    #[pg_test]
    fn app_role_cannot_touch_keys_or_admin_functions() {
        setup();
        authenticate_a();
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('x'))"), Some(1));
        let denied = [
            ("SELECT * FROM tenant.data_key", "permission denied for table data_key"),
            ("SELECT * FROM tenant.keys", "permission denied for view keys"),
            ("UPDATE tenant.data_key SET wrapped = NULL", "permission denied for table data_key"),
            (&format!("SELECT tenant.create_key('{TENANT_A}')"), "permission denied for function create_key"),
            (&format!("SELECT tenant.rotate_key('{TENANT_A}')"), "permission denied for function rotate_key"),
            (&format!("SELECT tenant.shred('{TENANT_A}')"), "permission denied for function shred"),
            ("SELECT tenant.rewrap_keys()", "permission denied for function rewrap_keys"),
            ("SELECT tenant.reencrypt('\\x00')", "permission denied for function reencrypt"),
            ("SELECT tenant._table_changed(0)", "permission denied for function _table_changed"),
        ];
        for (sql, message) in denied {
            assert_eq!(outcome(sql), format!("42501: {message}"), "{sql}");
        }
        // the admin role, not superuser, may
        run("RESET ROLE");
        run("GRANT tenant_guard_admin TO tg_app");
        run("SET ROLE tg_app");
        assert_eq!(one::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.keys"), Some(2));
        assert_eq!(outcome("SELECT * FROM tenant.data_key"), "42501: permission denied for table data_key");
    }

    #[pg_test]
    fn privileged_key_reads_ignore_the_callers_search_path() {
        setup();
        run("RESET ROLE");
        run("CREATE SCHEMA evil; GRANT USAGE, CREATE ON SCHEMA evil TO tg_app");
        run("SET ROLE tg_app");
        // an app-defined uuid = uuid that would run as superuser if a privileged query resolved it
        run(r#"
            CREATE FUNCTION evil.eq(uuid, uuid) RETURNS boolean LANGUAGE sql AS
                $$ SELECT set_config('evil.ran', 'yes', false) IS NOT NULL $$;
            CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.eq);
            SET search_path = evil, pg_catalog, tenant;
        "#);
        authenticate_a();
        assert_eq!(one::<String>("SELECT decrypt(encrypt('x'))").as_deref(), Some("x"));
        assert_eq!(one::<String>("SELECT current_setting('evil.ran', true)"), None);
    }

    #[pg_test]
    fn no_key_is_created_in_a_read_only_transaction() {
        setup();
        authenticate_a();
        run("SET transaction_read_only = on");
        assert_eq!(outcome("SELECT tenant.encrypt('x')"), "25006: cannot create a data key in a read-only transaction");
    }
}
