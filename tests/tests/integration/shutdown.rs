//! Graceful shutdown with many open streams.

use std::time::{Duration, Instant};

use stalecast_tests::spawn_app;

#[tokio::test]
async fn shutdown_with_500_open_streams_finishes_within_2_seconds() {
    let app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..500 {
        let mut stream = app.stream("", None).await;
        stream.connected().await;
        streams.push(stream);
    }
    assert_eq!(app.app.bus.subscriber_count(), 500);
    let started = Instant::now();
    app.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    // Every stream was ended by the server, not left hanging.
    for stream in streams.iter_mut().take(20) {
        let mut ended = false;
        for _ in 0..10 {
            if stream.next_event(Duration::from_millis(500)).await.is_none() {
                ended = true;
                break;
            }
        }
        assert!(ended);
    }
}
