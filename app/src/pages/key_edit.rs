//! Editing every field of a key: limits (global, per platform, per model), permissions,
//! bindings, model blacklist, client restriction, expiry, tags. The server checks the form
//! with the admin API's rules and names the field at fault.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{load_error, Check, Field, BUTTON, CARD, INPUT};
use crate::{
    domain::KeyForm,
    server_fns::{error_text_of, get_key_form, UpdateKey},
};

#[component]
pub fn KeyEditPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let form = Resource::new(id, get_key_form);
    let save = ServerAction::<UpdateKey>::new();
    let error = Signal::derive(move || {
        save.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text_of(&e))
    });
    view! {
        <h1 class="mb-4 text-2xl font-semibold">"Edit API key"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || form.get().map(|r| match r {
                Ok(f) => view! {
                    <ActionForm action=save attr:id="edit-key-form">
                        <input type="hidden" name="id" value=id() />
                        <KeyFields form=f error skip_basic=false />
                        <div class="mt-4 flex items-center gap-3">
                            <button id="edit-key-submit" type="submit" class=BUTTON>"Save"</button>
                            <a href="/admin-next/keys" class="text-sm hover:underline">"Cancel"</a>
                        </div>
                    </ActionForm>
                    {move || error.get().map(|m| view! { <p id="edit-key-error" role="alert" class="mt-3 text-sm text-red-600 dark:text-red-400">{m}</p> })}
                }.into_any(),
                Err(e) => load_error(&e),
            })}
        </Suspense>
    }
}

/// The key fields, grouped; used by the edit page and the create form's "more" section.
#[component]
pub fn KeyFields(form: KeyForm, error: Signal<Option<String>>, skip_basic: bool) -> impl IntoView {
    let f = form;
    let section = format!("{CARD} mb-4");
    view! {
        {(!skip_basic).then(|| view! {
            <fieldset class=section.clone()>
                <legend class="px-1 font-semibold">"Key"</legend>
                <div class="grid grid-cols-1 gap-3 sm:grid-cols-2">
                    <Field label="Name" name="form[name]" api_name="name" value=f.name.clone() error />
                    <Field label="Tags (comma-separated)" name="form[tags]" value=f.tags.clone() error />
                    <Field label="Description" name="form[description]" value=f.description.clone() error />
                </div>
            </fieldset>
        })}
        {skip_basic.then(|| view! {
            <div class="mb-3 grid grid-cols-1 gap-3 sm:grid-cols-2">
                <Field label="Tags (comma-separated)" name="form[tags]" value=f.tags.clone() error />
                <Field label="Description" name="form[description]" value=f.description.clone() error />
            </div>
        })}
        <fieldset class=section.clone()>
            <legend class="px-1 font-semibold">"Cost limits ($, empty = none)"</legend>
            <div class="grid grid-cols-2 gap-3 sm:grid-cols-4">
                {(!skip_basic).then(|| view! { <Field label="Daily" name="form[daily_cost_limit]" api_name="dailyCostLimit" value=f.daily_cost_limit.clone() error /> })}
                <Field label="Total" name="form[total_cost_limit]" api_name="totalCostLimit" value=f.total_cost_limit.clone() error />
                <Field label="Weekly" name="form[weekly_cost_limit]" api_name="weeklyCostLimit" value=f.weekly_cost_limit.clone() error />
                <Field label="Weekly (Claude)" name="form[weekly_opus_cost_limit]" api_name="weeklyOpusCostLimit" value=f.weekly_opus_cost_limit.clone() error />
            </div>
            <div class="mt-3 grid grid-cols-2 gap-3 sm:grid-cols-3">
                <Field label="Claude daily" name="form[claude_daily]" api_name="platformLimits.claude" value=f.claude_daily.clone() error />
                <Field label="OpenAI daily" name="form[openai_daily]" api_name="platformLimits.openai" value=f.openai_daily.clone() error />
                <Field label="Gemini daily" name="form[gemini_daily]" api_name="platformLimits.gemini" value=f.gemini_daily.clone() error />
                <Field label="Claude total" name="form[claude_total]" value=f.claude_total.clone() error />
                <Field label="OpenAI total" name="form[openai_total]" value=f.openai_total.clone() error />
                <Field label="Gemini total" name="form[gemini_total]" value=f.gemini_total.clone() error />
            </div>
            <label class="mt-3 block text-sm">
                <span class="text-slate-600 dark:text-slate-300">"Model limits: one per line, `model-or-prefix* daily [total]`"</span>
                <textarea id="form-model_limits" name="form[model_limits]" rows="3" class=format!("{INPUT} font-mono")>{f.model_limits.clone()}</textarea>
            </label>
        </fieldset>
        <fieldset class=section.clone()>
            <legend class="px-1 font-semibold">"Rate and concurrency (empty = none)"</legend>
            <div class="grid grid-cols-2 gap-3 sm:grid-cols-5">
                <Field label="Concurrent requests" name="form[concurrency_limit]" api_name="concurrencyLimit" value=f.concurrency_limit.clone() error />
                <Field label="Window (minutes)" name="form[rate_limit_window]" api_name="rateLimitWindow" value=f.rate_limit_window.clone() error />
                <Field label="Requests / window" name="form[rate_limit_requests]" api_name="rateLimitRequests" value=f.rate_limit_requests.clone() error />
                <Field label="Tokens / window" name="form[token_limit]" api_name="tokenLimit" value=f.token_limit.clone() error />
                <Field label="Cost / window ($)" name="form[rate_limit_cost]" api_name="rateLimitCost" value=f.rate_limit_cost.clone() error />
            </div>
        </fieldset>
        <fieldset class=section.clone()>
            <legend class="px-1 font-semibold">"Access"</legend>
            <div class="mb-2 text-sm text-slate-600 dark:text-slate-300">"Services (none ticked = all)"</div>
            <div class="flex flex-wrap gap-4">
                <Check label="Claude" name="form[perm_claude]" checked=f.perm_claude.is_some() />
                <Check label="OpenAI" name="form[perm_openai]" checked=f.perm_openai.is_some() />
                <Check label="Gemini" name="form[perm_gemini]" checked=f.perm_gemini.is_some() />
            </div>
            <div class="mt-3 mb-2 text-sm text-slate-600 dark:text-slate-300">"Allowed clients (none ticked = any)"</div>
            <div class="flex flex-wrap gap-4">
                <Check label="Claude Code" name="form[client_claude_code]" checked=f.client_claude_code.is_some() />
                <Check label="Gemini CLI" name="form[client_gemini_cli]" checked=f.client_gemini_cli.is_some() />
                <Check label="Codex CLI" name="form[client_codex_cli]" checked=f.client_codex_cli.is_some() />
            </div>
            <div class="mt-3 grid grid-cols-1 gap-3 sm:grid-cols-3">
                <Field label="Blocked models (comma-separated)" name="form[restricted_models]" api_name="restrictedModels" value=f.restricted_models.clone() error />
                <Field label="Dedicated Claude account or group:<id>" name="form[claude_account_id]" value=f.claude_account_id.clone() error />
                <Field label="Dedicated Console account" name="form[claude_console_account_id]" value=f.claude_console_account_id.clone() error />
            </div>
        </fieldset>
        <fieldset class=section>
            <legend class="px-1 font-semibold">"Expiry"</legend>
            <div class="grid grid-cols-1 gap-3 sm:grid-cols-2">
                <Field label="Expires on (YYYY-MM-DD)" name="form[expires_at]" api_name="expiresAt" value=f.expires_at.clone() placeholder="never" error />
                <Field label="Or: days from first use" name="form[activation_days]" api_name="activationDays" value=f.activation_days.clone() error />
            </div>
        </fieldset>
    }
}
