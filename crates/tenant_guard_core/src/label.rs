//! The `tenant_guard` security label grammar (pure Rust, unit-tested):
//!
//! ```text
//! tenant_scoped                 the tenant column is tenant_id
//! tenant_scoped column=<name>   the tenant column is <name>
//! global                        deliberately not tenant-scoped (a table in a tenant_scoped schema)
//! ```
//!
//! Whitespace between words is free; names are taken exactly as written (as a quoted identifier would be).

use std::fmt;

pub const DEFAULT_COLUMN: &str = "tenant_id";
/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    TenantScoped { column: String },
    Global,
}

impl Label {
    /// The canonical text stored for this label.
    pub fn canonical(&self) -> String {
        match self {
            Label::TenantScoped { column } if column == DEFAULT_COLUMN => "tenant_scoped".into(),
            Label::TenantScoped { column } => format!("tenant_scoped column={column}"),
            Label::Global => "global".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLabel;

impl fmt::Display for BadLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("valid labels are 'tenant_scoped', 'tenant_scoped column=<column name>' and 'global'")
    }
}

pub fn parse(text: &str) -> Result<Label, BadLabel> {
    let mut words = text.split_whitespace();
    let label = match words.next() {
        Some("global") => Label::Global,
        Some("tenant_scoped") => match words.next() {
            None => Label::TenantScoped { column: DEFAULT_COLUMN.into() },
            Some(option) => {
                let column = option.strip_prefix("column=").ok_or(BadLabel)?;
                if column.is_empty() || column.len() > MAX_IDENTIFIER_BYTES || column.contains('\0') {
                    return Err(BadLabel);
                }
                Label::TenantScoped { column: column.into() }
            }
        },
        _ => return Err(BadLabel),
    };
    if words.next().is_some() {
        return Err(BadLabel);
    }
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(c: &str) -> Label {
        Label::TenantScoped { column: c.into() }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("tenant_scoped"), Ok(scoped("tenant_id")));
        assert_eq!(parse("  tenant_scoped  "), Ok(scoped("tenant_id")));
        assert_eq!(parse("tenant_scoped column=org_id"), Ok(scoped("org_id")));
        assert_eq!(parse("tenant_scoped column=OrgId"), Ok(scoped("OrgId")));
        assert_eq!(parse("global"), Ok(Label::Global));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "TENANT_SCOPED",
            "tenant-scoped",
            "tenant_scoped column=",
            "tenant_scoped col=org_id",
            "tenant_scoped column=a extra",
            "global column=x",
            "secret",
            &format!("tenant_scoped column={}", "x".repeat(64)),
        ] {
            assert_eq!(parse(bad), Err(BadLabel), "{bad:?}");
        }
    }

    #[test]
    fn canonical_text_round_trips() {
        for text in ["tenant_scoped", "tenant_scoped column=org_id", "global"] {
            assert_eq!(parse(text).unwrap().canonical(), text);
        }
        assert_eq!(parse("tenant_scoped column=tenant_id").unwrap().canonical(), "tenant_scoped");
    }
}
