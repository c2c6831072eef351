//! End-to-end tests across the meiduo-auth services (in `tests/`), and the `sms-sandbox`
//! binary: a fake of the CCP SMS provider that speaks its real wire protocol.
