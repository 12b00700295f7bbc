//! The harness: scenario files drive load through connectors and limiters against the mock
//! providers (or a real endpoint), in real time or virtual time, and write reports.
//!
//! (Parallel work in progress: each part adds its own `pub mod` line below.)

pub mod arrival;
pub mod batch;
pub mod capacity;
pub mod charts;
pub mod compare;
pub mod html;
pub mod progress;
pub mod record;
pub mod report;
pub mod report_files;
pub mod request;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod sim;
pub mod summary;
pub mod target;
pub mod thresholds;
pub mod ticker;
pub mod trace;
pub mod tune;
pub mod verify;
pub mod workload;
