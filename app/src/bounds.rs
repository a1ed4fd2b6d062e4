//! Size limits of what people type: checked before any work is done with it (a password
//! before argon2, a username before a lookup or a throttle entry), by the admin API and the
//! pages alike. A refusal names the field, so every caller can answer a 400 that says which.

/// Bytes of a username (login, change-password, local users).
pub const USERNAME_MAX_BYTES: usize = 64;
/// Bytes of a password: plenty for a passphrase, and a bound on argon2's input.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Characters of an API key's or an account's name.
pub const NAME_MAX_CHARS: usize = 100;
/// Characters of a key's or an account's description.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;
/// Bytes of a sign-in or change-password request body (JSON or a form): a few fields.
pub const AUTH_BODY_MAX_BYTES: usize = 8 * 1024;

/// A value over its field's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLong {
    /// The field's name as the API spells it (`username`, `newPassword`, `description`).
    pub field: &'static str,
    pub max: usize,
    pub unit: &'static str,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} must be at most {} {}",
            self.field, self.max, self.unit
        )
    }
}

impl std::error::Error for TooLong {}

fn bytes(field: &'static str, value: &str, max: usize) -> Result<(), TooLong> {
    if value.len() > max {
        return Err(TooLong {
            field,
            max,
            unit: "bytes",
        });
    }
    Ok(())
}

fn chars(field: &'static str, value: &str, max: usize) -> Result<(), TooLong> {
    // Counting stops past the limit: a megabyte of text costs no more than the limit.
    if value.chars().nth(max).is_some() {
        return Err(TooLong {
            field,
            max,
            unit: "characters",
        });
    }
    Ok(())
}

pub fn username(field: &'static str, value: &str) -> Result<(), TooLong> {
    bytes(field, value, USERNAME_MAX_BYTES)
}

pub fn password(field: &'static str, value: &str) -> Result<(), TooLong> {
    bytes(field, value, PASSWORD_MAX_BYTES)
}

pub fn name(field: &'static str, value: &str) -> Result<(), TooLong> {
    chars(field, value, NAME_MAX_CHARS)
}

pub fn description(field: &'static str, value: &str) -> Result<(), TooLong> {
    chars(field, value, DESCRIPTION_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive_and_name_the_field() {
        assert!(username("username", &"a".repeat(64)).is_ok());
        let e = username("username", &"a".repeat(65)).unwrap_err();
        assert_eq!(e.field, "username");
        assert_eq!(e.to_string(), "username must be at most 64 bytes");
        // Bytes, not characters: 33 two-byte characters are 66 bytes.
        assert!(username("username", &"é".repeat(33)).is_err());
        assert!(password("password", &"p".repeat(1024)).is_ok());
        assert!(password("newPassword", &"p".repeat(1025)).is_err());
        // Characters, not bytes, for names and descriptions.
        assert!(name("name", &"é".repeat(100)).is_ok());
        assert!(name("name", &"é".repeat(101)).is_err());
        assert!(description("description", &"d".repeat(1000)).is_ok());
        assert_eq!(
            description("description", &"d".repeat(1001))
                .unwrap_err()
                .field,
            "description"
        );
    }
}
