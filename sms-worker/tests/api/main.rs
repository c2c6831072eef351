//! Tests of sms-worker against real Redis (queue and verify codes), real apalis, and the
//! sms-sandbox over real HTTP; the process tests run the real binary.

mod delivery;
mod failover;
mod health;
mod helpers;
mod housekeeping;
mod process;
mod redis_restart;
