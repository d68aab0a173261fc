//! The reference pages against the Rust and the catalog they describe: every setting `gucs` defines, every SQLSTATE
//! `errors` raises, and every function, view and table of the installed extension has its row, and no page lists
//! one that does not exist.

/// Plain tests of the docs' text.
#[cfg(test)]
mod pages {
    const SETTINGS: &str = include_str!("../../docs/reference/settings.md");
    const ERRORS: &str = include_str!("../../docs/reference/errors.md");
    const GUCS_RS: &str = include_str!("../gucs.rs");
    const ERRORS_RS: &str = include_str!("../errors.rs");

    /// The first cell of each row of a Markdown table, without its backquotes.
    fn first_cells(page: &str) -> Vec<String> {
        page.lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('|').nth(1))
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn every_setting_has_its_row_and_every_row_a_setting() {
        let defined: std::collections::BTreeSet<String> = GUCS_RS
            .match_indices("c\"tenant_guard.")
            .map(|(at, _)| GUCS_RS[at + 2..].split('"').next().unwrap().to_string())
            .collect();
        assert!(defined.len() >= 14, "{defined:?}");
        let documented: std::collections::BTreeSet<String> = first_cells(SETTINGS).into_iter().collect();
        assert_eq!(documented, defined);
    }

    #[test]
    fn every_sqlstate_has_its_rows_and_every_row_a_sqlstate() {
        // the SQLSTATE table at the top of errors.rs: code and condition name
        let table: Vec<(String, String)> = ERRORS_RS
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_start_matches("//!").split('|').map(str::trim).collect();
                (cells.len() > 3 && cells[1].len() == 5 && cells[1] != "-----")
                    .then(|| (cells[1].into(), cells[2].into()))
            })
            .filter(|(code, _)| code != "SQLST")
            .collect();
        // each code the module raises is in that table
        for (at, _) in ERRORS_RS.match_indices("PgSqlErrorCode::ERRCODE_") {
            let name = ERRORS_RS[at + 24..].split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap();
            if name == "WARNING" {
                continue; // 01000, of warnings only (an old server version at load time), never an error
            }
            // (pgrx prefixes some with their class: T_R_SERIALIZATION_FAILURE is serialization_failure)
            let lower = name.to_ascii_lowercase();
            let known = table.iter().any(|(_, n)| lower == *n || lower.ends_with(&format!("_{n}")));
            assert!(known, "errors.rs raises {name}, not in its table");
        }
        // the page names each code with its condition, and no other code
        for (code, name) in &table {
            assert!(
                ERRORS.contains(&format!("| `{code}` | {name} |")),
                "docs/reference/errors.md: no row `{code}` | {name}"
            );
        }
        for code in first_cells(ERRORS).iter().filter(|c| c.len() == 5 && c.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            assert!(
                table.iter().any(|(c, _)| c == code),
                "docs/reference/errors.md lists {code}, which errors.rs does not raise"
            );
        }
    }
}

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    const SQL: &str = include_str!("../../docs/reference/sql.md");

    #[pg_test]
    fn every_function_view_and_table_has_its_row() {
        let objects = one::<String>(
            "SELECT string_agg(name, '|' ORDER BY name) FROM ( \
               SELECT p.oid::regprocedure::text AS name FROM pg_proc p \
                WHERE p.pronamespace = 'tenant'::regnamespace \
               UNION ALL SELECT c.oid::regclass::text FROM pg_class c \
                WHERE c.relnamespace = 'tenant'::regnamespace AND c.relkind IN ('r', 'v', 'm')) o",
        )
        .unwrap();
        let mut missing = vec![];
        for object in objects.split('|') {
            // a function's row spells its name and arguments (`tenant.f(a text)`), a relation's its name (and columns)
            let name = object.split('(').next().unwrap();
            if !["(", "`", " ("].iter().any(|after| SQL.contains(&format!("`{name}{after}"))) {
                missing.push(object.to_string());
            }
        }
        assert!(missing.is_empty(), "docs/reference/sql.md does not describe {missing:?}");
        // and every `tenant.x` the page names exists
        let mut unknown = vec![];
        for (at, _) in SQL.match_indices("`tenant.") {
            let name =
                SQL[at + 1..].split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).next().unwrap();
            if !objects.split('|').any(|o| o.split('(').next() == Some(name)) {
                unknown.push(name.to_string());
            }
        }
        unknown.dedup();
        assert!(unknown.is_empty(), "docs/reference/sql.md names objects that do not exist: {unknown:?}");
    }
}
