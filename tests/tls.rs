//! The build's one HTTPS client (rustls over `ring`, `src/aws.rs`) really speaks TLS to an
//! `https://` endpoint. Every other test talks to moto over plain HTTP, so without this
//! one a client that could not open TLS connections at all (a missing crypto provider,
//! a connector without TLS) would pass them all and fail only in AWS.

mod common;

use std::io::Read;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

#[tokio::test]
async fn the_aws_client_opens_an_https_endpoint_with_a_tls_client_hello() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("address");
    // The first bytes of the first connection; the listener closes after it, so the
    // SDK's retry is refused rather than left waiting.
    let seen = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the client connects");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut hello = [0u8; 6];
        stream.read_exact(&mut hello).map(|()| hello)
    });
    let config = common::moto::fast_sdk_config(&format!("https://{addr}")).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let answer = client.get_item().table_name("flags").key("key", AttributeValue::S("k".into())).send().await;
    assert!(answer.is_err(), "nothing here answers TLS");
    let hello = seen.join().expect("the listener thread").expect("the client sent a first record");
    // A TLS record of type handshake (22), a 3.x record version, then a ClientHello (1).
    assert_eq!((hello[0], hello[1], hello[5]), (22, 3, 1), "not a TLS ClientHello: {hello:?}");
}
