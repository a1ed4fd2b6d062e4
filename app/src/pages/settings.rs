//! Settings: site name and logo, service-wide cost rates, webhook channels, and local users'
//! key creation: the allowance and the limits, services and expiry every user key gets.

use leptos::prelude::*;

use super::{load_error, Check, Field, BUTTON, CARD, INPUT};
use crate::{
    domain::WEBHOOK_KINDS,
    server_fns::{error_text_of, get_settings, SaveSettings, TestWebhook},
};

#[component]
pub fn SettingsPage() -> impl IntoView {
    let save = ServerAction::<SaveSettings>::new();
    let test = ServerAction::<TestWebhook>::new();
    let settings = Resource::new(|| (), |_| get_settings());
    let error = Signal::derive(move || {
        save.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    let saved = move || matches!(save.value().get(), Some(Ok(())));
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"Settings"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || settings.get().map(|r| match r {
                Ok(f) => view! {
                    <ActionForm action=save attr:id="settings-form">
                        <fieldset class=format!("{CARD} mb-4")>
                            <legend class="px-1 font-semibold">"Site"</legend>
                            <div class="grid grid-cols-1 gap-3 sm:grid-cols-2">
                                <Field label="Site name" name="form[site_name]" api_name="siteName" value=f.site_name.clone() error />
                                <Field label="Logo URL" name="form[logo_url]" api_name="logoUrl" value=f.logo_url.clone() placeholder="https://… or /logo.svg" error />
                            </div>
                        </fieldset>
                        <fieldset class=format!("{CARD} mb-4")>
                            <legend class="px-1 font-semibold">"Service rates"</legend>
                            <p class="mb-2 text-xs text-slate-500">"Multiply the cost every key is charged per service (empty = 1). A key's own rate multiplies with it."</p>
                            <div class="grid grid-cols-3 gap-3">
                                <Field label="Claude" name="form[rate_claude]" api_name="serviceRates" value=f.rate_claude.clone() placeholder="1" error />
                                <Field label="OpenAI" name="form[rate_openai]" value=f.rate_openai.clone() placeholder="1" error />
                                <Field label="Gemini" name="form[rate_gemini]" value=f.rate_gemini.clone() placeholder="1" error />
                            </div>
                        </fieldset>
                        <fieldset class=format!("{CARD} mb-4")>
                            <legend class="px-1 font-semibold">"Webhooks"</legend>
                            <div class="mb-2"><Check label="Send notifications" name="form[webhooks_enabled]" checked=f.webhooks_enabled.is_some() /></div>
                            <label class="block text-sm">
                                <span class="text-slate-600 dark:text-slate-300">{format!("One channel per line: `type url [name] [secret=…]`, add (off) to pause one. Types: {}", WEBHOOK_KINDS.join(", "))}</span>
                                <textarea id="form-webhooks" name="form[webhooks]" rows="4" class=format!("{INPUT} font-mono")>{f.webhooks.clone()}</textarea>
                            </label>
                            <div id="webhook-tests" class="mt-2 flex flex-wrap gap-2">
                                {f.webhooks.lines().filter(|l| !l.trim().is_empty()).enumerate().map(|(i, line)| {
                                    let label = line.split_whitespace().next().unwrap_or("channel").to_string();
                                    view! {
                                        <button type="button" data-webhook=i class="rounded-md border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800"
                                            on:click=move |_| { test.dispatch(TestWebhook { index: i }); }>
                                            {format!("Test {} #{}", label, i + 1)}
                                        </button>
                                    }
                                }).collect_view()}
                            </div>
                            {move || test.value().get().map(|r| match r {
                                Ok(()) => view! { <p id="webhook-test-result" class="mt-1 text-sm text-emerald-700 dark:text-emerald-400">"Test notification delivered."</p> }.into_any(),
                                Err(e) => view! { <p id="webhook-test-result" role="alert" class="mt-1 text-sm text-red-600">{error_text_of(&e)}</p> }.into_any(),
                            })}
                        </fieldset>
                        <fieldset class=format!("{CARD} mb-4")>
                            <legend class="px-1 font-semibold">"Users"</legend>
                            <div class="grid grid-cols-1 items-end gap-3 sm:grid-cols-2">
                                <Check label="Users may create their own keys" name="form[user_keys_enabled]" checked=f.user_keys_enabled.is_some() />
                                <Field label="Keys per user (deleted ones count)" name="form[max_keys_per_user]" api_name="maxKeysPerUser" value=f.max_keys_per_user.clone() error />
                            </div>
                            <h3 class="mt-4 text-sm font-semibold">"Keys users create"</h3>
                            <p class="mb-2 text-xs text-slate-500">"Every key a user creates gets these limits, services and expiry (empty = none); users only name their keys. Changing them leaves existing keys as they are. Budgets across a user's keys are set on the users page."</p>
                            <div id="user-key-defaults" class="grid grid-cols-2 gap-3 sm:grid-cols-4">
                                <Field label="Daily cost limit ($)" name="form[user_key_daily_cost_limit]" api_name="userKeyDefaults.dailyCostLimit" value=f.user_key_daily_cost_limit.clone() placeholder="none" error />
                                <Field label="Total cost limit ($)" name="form[user_key_total_cost_limit]" api_name="userKeyDefaults.totalCostLimit" value=f.user_key_total_cost_limit.clone() placeholder="none" error />
                                <Field label="Weekly cost limit ($)" name="form[user_key_weekly_cost_limit]" api_name="userKeyDefaults.weeklyCostLimit" value=f.user_key_weekly_cost_limit.clone() placeholder="none" error />
                                <Field label="Concurrent requests" name="form[user_key_concurrency_limit]" api_name="userKeyDefaults.concurrencyLimit" value=f.user_key_concurrency_limit.clone() placeholder="none" error />
                                <Field label="Rate window (minutes)" name="form[user_key_rate_limit_window]" api_name="userKeyDefaults.rateLimitWindow" value=f.user_key_rate_limit_window.clone() placeholder="none" error />
                                <Field label="Requests per window" name="form[user_key_rate_limit_requests]" api_name="userKeyDefaults.rateLimitRequests" value=f.user_key_rate_limit_requests.clone() placeholder="none" error />
                                <Field label="Tokens per window" name="form[user_key_token_limit]" api_name="userKeyDefaults.tokenLimit" value=f.user_key_token_limit.clone() placeholder="none" error />
                                <Field label="Cost per window ($)" name="form[user_key_rate_limit_cost]" api_name="userKeyDefaults.rateLimitCost" value=f.user_key_rate_limit_cost.clone() placeholder="none" error />
                                <Field label="Expires after (days)" name="form[user_key_expiry_days]" api_name="userKeyDefaults.expiryDays" value=f.user_key_expiry_days.clone() placeholder="never" error />
                            </div>
                            <div class="mt-3 flex flex-wrap gap-4">
                                <span class="text-sm text-slate-600 dark:text-slate-300">"Services (none ticked = all):"</span>
                                <Check label="Claude" name="form[user_key_perm_claude]" checked=f.user_key_perm_claude.is_some() />
                                <Check label="OpenAI" name="form[user_key_perm_openai]" checked=f.user_key_perm_openai.is_some() />
                                <Check label="Gemini" name="form[user_key_perm_gemini]" checked=f.user_key_perm_gemini.is_some() />
                            </div>
                        </fieldset>
                        <button id="settings-submit" type="submit" class=BUTTON>"Save settings"</button>
                        {move || saved().then(|| view! { <span id="settings-saved" class="ml-3 text-sm text-emerald-700 dark:text-emerald-400">"Saved."</span> })}
                    </ActionForm>
                    {move || error.get().map(|m| view! { <p id="settings-error" role="alert" class="mt-3 text-sm text-red-600 dark:text-red-400">{m}</p> })}
                }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}
