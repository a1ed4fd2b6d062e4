//! The admin pages. Each page is server-rendered first and hydrated for interaction.

pub mod account_edit;
pub mod accounts;
pub mod api_stats;
pub mod charts;
pub mod dashboard;
pub mod key_edit;
pub mod keys;
pub mod login;
pub mod password;
pub mod requests;
pub mod settings;
pub mod users;

use leptos::prelude::*;
use leptos_router::components::Redirect;

use crate::{
    domain::UserRole,
    server_fns::{get_shell, AdminLogout, FORBIDDEN, UNAUTHORIZED},
};

/// Top bar: the site's name and logo, the pages the signed-in user may open, the theme.
#[component]
pub fn Header() -> impl IntoView {
    // Fetched again on each navigation: signing in or out changes the menu.
    let location = leptos_router::hooks::use_location();
    let shell = Resource::new(move || location.pathname.get(), |_| get_shell());
    let logout = ServerAction::<AdminLogout>::new();
    let link = "rounded px-2 py-1 hover:bg-slate-100 dark:hover:bg-slate-800";
    view! {
        <header class="border-b border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
            <div class="mx-auto flex max-w-6xl flex-wrap items-center justify-between gap-2 px-4 py-3 sm:px-6">
                <Suspense fallback=|| view! { <span class="text-lg font-semibold">"Claude Relay Service"</span> }>
                    {move || shell.get().map(|s| {
                        let s = s.unwrap_or_default();
                        let name = if s.site_name.is_empty() { "Claude Relay Service".to_string() } else { s.site_name.clone() };
                        view! {
                            <a id="site-name" href="/admin-next/dashboard" class="flex items-center gap-2 text-lg font-semibold">
                                {(!s.logo_url.is_empty()).then(|| view! { <img src=s.logo_url.clone() alt="" class="h-6 w-6" /> })}
                                {name}
                            </a>
                        }
                    })}
                </Suspense>
                <nav class="flex flex-wrap items-center gap-1 text-sm">
                    <Suspense fallback=|| ()>
                        {move || shell.get().map(|s| {
                            let who = s.ok().and_then(|s| s.session);
                            match who {
                                Some(w) if w.role == UserRole::Admin => view! {
                                    <a href="/admin-next/dashboard" class=link>"Dashboard"</a>
                                    <a href="/admin-next/keys" class=link>"API keys"</a>
                                    <a href="/admin-next/accounts" class=link>"Accounts"</a>
                                    <a href="/admin-next/requests" class=link>"Requests"</a>
                                    <a href="/admin-next/users" class=link>"Users"</a>
                                    <a href="/admin-next/settings" class=link>"Settings"</a>
                                    <a href="/admin-next/password" class=link>"Password"</a>
                                    <ActionForm action=logout attr:class="inline">
                                        <button id="nav-logout" type="submit" class=link title=format!("Signed in as {}", w.username)>"Sign out"</button>
                                    </ActionForm>
                                }.into_any(),
                                Some(w) => view! {
                                    <a href="/admin-next/my-keys" class=link>"My keys"</a>
                                    <a href="/admin-next/password" class=link>"Password"</a>
                                    <ActionForm action=logout attr:class="inline">
                                        <button id="nav-logout" type="submit" class=link title=format!("Signed in as {}", w.username)>"Sign out"</button>
                                    </ActionForm>
                                }.into_any(),
                                None => view! { <a href="/admin-next/login" class=link>"Sign in"</a> }.into_any(),
                            }
                        })}
                    </Suspense>
                    <a href="/admin-next/api-stats" class=link>"Key usage"</a>
                    <ThemeSelect />
                </nav>
            </div>
        </header>
    }
}

/// Light, dark or auto (the system's), remembered in `localStorage`. The choice is applied
/// before first paint by the shell's boot script; this control only works once hydrated.
#[component]
pub fn ThemeSelect() -> impl IntoView {
    let (mode, set_mode) = signal(String::from("auto"));
    Effect::new(move |_| {
        let stored = window()
            .local_storage()
            .ok()
            .flatten()
            .and_then(|s| s.get_item("crs-theme").ok().flatten());
        set_mode.set(match stored.as_deref() {
            Some("light") => "light".into(),
            Some("dark") => "dark".into(),
            _ => "auto".into(),
        });
    });
    let apply = move |choice: String| {
        let dark = match choice.as_str() {
            "dark" => true,
            "light" => false,
            _ => window()
                .match_media("(prefers-color-scheme: dark)")
                .ok()
                .flatten()
                .is_some_and(|m| m.matches()),
        };
        if let Some(el) = document().document_element() {
            let _ = el.class_list().toggle_with_force("dark", dark);
        }
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = if choice == "auto" {
                storage.remove_item("crs-theme")
            } else {
                storage.set_item("crs-theme", &choice)
            };
        }
        set_mode.set(choice);
    };
    view! {
        <label class="ml-1 flex items-center gap-1 text-xs text-slate-500 dark:text-slate-400">
            <span class="sr-only">"Theme"</span>
            <select
                id="theme-select"
                aria-label="Theme"
                class="rounded-md border border-slate-300 bg-white px-2 py-1 text-sm text-slate-900 dark:border-slate-700 dark:bg-slate-800 dark:text-slate-100"
                prop:value=move || mode.get()
                on:change=move |ev| apply(event_target_value(&ev))
            >
                <option value="auto">"Auto"</option>
                <option value="light">"Light"</option>
                <option value="dark">"Dark"</option>
            </select>
        </label>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! { <h1 class="text-xl font-semibold">"Page not found"</h1> }
}

/// The message of a server-function error, without the framework's prefix.
pub fn error_text(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// How a page shows a failed load: to the login when signed out, a notice when not allowed.
pub fn load_error(e: &ServerFnError) -> AnyView {
    match error_text(e).as_str() {
        UNAUTHORIZED => view! { <Redirect path="/admin-next/login" /> }.into_any(),
        FORBIDDEN => view! {
            <p id="forbidden" class="rounded-xl border border-amber-300 bg-amber-50 p-4 dark:border-amber-800 dark:bg-amber-950">
                "This page is for administrators."
            </p>
        }
        .into_any(),
        other => view! { <p role="alert" class="text-red-600 dark:text-red-400">{other.to_string()}</p> }.into_any(),
    }
}

/// A form input with its label and, when the server named this field in its answer, the
/// message under it.
#[component]
pub fn Field(
    label: &'static str,
    /// The form's field, e.g. `form[daily_cost_limit]`.
    name: &'static str,
    /// The name the server's messages use (`dailyCostLimit`).
    #[prop(optional)]
    api_name: &'static str,
    #[prop(into, optional)] value: String,
    #[prop(optional)] kind: &'static str,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(into, optional)] error: Option<Signal<Option<String>>>,
) -> impl IntoView {
    let id = name
        .replace(['[', ']'], "-")
        .trim_matches('-')
        .replace("--", "-");
    let mine = move || {
        error
            .and_then(|e| e.get())
            .filter(|m| !api_name.is_empty() && m.starts_with(api_name))
    };
    view! {
        <label class="block text-sm">
            <span class="text-slate-600 dark:text-slate-300">{label}</span>
            <input
                id=id
                name=name
                type=if kind.is_empty() { "text" } else { kind }
                value=value
                placeholder=placeholder
                class=INPUT
            />
            {(!hint.is_empty()).then(|| view! { <span class="mt-0.5 block text-xs text-slate-500">{hint}</span> })}
            {move || mine().map(|m| view! { <span class="field-error mt-0.5 block text-xs text-red-600 dark:text-red-400">{m}</span> })}
        </label>
    }
}

/// A ticked-or-not form field (posted as `on` when ticked).
#[component]
pub fn Check(label: &'static str, name: &'static str, checked: bool) -> impl IntoView {
    view! {
        <label class="inline-flex items-center gap-2 text-sm">
            <input type="checkbox" name=name checked=checked class="h-4 w-4 rounded border-slate-300 dark:border-slate-600" />
            {label}
        </label>
    }
}

/// Copies text to the clipboard (hydrated pages only).
#[component]
pub fn CopyButton(text: String) -> impl IntoView {
    let (copied, set_copied) = signal(false);
    let on_click = move |_| {
        let _ = window().navigator().clipboard().write_text(&text);
        set_copied.set(true);
    };
    view! {
        <button type="button" on:click=on_click class=BUTTON_SMALL>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}

/// Classes shared by the pages.
pub const TD: &str = "border-t border-slate-200 px-3 py-2 align-top dark:border-slate-800";
pub const TH: &str = "px-3 py-2 text-left font-medium text-slate-500 dark:text-slate-400";
pub const INPUT: &str = "mt-1 w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm dark:border-slate-700 dark:bg-slate-800";
pub const BUTTON: &str = "whitespace-nowrap rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-500";
pub const BUTTON_SMALL: &str = "mr-1 rounded-md border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800";
pub const CARD: &str = "rounded-xl border border-slate-200 bg-white p-4 shadow-sm dark:border-slate-800 dark:bg-slate-900";
pub const TABLE_BOX: &str = "overflow-x-auto rounded-xl border border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900";
