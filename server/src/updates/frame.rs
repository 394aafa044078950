//! The SSE frames every stream writes, each encoded in one place: an event with its id
//! (`id: <seq>\ndata: <json>\n\n`), `connected`, `ping`.
//!
//! tRPC's `httpSubscriptionLink` reads `connected` first (its data a JSON object), treats
//! every data event as `tracked()` (so each carries its seq as the SSE id, resyncs too),
//! and resets its inactivity timer only on a dispatched `ping` event.

use std::time::Duration;

use bytes::Bytes;

use super::{ResyncReason, StreamEvent};

/// The keep-alive event. Browsers dispatch no event without a `data:` line, so the ping
/// carries an empty JSON object.
pub const PING: &[u8] = b"event: ping\ndata: {}\n\n";

/// A data event carrying `seq` as its SSE id.
pub fn event(seq: u64, event: &StreamEvent) -> Bytes {
    let json = match serde_json::to_string(event) {
        Ok(json) => json,
        // The events hold only strings and integers: serializing them cannot fail. Should
        // it, the client is told to refetch rather than given nothing.
        Err(error) => {
            tracing::error!(%error, seq, "could not encode a stream event; sending a resync");
            format!(r#"{{"kind":"resync","seq":{seq},"reason":"gap"}}"#)
        }
    };
    Bytes::from(format!("id: {seq}\ndata: {json}\n\n"))
}

/// A resync: a client that resumes from its id gets what followed.
pub fn resync(seq: u64, reason: ResyncReason) -> Bytes {
    event(seq, &StreamEvent::Resync { seq, reason })
}

/// tRPC's `serialized-error` event: the last one of a stream that ends in an error, its
/// data the error's shape as JSON (`{"code":…,"message":…,"data":{…}}`). The stock client
/// raises it to the subscriber, and reconnects only for server errors.
pub fn serialized_error(shape_json: &str) -> Bytes {
    Bytes::from(format!("event: serialized-error\ndata: {shape_json}\n\n"))
}

/// The event that opens every stream: clients reconnect when nothing (not even a ping)
/// arrived for `reconnect_after`.
pub fn connected(reconnect_after: Duration) -> Bytes {
    Bytes::from(format!(
        "event: connected\ndata: {{\"reconnectAfterInactivityMs\":{}}}\n\n",
        reconnect_after.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_is_a_tracked_event_with_its_seq() {
        let frame = resync(42, ResyncReason::Lagged);
        assert_eq!(&frame[..], &b"id: 42\ndata: {\"kind\":\"resync\",\"seq\":42,\"reason\":\"lagged\"}\n\n"[..]);
        assert_eq!(
            &connected(Duration::from_secs(30))[..],
            &b"event: connected\ndata: {\"reconnectAfterInactivityMs\":30000}\n\n"[..]
        );
    }
}
