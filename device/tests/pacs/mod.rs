//! The device against a real PACS: Orthanc (Debian package `orthanc`),
//! started by each test on free loopback ports with its own configuration
//! and storage folder, the device registered as one of its modalities.
//! dcmtk's `storescu` plays the scanner, dicom3tools' `dciodvfy` and
//! dcmtk's `dsrdump` validate the results, pydicom reads them
//! (tests/tools/check_results.py). The tests' own plumbing is here; the
//! scenarios are in the sibling files.

mod results_files;
mod round_trip;
mod store_and_forward;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub use crate::common::{free_port, repo, wait_until};

/// The fake patient of tests/tools/make_dicom_set.py: never in a log.
pub const PATIENT: [&str; 2] = ["DOE^JANE", "PID-4711-SECRET"];

/// Whether the PACS tools are installed; in CI (TUMORXAI_REQUIRE_TOOLS)
/// their absence fails the test rather than skipping it.
pub fn tools_present() -> bool {
    let missing: Vec<&str> = ["storescu", "dciodvfy", "dsrdump"]
        .into_iter()
        .filter(|tool| Command::new(tool).arg("-h").output().is_err())
        .chain(orthanc_binary().is_none().then_some("Orthanc"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
        "{missing:?} required in CI: run `bash .ci/setup`"
    );
    eprintln!("{missing:?} not installed: skipped");
    false
}

fn orthanc_binary() -> Option<PathBuf> {
    ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A series written by tests/tools/make_series.py.
pub struct Series {
    pub study_instance_uid: String,
    pub files: Vec<PathBuf>,
    pub sop_instance_uids: Vec<String>,
}

pub fn make_series(count: usize, dir: &Path) -> Series {
    let status = Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/make_series.py"))
        .arg(count.to_string())
        .arg(dir)
        .status()
        .expect("running make_series.py; run `bash .ci/setup`");
    assert!(status.success());
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.join("series.json")).unwrap()).unwrap();
    let slices = record["slices"].as_array().unwrap();
    Series {
        study_instance_uid: record["study_instance_uid"].as_str().unwrap().into(),
        files: slices
            .iter()
            .map(|s| dir.join(s["file"].as_str().unwrap()))
            .collect(),
        sop_instance_uids: slices
            .iter()
            .map(|s| s["sop_instance_uid"].as_str().unwrap().into())
            .collect(),
    }
}

/// One Orthanc server, stopped when dropped.
pub struct Orthanc {
    child: Child,
    pub http_port: u16,
}

/// One instance as Orthanc files it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub sop_class_uid: String,
    pub instance_number: String,
    pub series_description: String,
    /// The AE title that sent it (Orthanc's metadata).
    pub remote_aet: String,
}

impl Orthanc {
    /// Starts Orthanc in `dir` with the device (`device_ae`@127.0.0.1:
    /// `device_port`) as modality "device"; `extra` is merged into its
    /// configuration (e.g. the DICOM TLS options).
    pub fn start(dir: &Path, dicom_port: u16, device: (&str, u16), extra: Value) -> Orthanc {
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let http_port = free_port();
        let mut config = json!({
            "Name": "tumorxai-test",
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
            "DicomModalities": { "device": [device.0, "127.0.0.1", device.1] },
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                config.insert(key.clone(), value.clone());
            }
        }
        let config_path = dir.join("orthanc.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = dir.join("orthanc.log");
        let child = Command::new(orthanc_binary().expect("Orthanc installed"))
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting Orthanc");
        let orthanc = Orthanc { child, http_port };
        wait_until("Orthanc answers", Duration::from_secs(60), || {
            ureq::get(orthanc.url("/system")).call().is_ok()
        });
        orthanc
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn get_text(&self, path: &str) -> String {
        ureq::get(self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path)).unwrap()
    }

    pub fn file(&self, id: &str) -> Vec<u8> {
        ureq::get(self.url(&format!("/instances/{id}/file")))
            .call()
            .unwrap()
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let text = ureq::post(self.url(path))
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Orthanc's id of a study, if it holds it.
    pub fn study_id(&self, study_instance_uid: &str) -> Option<String> {
        let found = self.post(
            "/tools/find",
            &json!({"Level": "Study", "Query": {"StudyInstanceUID": study_instance_uid}}),
        );
        found.as_array()?.first()?.as_str().map(String::from)
    }

    /// Every instance of a study, with what the tests look at.
    pub fn study_instances(&self, study_instance_uid: &str) -> Vec<Instance> {
        let Some(study) = self.study_id(study_instance_uid) else {
            return Vec::new();
        };
        let ids = self.get(&format!("/studies/{study}/instances"));
        ids.as_array()
            .unwrap()
            .iter()
            .map(|instance| {
                let id = instance["ID"].as_str().unwrap().to_string();
                let tags = self.get(&format!("/instances/{id}/simplified-tags"));
                let text = |name: &str| tags[name].as_str().unwrap_or_default().to_string();
                Instance {
                    sop_class_uid: text("SOPClassUID"),
                    instance_number: text("InstanceNumber"),
                    series_description: text("SeriesDescription"),
                    remote_aet: self.get_text(&format!("/instances/{id}/metadata/RemoteAET")),
                    id,
                }
            })
            .collect()
    }

    /// How many instances Orthanc holds in all.
    pub fn instance_count(&self) -> u64 {
        self.get("/statistics")["CountInstances"].as_u64().unwrap()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `tumorxai-device serve`, killed (SIGKILL: no clean shutdown) when
/// dropped or [`Device::kill`]ed. Its folders live under `root`.
pub struct Device {
    child: Child,
    pub root: PathBuf,
}

impl Device {
    pub fn start(root: &Path, args: &[String]) -> Device {
        std::fs::create_dir_all(root.join("inbox")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("device.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
            .current_dir(repo())
            .args(["serve", "--poll-ms", "50", "--settle-ms", "100"])
            .arg("--inbox")
            .arg(root.join("inbox"))
            .arg("--outbox")
            .arg(root.join("outbox"))
            .arg("--audit")
            .arg(root.join("audit"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .args(["--device-serial", "TEST-0001"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Device {
            child,
            root: root.to_path_buf(),
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("device.log")).unwrap_or_default()
    }

    /// The JSON answers in the outbox.
    pub fn answers(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(self.root.join("outbox")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }

    /// The answer for the slice with this SOP Instance UID.
    pub fn answer_for(&self, sop_instance_uid: &str) -> Option<Value> {
        self.answers()
            .into_iter()
            .find(|a| a["dicom"]["source"]["sop_instance_uid"] == sop_instance_uid)
    }

    /// The audit log's entries.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.root.join("audit/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Audit entries of one delivery event ("queued", "sent", ...).
    pub fn deliveries(&self, event: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["outcome"] == "delivery" && e["event"] == event)
            .collect()
    }

    /// No patient identifier in the log, the audit or the answers' names.
    pub fn assert_no_identifiers(&self) {
        let audit = std::fs::read_to_string(self.root.join("audit/audit.jsonl")).unwrap();
        for text in [self.log(), audit] {
            for id in PATIENT {
                assert!(!text.contains(id), "{id} leaked:\n{text}");
            }
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dcmtk's storescu as `calling` towards `called`@127.0.0.1:`port`, with
/// `extra` options (e.g. `+tls`); its exit status and output.
pub fn storescu(
    calling: &str,
    called: &str,
    port: u16,
    extra: &[&str],
    files: &[PathBuf],
) -> (bool, String) {
    let output = Command::new("storescu")
        .args(extra)
        .args(["-aet", calling, "-aec", called, "127.0.0.1"])
        .arg(port.to_string())
        .args(files)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

/// Copies `files` into the device's inbox as a gateway would drop them
/// (written under a hidden name, then renamed).
pub fn drop_into_inbox(device: &Device, files: &[PathBuf]) {
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let hidden = device.root.join("inbox").join(format!(".{name}.part"));
        std::fs::copy(file, &hidden).unwrap();
        std::fs::rename(&hidden, device.root.join("inbox").join(name)).unwrap();
    }
}

/// dciodvfy's findings: its "Error" lines (warnings allowed).
fn dciodvfy_errors(file: &Path) -> Vec<String> {
    let output = Command::new("dciodvfy").arg(file).output().unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter(|l| l.starts_with("Error"))
        .map(String::from)
        .collect()
}
