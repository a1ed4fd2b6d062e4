//! The admin pages. Each page is server-rendered first and hydrated for interaction.

pub mod accounts;
pub mod api_stats;
pub mod dashboard;
pub mod keys;
pub mod login;

use leptos::prelude::*;

/// Top bar with the product name and the dark-mode switch.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="border-b border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
            <div class="mx-auto flex max-w-6xl items-center justify-between px-6 py-3">
                <a href="/admin-next/dashboard" class="text-lg font-semibold">
                    "Claude Relay Service"
                </a>
                <nav class="flex items-center gap-4 text-sm">
                    <a href="/admin-next/api-stats" class="hover:underline">"Key usage"</a>
                    <a href="/admin-next/dashboard" class="hover:underline">"Dashboard"</a>
                    <a href="/admin-next/keys" class="hover:underline">"API keys"</a>
                    <a href="/admin-next/accounts" class="hover:underline">"Accounts"</a>
                    <ThemeToggle />
                </nav>
            </div>
        </header>
    }
}

/// Switches the `dark` class on `<html>` and remembers the choice. Only works once hydrated,
/// which makes it the end-to-end tests' proof that the WASM is live.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let (dark, set_dark) = signal(false);
    Effect::new(move |_| {
        if let Some(el) = document().document_element() {
            set_dark.set(el.class_list().contains("dark"));
        }
    });
    let toggle = move |_| {
        let Some(el) = document().document_element() else {
            return;
        };
        let now = !el.class_list().contains("dark");
        let _ = el.class_list().toggle_with_force("dark", now);
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = storage.set_item("crs-theme", if now { "dark" } else { "light" });
        }
        set_dark.set(now);
    };
    view! {
        <button
            id="theme-toggle"
            type="button"
            aria-label="Toggle dark mode"
            on:click=toggle
            class="rounded-md border border-slate-300 px-3 py-1 text-sm hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800"
        >
            {move || if dark.get() { "Light mode" } else { "Dark mode" }}
        </button>
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

/// A table cell class shared by the admin tables.
pub const TD: &str = "border-t border-slate-200 px-3 py-2 dark:border-slate-800";
pub const TH: &str = "px-3 py-2 text-left font-medium text-slate-500 dark:text-slate-400";
