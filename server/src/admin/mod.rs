//! The admin's actions, once: plain async functions over typed inputs, with one error type.
//! The JSON API (`routes/admin/`), the pages' server functions (`admin_backend/`) and the
//! command line (`cli/`) are adapters over these functions, so each rule is written here only.
//!
//! - `keys`: create (one or a batch), edit, enable/disable/delete/restore/purge, the rules of
//!   a key's fields (`key_input`), its limits report (`key_report`);
//! - `accounts`: create, edit, delete (with its group memberships), schedule, reset, test,
//!   the rules of an account's fields (`account_input`) and the Claude OAuth flow (`oauth`);
//! - `groups`: account groups and membership;
//! - `users`: local users, their role, state and budget;
//! - `settings`: the settings form and the defaults of users' keys;
//! - `records`: request records, filtered and paged;
//! - `dashboard`: the summary of the dashboard and `crs status`.

pub mod account_input;
pub mod account_test;
pub mod accounts;
pub mod dashboard;
pub mod groups;
pub mod key_input;
pub mod key_list;
pub mod key_report;
pub mod keys;
pub mod oauth;
pub mod records;
pub mod settings;
pub mod users;

#[cfg(test)]
mod tests;

use axum::http::StatusCode;

use crate::store::StoreError;

/// Why an admin action was refused. Each adapter renders it in its own shape: the JSON API as
/// `{success:false,error,message}` with [`AdminError::status`], the pages and the command line
/// as [`AdminError::message`].
#[derive(Debug)]
pub enum AdminError {
    Unauthorized,
    BadRequest(String),
    /// A 400 naming the field at fault (`{..., "field": "username"}`).
    Invalid(&'static str, String),
    NotFound(&'static str),
    /// The caller may not do this (a user acting on what only an admin may change).
    Forbidden(String),
    /// Not in this state (restoring a key that is not deleted, editing a deleted one).
    Conflict(String),
    /// A deleted key is restored before it is edited (a 404, as a key that is not there).
    KeyDeleted,
    TooManyAttempts(u64),
    Store(StoreError),
}

impl AdminError {
    /// The message the admin sees (store details stay in the log).
    pub fn message(&self) -> String {
        match self {
            AdminError::Unauthorized => "Missing, invalid or expired admin session".into(),
            AdminError::BadRequest(m)
            | AdminError::Invalid(_, m)
            | AdminError::Forbidden(m)
            | AdminError::Conflict(m) => m.clone(),
            AdminError::NotFound(what) => format!("{what} not found"),
            AdminError::KeyDeleted => "Restore the key before editing it".into(),
            AdminError::TooManyAttempts(secs) => {
                format!("Too many failed logins; try again in {secs} s")
            }
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin store error");
                "The store is unavailable; retry shortly".into()
            }
        }
    }

    /// The HTTP status of this refusal, and its short name (the JSON `error` field).
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            AdminError::BadRequest(_) | AdminError::Invalid(..) => {
                (StatusCode::BAD_REQUEST, "Bad request")
            }
            AdminError::NotFound(_) | AdminError::KeyDeleted => {
                (StatusCode::NOT_FOUND, "Not found")
            }
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            AdminError::TooManyAttempts(_) => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts"),
            AdminError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "Store unavailable"),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

/// A bound from `app::bounds` as the refusal that names its field.
pub(crate) fn too_long(e: app::bounds::TooLong) -> AdminError {
    AdminError::Invalid(e.field, e.to_string())
}

/// Comma- or line-separated values of a form field, trimmed, blanks left out.
pub fn split_list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}
