//! Users, roles and the signed-in session.

use serde::{Deserialize, Serialize};

use super::*;

/// A local user's role. Admins see the admin pages; users only their own keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    #[default]
    User,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
        }
    }
}

/// A local user (username and argon2 password). Never carries the password hash.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: UserRole,
    pub is_active: bool,
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// Daily and monthly cost across all the user's keys, set by an admin (0 = none). Every
    /// key of the user carries a copy (`ApiKey::owner_budget`).
    pub budget: Budget,
}

/// A row of the admin's user table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserRow {
    pub user: User,
    pub key_count: u64,
    /// Keys the user deleted: they still count against the allowance.
    pub deleted_key_count: u64,
    pub total: UsageCounters,
}

/// Who is signed in to the pages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionInfo {
    pub username: String,
    pub role: UserRole,
    /// Set for local users; the built-in admin has none.
    pub user_id: Option<String>,
}

/// What every page's frame shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShellInfo {
    pub site_name: String,
    pub logo_url: String,
    pub session: Option<SessionInfo>,
}
