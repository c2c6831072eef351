//! `cargo run --release -p users-svc --example hash_time -- COST [N]`: the median time of one
//! `bcrypt_sha256` password hash at `COST` (N runs, default 15), in milliseconds, on one core.
//! `bench/users.sh` uses it for the bcrypt ceiling (cores ÷ one hash time).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let cost: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: hash_time COST [N]");
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            users_svc::domain::password::make("password123", cost).expect("bcrypt hashes");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.2}", times[runs / 2]);
}
