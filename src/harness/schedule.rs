//! The open-loop requests of a scenario in time order, from either source: the phases'
//! arrival processes ([`open_loop_schedule`]) or a replayed trace
//! ([`TraceSpec::arrivals`](super::trace::TraceSpec::arrivals)). The live runner and the
//! simulator both take their arrivals from here, so they send the same requests.

use crate::clock::{nanos, Nanos};

use super::arrival::open_loop_schedule;
use super::scenario::Scenario;
use super::trace::{TraceError, TraceRequest};

/// One open-loop request: when, in which phase, and, for a trace, its recorded row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Intended start, ns since the run start.
    pub at: Nanos,
    /// The phase it belongs to.
    pub phase: usize,
    /// The trace row it replays (lengths and `max_tokens`), `None` for generated traffic.
    pub trace: Option<TraceRequest>,
}

/// Every open-loop request of `s`, in time order, strictly within the run's length. A
/// trace is read as the iterator goes (opening it can fail).
pub fn open_loop_requests(
    s: &Scenario,
) -> Result<Box<dyn Iterator<Item = Scheduled> + Send>, TraceError> {
    if let Some(file) = &s.workload.requests {
        let rows = file.arrivals().map_err(|e| TraceError::Io {
            path: file.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        return Ok(Box::new(rows.map(|r| Scheduled {
            at: r.at,
            phase: 0,
            trace: Some(r),
        })));
    }
    match &s.workload.trace {
        Some(t) => {
            let end = nanos(s.duration());
            Ok(Box::new(t.arrivals(s.seed, end)?.map(|r| Scheduled {
                at: r.at,
                phase: 0,
                trace: Some(r),
            })))
        }
        None => Ok(Box::new(open_loop_schedule(&s.phases, s.seed).map(
            |(at, phase)| Scheduled {
                at,
                phase,
                trace: None,
            },
        ))),
    }
}
