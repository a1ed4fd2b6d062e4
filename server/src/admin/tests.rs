//! The admin's actions on the embedded store, and the proof that the pages, the JSON API and
//! the command line reach the same rule (each test goes through two of the adapters).

use app::{
    backend::{AdminBackend, KeyScope},
    domain::{KeyForm, Platform, SettingsForm, UserRole},
};
use axum::{
    extract::{Path, State},
    Json,
};

use super::{
    account_input::AccountInput,
    accounts,
    groups::{self, GroupInput},
    key_input::KeyInput,
    keys::{self, Batch, KeyAction, BATCH_MAX},
    AdminError,
};
use crate::{
    admin_backend::AdminPages,
    config::Config,
    routes::admin::{self as api, AdminUser},
    state::AppState,
};

/// A state on a fresh embedded store (the directory lives as long as the state is used).
async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = crate::build_state(Config::for_tests(dir.path().to_path_buf()))
        .await
        .expect("state");
    (state, dir)
}

fn admin() -> AdminUser {
    AdminUser("admin".into())
}

fn named(name: &str) -> KeyInput {
    KeyInput {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The names of the live keys, sorted.
async fn key_names(state: &AppState) -> Vec<String> {
    let mut names: Vec<String> = state
        .all_keys()
        .await
        .expect("keys")
        .iter()
        .filter(|k| !k.key.is_deleted)
        .map(|k| k.key.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_batch_has_the_same_names_and_bounds_from_the_pages_and_the_api() {
    let (state, _dir) = state().await;
    let pages = AdminPages(state.clone());
    let form = KeyForm {
        name: "pages".into(),
        count: "3".into(),
        daily_cost_limit: "2".into(),
        ..Default::default()
    };
    let secrets = pages
        .create_keys(KeyScope::All, form.clone())
        .await
        .expect("pages batch");
    assert_eq!(secrets.len(), 3);
    let body: Batch = serde_json::from_value(
        serde_json::json!({"baseName": "api", "count": 3, "dailyCostLimit": 2}),
    )
    .expect("body");
    let Json(answer) = api::keys::batch_create(admin(), State(state.clone()), Ok(Json(body)))
        .await
        .expect("api batch");
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        key_names(&state).await,
        ["api_1", "api_2", "api_3", "pages_1", "pages_2", "pages_3"]
    );
    for k in state.all_keys().await.expect("keys").iter() {
        assert_eq!(k.key.daily_cost_limit, 2.0, "{}", k.key.name);
    }
    // The same bounds, with the same message: 1 to 500 keys.
    for count in [0, BATCH_MAX + 1] {
        let from_pages = pages
            .create_keys(
                KeyScope::All,
                KeyForm {
                    count: count.to_string(),
                    ..form.clone()
                },
            )
            .await
            .expect_err("pages refuse");
        let batch = Batch {
            base_name: "api".into(),
            count,
            fields: KeyInput::default(),
        };
        let from_api = api::keys::batch_create(admin(), State(state.clone()), Ok(Json(batch)))
            .await
            .expect_err("api refuses");
        assert_eq!(from_pages, from_api.message());
        assert!(from_pages.contains("between 1 and 500"), "{from_pages}");
    }
    // Without a count the pages create one key, named as given.
    pages
        .create_keys(
            KeyScope::All,
            KeyForm {
                name: "single".into(),
                ..Default::default()
            },
        )
        .await
        .expect("single");
    assert!(key_names(&state).await.contains(&"single".to_string()));
}

#[tokio::test]
async fn deleting_an_account_from_the_api_or_the_pages_leaves_its_groups() {
    let (state, _dir) = state().await;
    let console = |name: &str| AccountInput {
        name: Some(name.into()),
        api_url: Some("http://127.0.0.1:9".into()),
        api_key: Some("sk-test".into()),
        ..Default::default()
    };
    let a = accounts::create(&state, Platform::ClaudeConsole, console("a"))
        .await
        .expect("a");
    let b = accounts::create(&state, Platform::ClaudeConsole, console("b"))
        .await
        .expect("b");
    let ids = vec![a.account.id.clone(), b.account.id.clone()];
    let g = groups::create(
        &state,
        GroupInput {
            name: Some("team".into()),
            members: Some(ids.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("group");
    // Through the JSON API's route (the one an admin's script calls) …
    let router = api::routes().with_state(state.clone());
    let token = state
        .admin
        .login(&state.config.admin_username, "admin-password-1", None)
        .await
        .map_err(|_| "login")
        .expect("login")
        .token;
    let response = tower::ServiceExt::oneshot(
        router,
        axum::http::Request::delete(format!("/admin/claude-console-accounts/{}", ids[0]))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 200);
    let members = groups::get(&state, &g.id).await.expect("group").members;
    assert_eq!(members, vec![ids[1].clone()]);
    // … and through the pages.
    AdminPages(state.clone())
        .account_action(&ids[1], "delete")
        .await
        .expect("pages delete");
    assert!(groups::get(&state, &g.id)
        .await
        .expect("group")
        .members
        .is_empty());
}

#[tokio::test]
async fn key_actions_follow_one_rule_from_the_pages_the_api_and_the_cli() {
    let (state, _dir) = state().await;
    crate::users::create(
        &state.store,
        "admin",
        "alice",
        "alice-password",
        UserRole::User,
    )
    .await
    .expect("user");
    let uid = crate::users::by_name(&state.store, "alice")
        .await
        .expect("read")
        .expect("alice")
        .user
        .id;
    let owned = keys::create(&state, named("laptop"), Some(uid.clone()))
        .await
        .expect("key");
    let id = owned.stored.key.id.clone();
    let user = KeyScope::OwnedBy(uid.clone());
    let pages = AdminPages(state.clone());
    // An admin disables it through the API; its owner may not enable it again from the pages.
    let off = KeyInput {
        is_active: Some(false),
        ..Default::default()
    };
    let _ = api::keys::update_key(
        admin(),
        State(state.clone()),
        Path(id.clone()),
        Ok(Json(off)),
    )
    .await
    .expect("api disable");
    let refused = pages
        .key_action(user.clone(), &id, "enable")
        .await
        .expect_err("owner refused");
    assert!(refused.contains("only an administrator"), "{refused}");
    // The admin's enable (as `crs keys enable` does) lifts it.
    keys::act(&state, &KeyScope::All, &id, KeyAction::Enable)
        .await
        .expect("admin enables");
    pages
        .key_action(user.clone(), &id, "disable")
        .await
        .expect("owner disables");
    pages
        .key_action(user.clone(), &id, "enable")
        .await
        .expect("owner enables their own disable");
    // Deleting: from the pages, then the API sees the same key gone, with the same answer.
    pages
        .key_action(user.clone(), &id, "delete")
        .await
        .expect("owner deletes");
    let from_api = api::keys::delete_key(admin(), State(state.clone()), Path(id.clone()))
        .await
        .expect_err("already deleted");
    let from_pages = pages
        .key_action(KeyScope::All, &id, "delete")
        .await
        .expect_err("already deleted");
    assert_eq!(from_api.message(), from_pages);
    assert!(matches!(from_api, AdminError::NotFound(_)));
    // Editing a deleted key is refused alike.
    let edit = api::keys::update_key(
        admin(),
        State(state.clone()),
        Path(id.clone()),
        Ok(Json(named("again"))),
    )
    .await
    .expect_err("deleted");
    assert_eq!(edit.status().0, 404);
    let from_pages = pages
        .update_key(
            KeyScope::All,
            &id,
            KeyForm {
                name: "again".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("deleted");
    assert_eq!(edit.message(), from_pages);
    // Only an admin restores, and another user never sees the key.
    assert!(pages.key_action(user, &id, "restore").await.is_err());
    let stranger = KeyScope::OwnedBy("someone-else".into());
    assert_eq!(
        pages
            .key_action(stranger, &id, "restore")
            .await
            .expect_err("not theirs"),
        "API key not found"
    );
    pages
        .key_action(KeyScope::All, &id, "restore")
        .await
        .expect("admin restores");
    assert_eq!(key_names(&state).await, ["laptop"]);
}

#[tokio::test]
async fn a_users_key_takes_the_admins_defaults_within_the_allowance() {
    let (state, _dir) = state().await;
    let pages = AdminPages(state.clone());
    let form = SettingsForm {
        site_name: "crs".into(),
        user_keys_enabled: Some("on".into()),
        max_keys_per_user: "1".into(),
        user_key_daily_cost_limit: "3".into(),
        ..Default::default()
    };
    pages.save_settings(form).await.expect("settings");
    let created = keys::create_for_user(&state, "u1", "mine", "")
        .await
        .expect("first key");
    assert_eq!(created.stored.key.daily_cost_limit, 3.0);
    assert_eq!(created.stored.key.user_id.as_deref(), Some("u1"));
    let refused = keys::create_for_user(&state, "u1", "another", "")
        .await
        .err()
        .map(|e| e.message())
        .unwrap_or_default();
    assert!(refused.contains("maximum of 1 keys"), "{refused}");
}
