//! Rules for the catalog's text and jsonb arguments (plain Rust, no Postgres): every one has a
//! documented limit, names have no control characters, and there is one e-mail rule for the
//! whole product, the field engine's (WHATWG HTML "valid e-mail address").
//!
//! Limits count what users see: names and descriptions in Unicode code points, documents in
//! bytes of their JSON text.

/// A rejected argument: what is wrong, naming the argument. `too_large` selects SQLSTATE
/// 54000 (program_limit_exceeded) instead of 22023.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArgError {
    pub message: String,
    pub too_large: bool,
    pub hint: Option<String>,
}

impl ArgError {
    fn invalid(message: String) -> ArgError {
        ArgError {
            message,
            too_large: false,
            hint: None,
        }
    }
}

/// Longest tenant `name`, `contact_name`, field `display_name`: 200 code points.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest field `description`: 2,000 code points.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Longest `contact_email`: 254 bytes (RFC 5321's limit on a forward path, less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Largest `settings`, `validation_rules`, `ui_config`, patch or config document: 64 KiB of
/// JSON text.
pub const MAX_DOCUMENT_BYTES: usize = 65_536;
/// Largest field `default_value`: 8 KiB (it is copied into every new row).
pub const MAX_DEFAULT_BYTES: usize = 8_192;
/// Longest Supabase config value (URL, project id, keys): 4 KiB.
pub const MAX_CONFIG_VALUE_BYTES: usize = 4_096;

/// A display name (tenant `name`, `contact_name`, field `display_name`): not blank when
/// `required`, at most [`MAX_NAME_CHARS`] code points, no control characters (Unicode Cc:
/// tabs, newlines, NUL-like bytes would break logs, CSV exports and terminals).
pub fn check_name(what: &str, v: &str, required: bool) -> Result<(), ArgError> {
    if required && v.trim().is_empty() {
        return Err(ArgError::invalid(format!("{what} must not be blank")));
    }
    check_text(what, v, MAX_NAME_CHARS)?;
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(ArgError::invalid(format!(
            "{what} must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// A free text (`description`): at most `max` code points.
pub fn check_text(what: &str, v: &str, max: usize) -> Result<(), ArgError> {
    let n = v.chars().count();
    if n > max {
        return Err(ArgError {
            message: format!("{what} is too long: {n} characters, at most {max}"),
            too_large: true,
            hint: None,
        });
    }
    Ok(())
}

/// A document or value measured in bytes: at most `max`.
pub fn check_bytes(what: &str, len: usize, max: usize) -> Result<(), ArgError> {
    if len > max {
        return Err(ArgError {
            message: format!("{what} is too large: {len} bytes, at most {max}"),
            too_large: true,
            hint: None,
        });
    }
    Ok(())
}

/// A jsonb argument: at most [`MAX_DOCUMENT_BYTES`] of JSON text.
pub fn check_document(what: &str, v: &serde_json::Value) -> Result<(), ArgError> {
    check_bytes(what, v.to_string().len(), MAX_DOCUMENT_BYTES)
}

/// A contact e-mail: the field engine's e-mail rule (WHATWG HTML) within 254 bytes.
pub fn check_email(what: &str, v: &str) -> Result<(), ArgError> {
    check_bytes(what, v.len(), MAX_EMAIL_BYTES)?;
    if !crate::fields::is_email(v) {
        let shown: String = v.chars().take(64).collect();
        return Err(ArgError {
            message: format!("{what} {shown:?} is not an e-mail address"),
            too_large: false,
            hint: Some("Use the form name@example.com (WHATWG HTML e-mail rule, the same as the custom-field format \"email\").".into()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_the_field_engine() {
        for bad in [
            "a@.",
            "ops@example.test.",
            "<a@b.c>",
            "a@b,c",
            "a@b..c",
            "a b@c.d",
            "@b.c",
            "a@",
        ] {
            assert!(check_email("contact_email", bad).is_err(), "{bad}");
        }
        for ok in ["ops@acme.test", "a.b+c@x-y.example", "a@b"] {
            assert_eq!(check_email("contact_email", ok), Ok(()), "{ok}");
        }
        let long = format!("{}@b.c", "a".repeat(260));
        assert!(check_email("contact_email", &long).unwrap_err().too_large);
    }

    #[test]
    fn names() {
        assert_eq!(
            check_name("name", "  ", true).unwrap_err().message,
            "name must not be blank"
        );
        assert_eq!(
            check_name("name", "a\nb", true).unwrap_err().message,
            "name must not contain control characters (found U+000A)"
        );
        assert_eq!(
            check_name("name", &"é".repeat(201), true)
                .unwrap_err()
                .message,
            "name is too long: 201 characters, at most 200"
        );
        assert_eq!(check_name("name", &"é".repeat(200), true), Ok(()));
        assert_eq!(check_name("contact_name", "", false), Ok(()));
    }

    #[test]
    fn documents() {
        let big = serde_json::json!({"x": "a".repeat(70_000)});
        let e = check_document("settings", &big).unwrap_err();
        assert!(e.too_large);
        assert_eq!(
            e.message,
            "settings is too large: 70008 bytes, at most 65536"
        );
    }
}
