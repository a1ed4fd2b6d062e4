//! Charts drawn as SVG on the server (no chart library, readable without WASM). They scale
//! with their box (`viewBox`), and use `currentColor` so that both themes read well.

use leptos::prelude::*;

use crate::domain::{format_usd, ModelUsage, UsagePoint};

const W: f64 = 640.0;
const H: f64 = 200.0;
const PAD_L: f64 = 8.0;
const PAD_B: f64 = 22.0;

/// Requests per day as bars, cost per day as a line on its own scale.
#[component]
pub fn TrendChart(points: Vec<UsagePoint>) -> impl IntoView {
    let n = points.len().max(1) as f64;
    let max_req = points
        .iter()
        .map(|p| p.usage.requests)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_cost = points
        .iter()
        .map(|p| p.usage.cost_nanos)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = (W - PAD_L * 2.0) / n;
    let plot_h = H - PAD_B - 8.0;
    let x = move |i: usize| PAD_L + slot * i as f64;
    let line: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let y = 8.0 + plot_h - plot_h * p.usage.cost_nanos as f64 / max_cost;
            format!("{:.1},{:.1}", x(i) + slot / 2.0, y)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let h = plot_h * p.usage.requests as f64 / max_req;
            let label = p.period.get(5..).unwrap_or(&p.period).to_string();
            let tip = format!(
                "{}: {} requests, {} tokens, {}",
                p.period,
                p.usage.requests,
                p.usage.all_tokens(),
                format_usd(p.usage.cost_nanos)
            );
            view! {
                <g class="trend-bar">
                    <title>{tip}</title>
                    <rect x=format!("{:.1}", x(i) + slot * 0.15) y=format!("{:.1}", 8.0 + plot_h - h)
                        width=format!("{:.1}", slot * 0.7) height=format!("{:.1}", h.max(0.5))
                        rx="2" class="fill-indigo-400 dark:fill-indigo-500" />
                    {(i % 2 == (points.len() + 1) % 2).then(|| view! {
                        <text x=format!("{:.1}", x(i) + slot / 2.0) y=format!("{:.1}", H - 6.0)
                            text-anchor="middle" font-size="11" fill="currentColor" opacity="0.7">{label}</text>
                    })}
                </g>
            }
        })
        .collect_view();
    view! {
        <svg id="trend-chart" viewBox=format!("0 0 {W} {H}") class="h-auto w-full" role="img"
            aria-label="Requests (bars) and cost (line) per day">
            <line x1=PAD_L y1=8.0 + plot_h x2=W - PAD_L y2=8.0 + plot_h stroke="currentColor" opacity="0.2" />
            {bars}
            <polyline points=line fill="none" stroke-width="2" class="stroke-emerald-500" />
        </svg>
        <div class="mt-1 flex gap-4 text-xs text-slate-500 dark:text-slate-400">
            <span><span class="mr-1 inline-block h-2 w-3 rounded bg-indigo-400"></span>"requests (max " {max_req as u64} ")"</span>
            <span><span class="mr-1 inline-block h-0.5 w-3 bg-emerald-500 align-middle"></span>"cost (max " {format_usd(max_cost as u64)} ")"</span>
        </div>
    }
}

/// Today's cost per model as horizontal bars with their share (top 8, the rest summed).
#[component]
pub fn ModelChart(models: Vec<ModelUsage>) -> impl IntoView {
    if models.is_empty() {
        return view! { <p id="model-chart-empty" class="text-sm text-slate-500">"No requests today yet."</p> }.into_any();
    }
    let by_cost = models.iter().any(|m| m.usage.cost_nanos > 0);
    let value = move |m: &ModelUsage| {
        if by_cost {
            m.usage.cost_nanos
        } else {
            m.usage.requests
        }
    };
    let mut shown: Vec<ModelUsage> = models.iter().take(8).cloned().collect();
    if models.len() > 8 {
        let mut rest = ModelUsage {
            model: format!("{} others", models.len() - 8),
            ..Default::default()
        };
        for m in &models[8..] {
            rest.usage.add(&m.usage);
        }
        shown.push(rest);
    }
    let total = shown.iter().map(value).sum::<u64>().max(1) as f64;
    let row_h = 26.0;
    let height = row_h * shown.len() as f64;
    let rows = shown
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let share = value(m) as f64 / total;
            let y = i as f64 * row_h;
            let detail = format!(
                "{:.1}% · {} req · {}",
                share * 100.0,
                m.usage.requests,
                format_usd(m.usage.cost_nanos)
            );
            view! {
                <g class="model-bar">
                    <title>{format!("{}: {detail}", m.model)}</title>
                    <rect x="0" y=y + 14.0 width=format!("{:.1}", (W * share).max(2.0)) height="8" rx="2"
                        class="fill-violet-400 dark:fill-violet-500" />
                    <text x="0" y=y + 11.0 font-size="11" fill="currentColor">{m.model.clone()}</text>
                    <text x=W y=y + 11.0 font-size="11" fill="currentColor" text-anchor="end" opacity="0.7">{detail}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <svg id="model-chart" viewBox=format!("0 0 {W} {height}") class="h-auto w-full" role="img"
            aria-label="Share of today's usage per model">
            {rows}
        </svg>
    }
    .into_any()
}
