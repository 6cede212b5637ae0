//! The harness itself: a server starts, answers over UDP and TCP, and stops.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let server = TestServer::start(&feed_json(&[
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
    ]))
    .await;
    let udp = server.udp(&query("0", RecordType::A)).await;
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&udp).len(), 2);
    let tcp = server.tcp(&query("0", RecordType::A)).await;
    assert_eq!(addresses(&tcp).len(), 2);
    server.stop().await;
}
