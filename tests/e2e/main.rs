//! End-to-end tests: the real `etl` binary against the bundled simulator (`etl sim`), with the
//! Parquet read back and compared with the simulator's ground truth.

mod audit;
mod catalog;
mod cdn;
mod config;
mod deploy;
mod faults;
mod hostile;
mod mail_delivery;
mod mail_tracking;
mod operate;
mod preview;
mod s3;
mod scale;
mod util;
mod webdav;
