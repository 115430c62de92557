//! HTTP/2 SETTINGS frames, which the server must apply and acknowledge (RFC 9113 §6.5.3): h2
//! answers every one and has no limit of its own, so a flood of them (CVE-2019-9515) costs the
//! gateway CPU and bandwidth for as long as the attacker sends. `ControlFrames` reads the frame
//! headers out of what the client sends on an HTTP/2 connection, without buffering or
//! interpreting payloads, and gives each connection a budget of SETTINGS frames: a burst of
//! `BURST`, refilled at `PER_SECOND`. A connection over budget is closed. Clients send one when
//! they connect and one more each time they grow their flow-control window (a few per
//! connection).
//!
//! PING frames are not budgeted: clients that size their window by the bandwidth they see
//! (gRPC's BDP estimation) send one per round trip for as long as response data arrives, so a
//! rate that stops a flood also cuts off a large download. h2 stops reading while its
//! acknowledgements cannot be written, so a PING flood's memory stays bounded, and its CPU is
//! proportional to what the client sends, as for any frame. Acknowledgements the client sends
//! (the ACK flag) are not counted. Streams opened and reset (rapid reset) are h2's to limit; a
//! header list without end (CONTINUATION flood) is `server.max_header_bytes`'.

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;

/// SETTINGS frames a connection may send at once.
pub(crate) const BURST: u64 = 100;
/// How fast the budget refills.
pub(crate) const PER_SECOND: u64 = 10;

/// Where in the client's byte stream the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the first bytes: HTTP/2 when they are the connection preface. `matched` bytes of
    /// it have been seen.
    Preface { matched: usize },
    /// Not HTTP/2: nothing to read.
    Off,
    /// Reading a frame header: `have` of its 9 bytes are in `header`.
    Header { have: usize },
    /// Skipping a frame's payload.
    Payload { left: u64 },
}

/// The client's SETTINGS frames on one connection against its budget.
#[derive(Debug)]
pub(crate) struct ControlFrames {
    state: State,
    header: [u8; 9],
    /// The budget in thousandths of a frame, as of `at_ms`.
    budget_milli: u64,
    at_ms: u64,
}

/// A connection sent more SETTINGS frames than its budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 SETTINGS flood: more than {BURST} SETTINGS frames at once (budget refills at {PER_SECOND}/s)")]
pub struct Flood;

impl Default for ControlFrames {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlFrames {
    pub fn new() -> Self {
        ControlFrames {
            state: State::Preface { matched: 0 },
            header: [0; 9],
            budget_milli: BURST * 1000,
            at_ms: 0,
        }
    }

    /// Whether the connection turned out not to be HTTP/2 (nothing more is read).
    pub(crate) fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Reads the next bytes the client sent, `now_ms` milliseconds into the connection.
    pub(crate) fn scan(&mut self, mut data: &[u8], now_ms: u64) -> Result<(), Flood> {
        while !data.is_empty() {
            match self.state {
                State::Off => return Ok(()),
                State::Preface { matched } => {
                    let n = data.len().min(PREFACE.len() - matched);
                    if data[..n] != PREFACE[matched..matched + n] {
                        self.state = State::Off;
                        return Ok(());
                    }
                    data = &data[n..];
                    self.state = if matched + n == PREFACE.len() {
                        State::Header { have: 0 }
                    } else {
                        State::Preface {
                            matched: matched + n,
                        }
                    };
                }
                State::Header { have } => {
                    let n = data.len().min(9 - have);
                    self.header[have..have + n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    if have + n < 9 {
                        self.state = State::Header { have: have + n };
                        continue;
                    }
                    let [l0, l1, l2, kind, flags, ..] = self.header;
                    if kind == SETTINGS && flags & ACK == 0 {
                        self.spend(now_ms)?;
                    }
                    let left = u64::from(u32::from_be_bytes([0, l0, l1, l2]));
                    self.state = if left == 0 {
                        State::Header { have: 0 }
                    } else {
                        State::Payload { left }
                    };
                }
                State::Payload { left } => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    self.state = if n == left {
                        State::Header { have: 0 }
                    } else {
                        State::Payload { left: left - n }
                    };
                }
            }
        }
        Ok(())
    }

    fn spend(&mut self, now_ms: u64) -> Result<(), Flood> {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        self.budget_milli =
            (self.budget_milli + elapsed.saturating_mul(PER_SECOND)).min(BURST * 1000);
        self.budget_milli = self.budget_milli.checked_sub(1000).ok_or(Flood)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: u8 = 0x6;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings() -> Vec<u8> {
        frame(SETTINGS, 0, &[0, 4, 0, 1, 0, 0])
    }

    /// A connection as a client sends it: preface, SETTINGS, a HEADERS frame, `n` frames.
    fn connection(n: usize, each: &[u8]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings());
        bytes.extend(frame(0x1, 0x5, &[0x82, 0x86, 0x84]));
        for _ in 0..n {
            bytes.extend_from_slice(each);
        }
        bytes
    }

    #[test]
    fn a_burst_of_settings_is_allowed_and_one_more_closes() {
        // The SETTINGS frame a client opens with counts: BURST - 1 more fit.
        let mut c = ControlFrames::new();
        assert_eq!(
            c.scan(&connection(BURST as usize - 1, &settings()), 0),
            Ok(())
        );
        assert_eq!(c.scan(&settings(), 0), Err(Flood));
    }

    #[test]
    fn frames_split_across_reads_at_any_byte_are_read_the_same() {
        let mut bytes = connection(BURST as usize - 1, &settings());
        // A large DATA frame whose payload holds what would read as SETTINGS headers.
        bytes.extend(frame(0x0, 0, &settings().repeat(2000)));
        let one_more = settings();
        for chunk in [1, 2, 5, 9, 10, 24, 4096] {
            let mut c = ControlFrames::new();
            for piece in bytes.chunks(chunk) {
                assert_eq!(c.scan(piece, 0), Ok(()), "chunks of {chunk}");
            }
            assert_eq!(c.scan(&one_more, 0), Err(Flood), "chunks of {chunk}");
        }
    }

    #[test]
    fn acknowledgements_pings_and_other_frames_are_not_counted() {
        let mut c = ControlFrames::new();
        let mut others = frame(SETTINGS, ACK, &[]);
        others.extend(frame(PING, 0, &[0; 8]));
        others.extend(frame(PING, ACK, &[0; 8]));
        others.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        others.extend(frame(0x0, 0, b"body"));
        assert_eq!(c.scan(&connection(10_000, &others), 0), Ok(()));
    }

    #[test]
    fn the_budget_refills_with_time() {
        let mut c = ControlFrames::new();
        assert_eq!(
            c.scan(&connection(BURST as usize - 1, &settings()), 0),
            Ok(())
        );
        // One SETTINGS frame every 100 ms forever (the refill rate) never runs out.
        for i in 1..=1000 {
            assert_eq!(
                c.scan(&settings(), i * 1000 / PER_SECOND),
                Ok(()),
                "frame {i}"
            );
        }
        // Faster than that does, once the burst is spent.
        let now = 1000 * 1000 / PER_SECOND;
        assert_eq!(c.scan(&settings(), now), Err(Flood));
        // After a quiet spell the whole burst is back, and no more.
        let mut c = ControlFrames::new();
        assert_eq!(
            c.scan(&connection(BURST as usize - 1, &settings()), 0),
            Ok(())
        );
        let later = 3_600_000;
        for _ in 0..BURST {
            assert_eq!(c.scan(&settings(), later), Ok(()));
        }
        assert_eq!(c.scan(&settings(), later), Err(Flood));
    }

    #[test]
    fn http1_is_never_read() {
        for first in [&b"GET / HTTP/1.1\r\n"[..], b"P", b"PRI * HTTP/1.1"] {
            let mut c = ControlFrames::new();
            assert_eq!(c.scan(first, 0), Ok(()));
            if first.len() > 1 {
                assert!(c.is_off());
            }
            // Whatever follows, even bytes that would read as SETTINGS frames.
            assert_eq!(c.scan(&settings().repeat(1000), 0), Ok(()));
        }
    }
}
