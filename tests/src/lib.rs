//! End-to-end tests across the meiduo-auth services (in `tests/`), and the `sms-sandbox`:
//! a fake of the CCP SMS provider that speaks its real wire protocol ([`sandbox`]), usable
//! in-process from any test and as the `sms-sandbox` binary.

pub mod sandbox;
