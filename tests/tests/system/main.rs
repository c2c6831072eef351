//! The whole system, end to end, on real processes: the browser or an HTTP client talks to
//! Debian's nginx rendering `deploy/nginx/meiduo.conf.template`, which proxies to the
//! `verifications-svc` and `users-svc` binaries; `sms-worker` delivers the code to the
//! sms-sandbox; Redis and MariaDB are real servers (`harness`). Nothing is mocked but the SMS
//! provider. What a single service's own tests already cover is not repeated here: these tests
//! are about the flows across services, what the gateway adds, and the page in a real browser.

mod browser;
mod client_key;
mod conformance;
mod flow;
mod gateway;
mod openapi;
mod proxy_hop;
mod shedding;
mod stack;
mod startup;
mod webdriver;
