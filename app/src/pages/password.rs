//! Change your own password (the built-in admin and local users alike). As the original's
//! `change-password`, success ends every session of yours, this one too: sign in again.

use leptos::prelude::*;

use super::{error_text, load_error, Field, BUTTON, CARD};
use crate::server_fns::{whoami, ChangePassword};

#[component]
pub fn PasswordPage() -> impl IntoView {
    let who = Resource::new(|| (), |_| whoami());
    let change = ServerAction::<ChangePassword>::new();
    let error = Signal::derive(move || {
        change
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text(&e))
    });
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || who.get().map(|r| match r {
                Err(e) => load_error(&e),
                Ok(w) => view! {
                    <section class=format!("{CARD} mx-auto max-w-md")>
                        <h1 class="mb-1 text-2xl font-semibold">"Change password"</h1>
                        <p class="mb-4 text-sm text-slate-500">
                            {format!("Signed in as {}. Every session of yours ends after the change; sign in again with the new password.", w.username)}
                        </p>
                        <ActionForm action=change attr:class="grid gap-3">
                            <Field label="Current password" name="current_password" api_name="currentPassword" kind="password" error=error />
                            <Field label="New password (at least 8 characters)" name="new_password" api_name="newPassword" kind="password" error=error />
                            <Field label="New password again" name="confirm_password" api_name="confirmPassword" kind="password" error=error />
                            <button id="change-password-submit" type="submit" class=BUTTON>"Change password"</button>
                        </ActionForm>
                        <Show when=move || error.get().is_some()>
                            <p id="change-password-error" role="alert" class="mt-3 text-sm text-red-600 dark:text-red-400">
                                {move || error.get()}
                            </p>
                        </Show>
                    </section>
                }
                .into_any(),
            })}
        </Suspense>
    }
}
