//! The admin web app: domain types shared with the server, the Leptos pages (rendered on the
//! server and hydrated in the browser) and the server functions they call.

// The admin pages' view types nest deeply.
#![recursion_limit = "256"]

pub mod bounds;
pub mod domain;
pub mod model_name;
pub mod pages;
pub mod server_fns;

#[cfg(feature = "ssr")]
pub mod backend;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Redirect, Route, Router, Routes},
    path, SsrMode,
};

/// Where the admin pages live (the original serves its SPA here too).
pub const ADMIN_BASE: &str = "/admin-next";
/// The HttpOnly cookie that carries the admin session token.
pub const SESSION_COOKIE: &str = "crs_admin";

/// Applied before first paint so a dark-mode user never sees a white flash.
const THEME_BOOT: &str = "try{var t=localStorage.getItem('crs-theme');if(t==='dark'||(!t&&matchMedia('(prefers-color-scheme: dark)').matches)){document.documentElement.classList.add('dark')}}catch(e){}";

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <script inner_html=THEME_BOOT></script>
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 dark:bg-slate-950 dark:text-slate-100">
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser: the attribute says the WASM has taken over the page.
    Effect::new(|_| {
        if let Some(el) = document().document_element() {
            let _ = el.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/crs.css" />
        <Title text="Claude Relay Service" />
        <Router>
            <pages::Header />
            <main class="mx-auto max-w-6xl px-4 py-6 sm:px-6">
                <Routes fallback=|| view! { <pages::NotFound /> }>
                    <Route path=path!("/admin-next") view=|| view! { <Redirect path="/admin-next/dashboard" /> } />
                    <Route path=path!("/admin-next/login") view=pages::login::LoginPage />
                    <Route path=path!("/admin-next/api-stats") view=pages::api_stats::ApiStatsPage />
                    <Route path=path!("/admin-next/keys") view=pages::keys::KeysPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/keys/:id") view=pages::key_edit::KeyEditPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/my-keys") view=pages::keys::MyKeysPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/accounts") view=pages::accounts::AccountsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/accounts/:id") view=pages::account_edit::AccountEditPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/users") view=pages::users::UsersPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/requests") view=pages::requests::RequestsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/settings") view=pages::settings::SettingsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/password") view=pages::password::PasswordPage ssr=SsrMode::Async />
                    <Route path=path!("/admin-next/dashboard") view=pages::dashboard::DashboardPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
