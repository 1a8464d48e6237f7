//! Named points where a test can stop the process, to prove what a crash at that exact moment
//! costs (the reliability tests kill `etl` between its data files and its manifest, and
//! between its manifest and its state record).
//!
//! With `ETL_FAILPOINT=<name>` set, reaching that point prints `failpoint <name> reached` on
//! stderr and then blocks the task forever, so that the test can send a real SIGKILL at a known
//! moment. Unset (always, outside tests), a failpoint is one environment lookup per unit.

/// Stops here if `ETL_FAILPOINT` names this point.
pub async fn failpoint(name: &str) {
    if std::env::var("ETL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        std::future::pending::<()>().await;
    }
}
