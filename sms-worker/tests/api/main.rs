//! Tests of sms-worker against a real Redis queue.

mod health;
mod helpers;
