//! Request records: the newest requests of every key, filtered by time, key, account, model
//! and status, a page at a time or all of them as CSV.

use std::collections::HashMap;

use app::domain::{RecordPage, RecordQuery, RecordRow, UsageCounters, RECORDS_PER_PAGE};

use super::AdminError;
use crate::state::AppState;

/// Every matching record, newest first, with key and account names.
pub async fn matching(state: &AppState, q: &RecordQuery) -> Result<Vec<RecordRow>, AdminError> {
    let records = state
        .store
        .all_records(state.config.request_records_kept)
        .await?;
    let keys: HashMap<String, String> = state
        .all_keys()
        .await?
        .iter()
        .map(|k| (k.key.id.clone(), k.key.name.clone()))
        .collect();
    let accounts: HashMap<String, String> = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| (a.account.id, a.account.name))
        .collect();
    Ok(records
        .into_iter()
        .filter_map(|r| {
            let key_name = keys.get(&r.key_id).cloned().unwrap_or_default();
            let account_name = accounts.get(&r.account_id).cloned().unwrap_or_default();
            q.matches(&r, &key_name, &account_name)
                .then_some(RecordRow {
                    record: r,
                    key_name,
                    account_name,
                })
        })
        .collect())
}

/// One page of matching records and their summed usage.
pub async fn page(state: &AppState, q: &RecordQuery) -> Result<RecordPage, AdminError> {
    let rows = matching(state, q).await?;
    let mut total = UsageCounters::default();
    for r in &rows {
        total.add(&UsageCounters::of_request(
            &r.record.usage,
            r.record.cost_nanos,
        ));
    }
    let pages = rows.len().div_ceil(RECORDS_PER_PAGE).max(1);
    let page = (q.page.max(1) as usize).min(pages);
    Ok(RecordPage {
        matching: rows.len() as u64,
        rows: rows
            .into_iter()
            .skip((page - 1) * RECORDS_PER_PAGE)
            .take(RECORDS_PER_PAGE)
            .collect(),
        page: page as u32,
        pages: pages as u32,
        total,
    })
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break; a leading `=`, `+`,
/// `-` or `@` is escaped so spreadsheets do not run it as a formula.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The matching records as CSV, one line each under a header.
pub fn csv(rows: Vec<RecordRow>) -> String {
    let mut out = String::from(
        "timestamp,request_id,key_id,key_name,account_id,account_name,model,endpoint,status,stream,input_tokens,output_tokens,cache_create_tokens,cache_read_tokens,cost_usd,rated_cost_usd,duration_ms,output_limit_lowered_to,usage_estimated\n",
    );
    for row in rows {
        let r = &row.record;
        let fields = [
            cell(&r.timestamp),
            cell(&r.request_id),
            cell(&r.key_id),
            cell(&row.key_name),
            cell(&r.account_id),
            cell(&row.account_name),
            cell(&r.model),
            cell(&r.endpoint),
            r.status.to_string(),
            r.stream.to_string(),
            r.usage.input_tokens.to_string(),
            r.usage.output_tokens.to_string(),
            r.usage.cache_create_tokens().to_string(),
            r.usage.cache_read_tokens.to_string(),
            format!("{:.9}", r.cost_nanos as f64 / 1e9),
            format!("{:.9}", r.rated_cost_nanos as f64 / 1e9),
            r.duration_ms.to_string(),
            r.output_limit_lowered_to
                .map(|n| n.to_string())
                .unwrap_or_default(),
            r.usage_estimated.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
