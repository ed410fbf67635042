//! Many one-shot checks at once: connect, run one statement, read its first value, close.
//! Used by health checks, where 1,000 tenant databases must be looked at in seconds and a
//! dead server must cost one timeout, not one per tenant.
//!
//! Each probe is a libpq connection driven without blocking (`PQconnectStartParams`,
//! `PQconnectPoll`, `PQsendQuery`, `PQconsumeInput`), at most `concurrency` at once, each
//! bounded by its own deadline. The backend waits on all their sockets together with poll(2),
//! at most 50 ms at a time, and serves interrupts between waits (a cancel or terminate ends
//! the call; every connection is closed by `Drop`). Each open connection holds one of the
//! backend's external file descriptors (`AcquireExternalFD`, as postgres_fdw does): when none
//! is left, fewer probes run at once.

use super::libpq::{cancel, connect_start, cstring, poll, refusal_in, PollFd};
use pgrx::pg_sys;
use pq_sys as pq;
use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// One check: libpq keyword/value connection parameters and a statement whose first value
/// is read.
#[derive(Debug, Clone)]
pub struct Probe {
    pub params: Vec<(String, String)>,
    pub sql: String,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Connected and the statement succeeded.
    pub ok: bool,
    /// The error (libpq's or the server's, with its SQLSTATE when it sent one), or "".
    pub message: String,
    /// The first column of the first row, when there was one.
    pub value: Option<String>,
    /// From the start of the connection attempt to the end of the statement (or failure).
    pub elapsed: Duration,
}

const POLLIN: i16 = 0x001;
const POLLOUT: i16 = 0x004;

/// An open probe connection; closed (and its descriptor released) when dropped.
struct Active {
    index: usize,
    raw: NonNull<pq::PGconn>,
    started: Instant,
    querying: bool,
    events: i16,
    value: Option<String>,
    error: Option<String>,
}

impl Drop for Active {
    fn drop(&mut self) {
        // SAFETY: raw is a live PGconn owned by this value, finished once; the descriptor was
        // acquired when it was opened.
        unsafe {
            pq::PQfinish(self.raw.as_ptr());
            pg_sys::ReleaseExternalFD();
        }
    }
}

impl Active {
    fn socket(&self) -> i32 {
        // SAFETY: raw is live.
        unsafe { pq::PQsocket(self.raw.as_ptr()) }
    }

    fn error_message(&self) -> String {
        // SAFETY: PQerrorMessage returns a NUL-terminated string owned by the PGconn.
        let text = unsafe {
            CStr::from_ptr(pq::PQerrorMessage(self.raw.as_ptr()))
                .to_string_lossy()
                .trim()
                .to_string()
        };
        match refusal_in(&text) {
            Some((code, message)) => format!("{code}: {message}"),
            None => text,
        }
    }

    /// Advances the probe; `Some(outcome)` when it is over.
    fn step(&mut self, sql: &str) -> Option<Outcome> {
        let raw = self.raw.as_ptr();
        if !self.querying {
            // SAFETY: raw is a connection being set up; PQconnectPoll does not block.
            match unsafe { pq::PQconnectPoll(raw) } {
                pq::PostgresPollingStatusType::PGRES_POLLING_OK => {
                    // SAFETY: raw is connected and idle; the text outlives the call.
                    if unsafe { pq::PQsendQuery(raw, cstring(sql).as_ptr()) } != 1 {
                        return Some(self.finish(Some(self.error_message())));
                    }
                    self.querying = true;
                    self.events = POLLIN;
                }
                pq::PostgresPollingStatusType::PGRES_POLLING_FAILED => {
                    return Some(self.finish(Some(self.error_message())));
                }
                pq::PostgresPollingStatusType::PGRES_POLLING_WRITING => self.events = POLLOUT,
                _ => self.events = POLLIN,
            }
            return None;
        }
        loop {
            // SAFETY: raw is live; neither call blocks.
            let busy = unsafe { pq::PQconsumeInput(raw) == 0 || pq::PQisBusy(raw) != 0 };
            // SAFETY: as above.
            if unsafe { pq::PQstatus(raw) } != pq::ConnStatusType::CONNECTION_OK {
                let e = self.error.clone().unwrap_or_else(|| self.error_message());
                return Some(self.finish(Some(e)));
            }
            if busy {
                return None;
            }
            // SAFETY: not busy, so PQgetResult does not block; each result is cleared once.
            unsafe {
                let res = pq::PQgetResult(raw);
                if res.is_null() {
                    let e = self.error.take();
                    return Some(self.finish(e));
                }
                match pq::PQresultStatus(res) {
                    pq::ExecStatusType::PGRES_TUPLES_OK | pq::ExecStatusType::PGRES_COMMAND_OK => {
                        if pq::PQntuples(res) > 0 && pq::PQgetisnull(res, 0, 0) == 0 {
                            self.value = Some(
                                CStr::from_ptr(pq::PQgetvalue(res, 0, 0))
                                    .to_string_lossy()
                                    .into_owned(),
                            );
                        }
                    }
                    _ => {
                        let field = |code: u8| {
                            let p = pq::PQresultErrorField(res, code as i32);
                            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                        };
                        self.error.get_or_insert_with(|| {
                            format!(
                                "{}: {}",
                                field(b'C').unwrap_or_default(),
                                field(b'M').unwrap_or_default()
                            )
                        });
                    }
                }
                pq::PQclear(res);
            }
        }
    }

    /// Past its deadline: a statement in flight is cancelled first (closing the connection
    /// alone would leave its server session running until the statement ends, holding a slot
    /// of the role's connection limit).
    fn time_out(&mut self, timeout: Duration) -> Outcome {
        let ms = timeout.as_millis();
        let message = if self.querying {
            cancel(self.raw.as_ptr());
            format!("the statement did not finish within {ms} ms (cancelled)")
        } else {
            format!("could not connect within {ms} ms")
        };
        self.finish(Some(message))
    }

    fn finish(&mut self, error: Option<String>) -> Outcome {
        Outcome {
            ok: error.is_none(),
            message: error.unwrap_or_default(),
            value: self.value.take(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Opens probe `index`; `Err(None)` when no file descriptor is left now (retry later),
/// `Err(Some(outcome))` when it failed at once.
fn open(index: usize, probe: &Probe) -> Result<Active, Option<Outcome>> {
    // SAFETY: plain call; paired with ReleaseExternalFD in Active's Drop or below.
    if !unsafe { pg_sys::AcquireExternalFD() } {
        return Err(None);
    }
    let started = Instant::now();
    let Some(raw) = connect_start(&probe.params) else {
        // SAFETY: releases the descriptor acquired above.
        unsafe { pg_sys::ReleaseExternalFD() };
        return Err(Some(Outcome {
            ok: false,
            message: "out of memory".into(),
            value: None,
            elapsed: started.elapsed(),
        }));
    };
    let mut a = Active {
        index,
        raw,
        started,
        querying: false,
        events: POLLOUT,
        value: None,
        error: None,
    };
    // SAFETY: raw is live; verbose errors carry the server's SQLSTATE.
    unsafe {
        pq::PQsetErrorVerbosity(raw.as_ptr(), pq::PGVerbosity::PQERRORS_VERBOSE);
        if pq::PQstatus(raw.as_ptr()) == pq::ConnStatusType::CONNECTION_BAD {
            let e = a.error_message();
            return Err(Some(a.finish(Some(e))));
        }
    }
    Ok(a)
}

/// Runs every probe, at most `concurrency` at once, each bounded by `timeout` from its start;
/// returns the outcomes in the order of `probes`.
pub fn run(probes: &[Probe], concurrency: usize, timeout: Duration) -> Vec<Outcome> {
    let concurrency = concurrency.max(1);
    let mut results: Vec<Option<Outcome>> = vec![None; probes.len()];
    let mut active: Vec<Active> = Vec::new();
    let mut next = 0;
    loop {
        while active.len() < concurrency && next < probes.len() {
            match open(next, &probes[next]) {
                Ok(a) => active.push(a),
                Err(Some(o)) => results[next] = Some(o),
                Err(None) if active.is_empty() => {
                    results[next] = Some(Outcome {
                        ok: false,
                        message: "out of file descriptors for remote connections".into(),
                        value: None,
                        elapsed: Duration::ZERO,
                    });
                }
                Err(None) => break,
            }
            next += 1;
        }
        if active.is_empty() && next >= probes.len() {
            break;
        }
        // advance every probe; those over (done or past their deadline) are closed
        let mut i = 0;
        while i < active.len() {
            let sql = &probes[active[i].index].sql;
            let over = match active[i].step(sql) {
                Some(o) => Some(o),
                None if active[i].started.elapsed() >= timeout => Some(active[i].time_out(timeout)),
                None => None,
            };
            match over {
                Some(o) => {
                    let a = active.swap_remove(i);
                    results[a.index] = Some(o);
                }
                None => i += 1,
            }
        }
        if active.is_empty() {
            continue;
        }
        wait(&active, timeout);
        pgrx::check_for_interrupts!();
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Outcome {
                ok: false,
                message: "not run".into(),
                value: None,
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}

/// Waits until a socket of `active` is ready, the earliest deadline passes, or 50 ms (so
/// that interrupts are served), whichever comes first.
fn wait(active: &[Active], timeout: Duration) {
    let mut fds: Vec<PollFd> = active
        .iter()
        .map(|a| PollFd {
            fd: a.socket(),
            events: a.events,
            revents: 0,
        })
        .collect();
    let earliest = active
        .iter()
        .map(|a| timeout.saturating_sub(a.started.elapsed()))
        .min()
        .unwrap_or(Duration::ZERO);
    let ms = earliest.as_millis().clamp(1, 50) as i32;
    // SAFETY: fds is a valid array of pollfd of the given length.
    unsafe { poll(fds.as_mut_ptr(), fds.len() as u64, ms) };
}
