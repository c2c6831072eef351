//! The HTML inbox page (`GET /`) for people trying the site with `deploy/dev up`: who got which
//! code when, through which provider, newest first. It refreshes itself every two seconds.

use std::fmt::Write as _;

use crate::{Message, ccp};

/// The page for `messages` (stored oldest first).
pub(super) fn render(messages: &[Message]) -> String {
    let mut rows = String::new();
    for m in messages.iter().rev().take(200) {
        let code = m.datas.first().map_or("", String::as_str);
        let minutes = m.datas.get(1).map_or("", String::as_str);
        let time = m
            .received_at
            .with_timezone(&ccp::shanghai())
            .format("%Y-%m-%d %H:%M:%S");
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td class=code>{}</td><td>{}</td><td>{time}</td></tr>",
            escape(&m.provider),
            escape(&m.to),
            escape(code),
            escape(minutes),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=5>No messages yet.</td></tr>");
    }
    format!(
        "<!doctype html><html lang=zh><head><meta charset=utf-8>\
         <meta http-equiv=refresh content=2><title>sms-sandbox inbox</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .8em}}.code{{font:bold 1.3em monospace}}</style>\
         </head><body><h1>短信收件箱 (sms-sandbox)</h1>\
         <table><tr><th>通道 provider</th><th>手机号 mobile</th><th>验证码 code</th><th>有效分钟 minutes</th>\
         <th>时间 time (UTC+8)</th></tr>{rows}</table></body></html>"
    )
}

/// Minimal HTML escaping for text inside elements.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: &str, code: &str, secs: i64) -> Message {
        Message {
            provider: "aliyun".into(),
            to: to.into(),
            app_id: "a".into(),
            template_id: "1".into(),
            datas: vec![code.into(), "5".into()],
            req_id: None,
            received_at: chrono::DateTime::from_timestamp(1_795_773_600 + secs, 0).expect("valid"),
        }
    }

    #[test]
    fn lists_newest_first_with_shanghai_time_and_escapes_text() {
        let page = render(&[
            msg("13800138000", "111111", 0),
            msg("13900139000", "<b>", 1),
        ]);
        let first = page.find("13900139000").expect("second message shown");
        let second = page.find("13800138000").expect("first message shown");
        assert!(first < second, "newest first");
        assert!(page.contains("&lt;b&gt;"), "escaped");
        assert!(
            page.contains("<td>aliyun</td><td>13900139000</td>"),
            "{page}"
        );
        assert!(page.contains("2026-11-27 18:00:00"), "{page}");
        assert!(page.contains("http-equiv=refresh"));
    }
}
