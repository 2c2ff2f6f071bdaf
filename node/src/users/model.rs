//! User domain types. Constructors enforce the rules ("parse, don't validate").

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A syntactically plausible email address, stored lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Email, Error> {
        let s = raw.trim().to_lowercase();
        let invalid = |why: &str| Error::invalid(field, why);
        if s.len() < 3 || s.len() > 254 {
            return Err(invalid("must be 3-254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(invalid("must contain '@'"));
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') || !domain.contains('.') {
            return Err(invalid("is not a valid email address"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1-200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Name, Error> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 200 {
            return Err(Error::invalid(field, "must be 1-200 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password acceptable for a new account: 8-128 characters (the upper bound keeps hashing
/// cost bounded), at least 5 distinct characters, and not one of the most common passwords.
/// No composition rules, following NIST SP 800-63B.
pub struct NewPassword(String);

const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "11111111",
    "abc12345",
    "letmein1",
    "welcome1",
    "admin123",
    "passw0rd",
    "sunshine",
    "football",
    "baseball",
    "princess",
    "starwars",
];

impl NewPassword {
    pub fn parse(field: &str, raw: &str) -> Result<NewPassword, Error> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(Error::invalid(
                field,
                "password must be at least 8 characters",
            ));
        }
        if n > 128 {
            return Err(Error::invalid(
                field,
                "password must be at most 128 characters",
            ));
        }
        let mut distinct: Vec<char> = raw.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 5 {
            return Err(Error::invalid(
                field,
                "password is too weak: use more varied characters",
            ));
        }
        if COMMON_PASSWORDS.contains(&raw.to_lowercase().as_str()) {
            return Err(Error::invalid(field, "password is too common"));
        }
        Ok(NewPassword(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    pub deleted: bool,
    /// Another store's account already owns this email (decided by the hub): cannot log in.
    pub conflicted: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    /// Null once the account has been deleted (personal data erased).
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    #[schema(example = "active")]
    pub status: &'static str,
    pub created_at: String,
    pub updated_at: String,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            status: if u.deleted {
                "deleted"
            } else if u.conflicted {
                "conflicted"
            } else {
                "active"
            },
            created_at: crate::time::rfc3339(u.created_at),
            updated_at: crate::time::rfc3339(u.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert_eq!(
            Email::parse("email", " Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.io",
            "a b@x.io",
            "a@b@c.io",
            "a@localhost",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_rules() {
        assert!(NewPassword::parse("password", "correct horse battery").is_ok());
        for weak in ["short", "aaaaaaaaaaaa", "Password123", "abababab"] {
            assert!(NewPassword::parse("password", weak).is_err(), "{weak}");
        }
        assert!(NewPassword::parse("password", &"xy1!zq".repeat(30)).is_err());
    }
}
