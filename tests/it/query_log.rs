//! The query log (`--query-log`) as a real server writes it: every record of an answer
//! (sixteen pool addresses when the zone asks for sixteen; static records as their rdata in
//! text) and the ECS scope the answer carried.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use pooldns::querylog::QueryLog;
use pooldns::reload::{Reloader, Sources};
use pooldns::server::{Listeners, ServerOptions};

use crate::harness::*;

#[tokio::test]
async fn logs_every_record_of_an_answer_and_the_ecs_scope() {
    let config = format!("{CONFIG}\n[answers]\nrecords = 16\naaaa = \"everywhere\"\n");
    let mut servers = Vec::new();
    for i in 1..=30u64 {
        let ip: &'static str = format!("192.0.2.{i}").leak();
        servers.push(s(
            i,
            ip,
            1000 * i as u32,
            ["gb", "de", "us"][i as usize % 3],
        ));
    }
    for i in 1..=20u64 {
        let ip: &'static str = format!("2001:db8::{i}").leak();
        servers.push(s(100 + i, ip, 1000, "jp"));
    }
    let logged = LoggedServer::start(&config, &feed_json(&servers)).await;

    let pool_a = logged.ask(query("@", RecordType::A)).await;
    let pool_aaaa = logged.ask(query("@", RecordType::AAAA)).await;
    let with_ecs = logged
        .ask(with_ecs(query("@", RecordType::A), "81.2.69.142", 32))
        .await;
    for (name, qtype) in [
        ("ns1", RecordType::A),
        ("www", RecordType::CNAME),
        ("@", RecordType::TXT),
        ("@", RecordType::MX),
        ("@", RecordType::SOA),
        ("@", RecordType::NS),
        ("_ntp._udp", RecordType::SRV),
    ] {
        logged.ask(query(name, qtype)).await;
    }
    let lines = logged.stop().await;
    assert_eq!(lines.len(), 10, "{lines:#?}");

    // Pool answers: all sixteen addresses, as sent.
    let answers = |line: &serde_json::Value| -> Vec<String> {
        line["answers"]
            .as_array()
            .unwrap_or_else(|| panic!("no answers in {line}"))
            .iter()
            .map(|a| a.as_str().expect("text").to_owned())
            .collect()
    };
    let texts =
        |m: &Message| -> Vec<String> { addresses(m).iter().map(IpAddr::to_string).collect() };
    assert_eq!(addresses(&pool_a).len(), 16);
    assert_eq!(answers(&lines[0]), texts(&pool_a));
    assert_eq!(addresses(&pool_aaaa).len(), 16);
    assert_eq!(answers(&lines[1]), texts(&pool_aaaa));

    // The scope the answer carried, and none without ECS.
    let (_, _, scope) = echoed_ecs(&with_ecs).expect("ECS echoed");
    assert!(scope > 0, "{scope}");
    assert_eq!(lines[2]["ecs"], "81.2.69.142/32");
    assert_eq!(lines[2]["scope"], u64::from(scope), "{}", lines[2]);
    assert_eq!(answers(&lines[2]), texts(&with_ecs));
    assert_eq!(lines[0]["scope"], serde_json::Value::Null, "{}", lines[0]);

    // Static records: their rdata as text.
    let statics: Vec<(String, Vec<String>)> = lines[3..]
        .iter()
        .map(|l| (l["qtype"].as_str().unwrap().to_owned(), answers(l)))
        .collect();
    let want = |qtype: &str, texts: &[&str]| {
        (
            qtype.to_owned(),
            texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        statics,
        [
            want("A", &["192.0.2.53"]),
            want("CNAME", &["www.example.net."]),
            want("TXT", &["hello"]),
            want("MX", &["0 ."]),
            want("SOA", &["ns1.pool.test. hostmaster.pool.test. 2026112201"]),
            want("NS", &["ns1.pool.test.", "ns2.example.net."]),
            want("SRV", &["0 0 123 pool.test."]),
        ]
    );
}

/// A server that writes a query log, its DNS address, and how to stop it.
struct LoggedServer {
    dns: SocketAddr,
    dir: tempfile::TempDir,
    log: Arc<QueryLog>,
    writer: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl LoggedServer {
    async fn start(config: &str, feed: &str) -> LoggedServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config_path, feed_path) = (
            dir.path().join("zone.toml"),
            dir.path().join("servers.json"),
        );
        std::fs::write(&config_path, config).expect("write config");
        std::fs::write(&feed_path, feed).expect("write feed");
        let reloader = Reloader::load(Sources {
            config: config_path,
            feed: feed_path,
            geoip: Some(repo(TEST_GEOIP)),
            ..Default::default()
        })
        .expect("load");
        let (log, writer) =
            QueryLog::start(&dir.path().join("queries.log"), 1 << 20).expect("query log");
        let metrics = Arc::new(pooldns::metrics::Metrics::with_query_log(Some(log.clone())));
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()]).expect("bind");
        let dns = listeners.udp_addrs()[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let table = reloader.table();
        let server = tokio::spawn(async move {
            pooldns::server::run(listeners, table, metrics, ServerOptions::default(), async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        LoggedServer {
            dns,
            dir,
            log,
            writer,
            stop,
            server,
        }
    }

    /// Asks over UDP; the log line of the answer is written before the reply is sent.
    async fn ask(&self, query: Message) -> Message {
        let bytes = raw_udp(
            self.dns,
            &query.to_vec().expect("encode"),
            std::time::Duration::from_secs(2),
        )
        .await
        .expect("no answer over UDP");
        Message::from_vec(&bytes).expect("answer parses")
    }

    /// Stops the server, lets the writer finish, and returns the log's lines.
    async fn stop(self) -> Vec<serde_json::Value> {
        let _ = self.stop.send(());
        self.server.await.expect("server task");
        self.log.close();
        tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .expect("join task")
            .expect("writer thread");
        std::fs::read_to_string(self.dir.path().join("queries.log"))
            .expect("read query log")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}
