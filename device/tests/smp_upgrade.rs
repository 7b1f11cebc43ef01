//! The SMP server and the slot lifecycle in process, with request messages
//! built here byte by byte (header) and with minicbor (bodies), and every
//! response decoded independently of the server's encoder: a resumed upload
//! is staged but not active; test runs it on trial from the next reload;
//! an unconfirmed trial reverts at the reload after; confirm makes it
//! permanent; tampered, downgraded and mis-hashed uploads are refused and
//! the running model stays.

use minicbor::data::Type;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::smp_server::{Event, SmpServer, BUF_SIZE};
use tumorxai_device::state::StateDir;
use tumorxai_device::upgrade::Reloaded;

use crate::common::{demo_as, demo_key, repo};

/// CBOR → JSON (bytes as hex strings), for reading responses.
fn value(d: &mut Decoder) -> Value {
    match d.datatype().unwrap() {
        Type::Map => {
            let n = d.map().unwrap().unwrap();
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                let key = d.str().unwrap().to_string();
                map.insert(key, value(d));
            }
            Value::Object(map)
        }
        Type::Array => {
            let n = d.array().unwrap().unwrap();
            Value::Array((0..n).map(|_| value(d)).collect())
        }
        Type::String => json!(d.str().unwrap()),
        Type::Bytes => json!(hex::encode(d.bytes().unwrap())),
        Type::Bool => json!(d.bool().unwrap()),
        _ => json!(d.u64().unwrap()),
    }
}

struct Client {
    server: SmpServer,
    sequence: u8,
}

impl Client {
    fn new(state: &StateDir) -> Client {
        Client {
            server: SmpServer::new(state.clone(), ExecutionForm::auto(), || "test".into()),
            sequence: 0,
        }
    }

    /// Sends an SMP v2 request; the decoded response body and the event.
    fn call(&mut self, op: u8, group: u16, command: u8, body: &[u8]) -> (Value, Event) {
        self.sequence = self.sequence.wrapping_add(1);
        let mut message = vec![(1 << 3) | op, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&group.to_be_bytes());
        message.extend_from_slice(&[self.sequence, command]);
        message.extend_from_slice(body);
        let mut out = vec![0u8; BUF_SIZE];
        let handled = self.server.handle(&message, &mut out);
        let len = handled.response.expect("a response");
        let response = &out[..len];
        assert_eq!(response[0], (1 << 3) | (op + 1), "v2 response op");
        assert_eq!(response[6], self.sequence, "sequence echoed");
        let body_len = u16::from_be_bytes([response[2], response[3]]) as usize;
        assert_eq!(body_len, len - 8);
        (value(&mut Decoder::new(&response[8..])), handled.event)
    }

    fn state(&mut self) -> Value {
        self.call(0, 1, 0, &[]).0
    }

    fn upload_chunk(&mut self, image: &[u8], off: usize, size: usize) -> (Value, Event) {
        let mut buf = [0u8; 4096];
        let mut e = Encoder::new(Cursor::new(&mut buf[..]));
        let end = (off + size).min(image.len());
        if off == 0 {
            e.map(4).unwrap();
            e.str("len").unwrap().u64(image.len() as u64).unwrap();
            e.str("sha").unwrap().bytes(&Sha256::digest(image)).unwrap();
        } else {
            e.map(2).unwrap();
        }
        e.str("off").unwrap().u64(off as u64).unwrap();
        e.str("data").unwrap().bytes(&image[off..end]).unwrap();
        let n = e.writer().position();
        self.call(2, 1, 1, &buf[..n])
    }

    /// Uploads `image` from where the device says, `size` bytes a chunk,
    /// stopping after `chunks` chunks; the last response.
    fn upload(&mut self, image: &[u8], size: usize, chunks: usize) -> (Value, Event) {
        let mut last = self.upload_chunk(image, 0, size);
        for _ in 1..chunks {
            let Some(off) = last.0["off"].as_u64() else {
                return last;
            };
            if off as usize == image.len() {
                break;
            }
            last = self.upload_chunk(image, off as usize, size);
        }
        last
    }

    fn mark(&mut self, hash: Option<&[u8]>, confirm: bool) -> Value {
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(Cursor::new(&mut buf[..]));
        e.map(if hash.is_some() { 2 } else { 1 }).unwrap();
        if let Some(h) = hash {
            e.str("hash").unwrap().bytes(h).unwrap();
        }
        e.str("confirm").unwrap().bool(confirm).unwrap();
        let n = e.writer().position();
        self.call(2, 1, 0, &buf[..n]).0
    }
}

fn versions(state: &Value) -> Vec<(String, bool, bool, bool)> {
    state["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["version"].as_str().unwrap().to_string(),
                i["active"].as_bool().unwrap(),
                i["confirmed"].as_bool().unwrap(),
                i["pending"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn v(version: &str, active: bool, confirmed: bool, pending: bool) -> (String, bool, bool, bool) {
    (version.to_string(), active, confirmed, pending)
}

#[test]
fn an_smp_upgrade_is_staged_tested_reverted_and_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    std::fs::create_dir_all(state.trust_dir()).unwrap();
    std::fs::copy(
        repo().join("models/trust/demo-signing-key.pub.pem"),
        state.trust_dir().join("demo.pem"),
    )
    .unwrap();
    let key = demo_key();
    let current = demo_as("1.2.0", &key);
    state
        .install(&current, ExecutionForm::auto(), "t0")
        .unwrap();
    let newer = demo_as("1.3.0", &key);
    let newer_hash = Sha256::digest(&newer).to_vec();

    // Parameters and echo.
    let mut client = Client::new(&state);
    assert_eq!(
        client.call(0, 0, 6, &[]).0,
        json!({"buf_size": BUF_SIZE, "buf_count": 1})
    );
    assert_eq!(
        client.call(2, 0, 0, b"\xA1\x61d\x62hi").0,
        json!({"r": "hi"})
    );

    // Half an upload, then the device restarts: the client starts over at
    // offset 0 and is told where to go on.
    let (half, _) = client.upload(&newer, 1024, 5);
    assert_eq!(half["off"], json!(5 * 1024));
    let mut client = Client::new(&state);
    let (resumed, _) = client.upload_chunk(&newer, 0, 1024);
    assert_eq!(resumed["off"], json!(5 * 1024), "resumed where it stopped");
    let (done, event) = client.upload(&newer, 1024, usize::MAX);
    assert_eq!(done["off"], json!(newer.len()));
    assert_eq!(done["match"], json!(true));
    assert!(matches!(event, Event::Staged(ref info) if info.version == "1.3.0"));
    assert_eq!(
        versions(&client.state()),
        vec![
            v("1.2.0", true, true, false),
            v("1.3.0", false, false, false)
        ],
        "staged, not running"
    );

    // Sent again (its last answer lost, say): already staged, done.
    let (again, _) = client.upload_chunk(&newer, 0, 1024);
    assert_eq!(again, json!({"rc": 0, "off": newer.len(), "match": true}));

    // Test: pending; the next reload runs it on trial. Until the service
    // has loaded it, clients see it still pending and 1.2.0 running.
    client.mark(Some(&newer_hash), false);
    assert_eq!(versions(&client.state())[1], v("1.3.0", false, false, true));
    let (answer, event) = client.call(2, 0, 5, b"\xA0");
    assert_eq!(answer, json!({}), "reset answered");
    assert!(matches!(
        event,
        Event::Reset(Reloaded::Activated { trial: true, .. })
    ));
    assert_eq!(
        versions(&client.state()),
        vec![
            v("1.2.0", true, true, false),
            v("1.3.0", false, false, true)
        ]
    );
    // The same reset again (its answer lost) while the service loads the
    // trial: not a second reload, so the trial is not reverted.
    let (_, event) = client.call(2, 0, 5, b"\xA0");
    assert!(
        matches!(event, Event::Reset(Reloaded::Unchanged)),
        "{event:?}"
    );
    // Confirming what is shown running (the fallback) waits for the load.
    let fallback_hash = Sha256::digest(&current).to_vec();
    let refused = client.mark(Some(&fallback_hash), true);
    assert!(
        refused["rsn"].as_str().unwrap().contains("still loading"),
        "{refused}"
    );
    state.loaded().unwrap();
    assert_eq!(
        versions(&client.state()),
        vec![
            v("1.3.0", true, false, false),
            v("1.2.0", false, true, false)
        ]
    );
    // No upload may overwrite the fallback during a trial.
    let (refused, _) = client.upload_chunk(&demo_as("1.4.0", &key), 0, 512);
    assert_eq!(refused["rc"], json!(6), "{refused}");
    assert!(refused["rsn"].as_str().unwrap().contains("on trial"));
    // Not confirmed: the next reload (a reset once it runs) reverts.
    let (_, event) = client.call(2, 0, 5, b"\xA0");
    assert!(
        matches!(event, Event::Reset(Reloaded::Reverted { .. })),
        "{event:?}"
    );
    assert_eq!(versions(&client.state())[0], v("1.2.0", true, true, false));

    // A trial past its time limit reverts (serve --trial-seconds).
    client.mark(Some(&newer_hash), false);
    state.reload().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(state.expire_trial(now, 600).unwrap(), None, "not yet");
    assert!(state.expire_trial(now + 600, 600).unwrap().is_some());
    assert_eq!(versions(&client.state())[0], v("1.2.0", true, true, false));

    // Test again, reload, confirm before the service has loaded it: it is
    // confirmed by its load, its fallback kept until then.
    client.mark(Some(&newer_hash), false);
    state.reload().unwrap();
    client.mark(None, true);
    assert_eq!(
        versions(&client.state()),
        vec![
            v("1.2.0", true, true, false),
            v("1.3.0", false, false, true)
        ],
        "loading, confirmed in advance"
    );
    state.loaded().unwrap();
    assert_eq!(state.reload().unwrap(), Reloaded::Unchanged);
    assert_eq!(
        versions(&client.state()),
        vec![
            v("1.3.0", true, true, false),
            v("1.2.0", false, false, false)
        ]
    );

    // The replaced 1.2.0 is still in the other slot, but cannot come back.
    let old_hash = Sha256::digest(&current).to_vec();
    let refused = client.mark(Some(&old_hash), false);
    assert_eq!(refused["rc"], json!(6), "{refused}");
    assert!(refused["rsn"]
        .as_str()
        .unwrap()
        .contains("older than the confirmed"));

    // Refused uploads leave the running model and its fallback alone.
    let mut tampered = demo_as("1.4.0", &key);
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    for (name, image) in [
        ("tampered", tampered),
        ("downgrade", demo_as("1.1.0", &key)),
    ] {
        let (answer, event) = client.upload(&image, 2048, usize::MAX);
        assert!(answer["rc"].as_u64().unwrap_or(0) != 0, "{name}: {answer}");
        assert!(matches!(event, Event::Refused(_)), "{name}");
        assert_eq!(
            versions(&client.state()),
            vec![
                v("1.3.0", true, true, false),
                v("1.2.0", false, false, false)
            ],
            "{name}"
        );
    }
    // A hash that is not the announced one.
    let image = demo_as("1.5.0", &key);
    let mut first = client.upload_chunk(&image, 0, 1024);
    let mut wrong = image.clone();
    wrong[image.len() - 1] ^= 1;
    while first.0["off"].as_u64().unwrap() < image.len() as u64 {
        let off = first.0["off"].as_u64().unwrap() as usize;
        first = client.upload_chunk(&wrong, off, 2048);
    }
    assert_eq!(first.0["match"], json!(false));
    assert_eq!(versions(&client.state()).len(), 2);
    assert_eq!(versions(&client.state())[1].0, "1.2.0");

    // Confirmed in advance: it keeps a fallback until it has loaded once.
    let advance = demo_as("1.6.0", &key);
    let (done, _) = client.upload(&advance, 2048, usize::MAX);
    assert_eq!(done["match"], json!(true));
    client.mark(Some(&Sha256::digest(&advance)), true);
    assert!(matches!(
        state.reload().unwrap(),
        Reloaded::Activated { trial: true, .. }
    ));
    assert_eq!(versions(&client.state())[0], v("1.3.0", true, true, false));
    assert_eq!(versions(&client.state())[1], v("1.6.0", false, false, true));
    assert_eq!(client.state()["images"][1]["permanent"], json!(true));
    state.loaded().unwrap();
    assert_eq!(versions(&client.state())[0], v("1.6.0", true, true, false));
    assert_eq!(state.reload().unwrap(), Reloaded::Unchanged);

    // Erase empties the inactive slot only.
    client.call(2, 1, 5, &[]);
    assert_eq!(
        versions(&client.state()),
        vec![v("1.6.0", true, true, false)]
    );
}
