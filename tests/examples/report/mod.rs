//! What the two load drivers (`faults`, `overload`) both need to read their settings and write
//! their reports: one definition, so their numbers mean the same.

use std::collections::BTreeMap;

/// A number from the environment, `default` when unset or not a number.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of sorted `v`, nearest rank; NaN when empty.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v[(((v.len() - 1) as f64) * p).round() as usize]
    }
}

/// Answers by status, `12×200 3×503`; status 0 (no answer at all) reads `none`.
pub fn statuses(by_status: &BTreeMap<u16, usize>) -> String {
    by_status
        .iter()
        .map(|(status, n)| match status {
            0 => format!("{n}×none"),
            _ => format!("{n}×{status}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
