use leptos::prelude::*;

use super::error_text;
use crate::server_fns::AdminLogin;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<AdminLogin>::new();
    let error = move || {
        login
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text(&e))
    };
    let input = "mt-1 w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-800";
    view! {
        <section class="mx-auto mt-16 max-w-sm rounded-xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <h1 class="mb-4 text-2xl font-semibold">"Admin sign in"</h1>
            <ActionForm action=login>
                <label class="mb-3 block text-sm">
                    "Username"
                    <input id="username" type="text" name="username" autocomplete="username" required class=input />
                </label>
                <label class="mb-4 block text-sm">
                    "Password"
                    <input id="password" type="password" name="password" autocomplete="current-password" required class=input />
                </label>
                <button
                    id="login-submit"
                    type="submit"
                    class="w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500"
                >
                    "Sign in"
                </button>
            </ActionForm>
            <Show when=move || error().is_some()>
                <p id="login-error" role="alert" class="mt-3 text-sm text-red-600 dark:text-red-400">
                    {error}
                </p>
            </Show>
        </section>
    }
}
