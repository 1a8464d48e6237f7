//! Test helpers: start the simulator, run `etl`, read a dataset back, fingerprint records.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, TimestampMicrosecondType, UInt16Type};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Days, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

pub fn etl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_etl")
}

/// The Python of the project's test venv (`make test` sets `ETL_TEST_PYTHON`; it has duckdb, moto
/// and kubernetes-validate).
pub fn test_python() -> PathBuf {
    std::env::var_os("ETL_TEST_PYTHON")
        .expect("ETL_TEST_PYTHON is not set: run the suite with `make test`, which installs the tools into .venv")
        .into()
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub fn days_ago(n: u64) -> NaiveDate {
    today() - Days::new(n)
}

/// A running simulator, killed on drop.
pub struct Sim {
    child: Child,
    pub base: String,
    pub truth: Value,
    _dir: tempfile::TempDir,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let truth_path = dir.path().join("truth.json");
        let mut child = Command::new(etl_bin())
            .args(["sim", "--port", "0", "--mail-token", "sim-mail-token", "--truth"])
            .arg(&truth_path)
            .args(args)
            .env("ETL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start etl sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "unexpected simulator banner: {line:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let truth = loop {
            if let Ok(text) = std::fs::read_to_string(&truth_path)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                break v;
            }
            assert!(Instant::now() < deadline, "the simulator wrote no truth file");
            std::thread::sleep(Duration::from_millis(20));
        };
        Sim {
            child,
            base,
            truth,
            _dir: dir,
        }
    }

    pub fn mail_url(&self) -> String {
        format!("{}/mail-delivery/", self.base)
    }

    /// `GET /_sim/stats`.
    pub fn stats(&self) -> Value {
        self.get_json("/_sim/stats")
    }

    /// `POST path` with an empty body; returns the JSON answer.
    pub fn post_json(&self, path: &str) -> Value {
        self.request_json("POST", path)
    }

    /// A JSON document from the simulator, over a raw socket (no HTTP client needed).
    pub fn get_json(&self, path: &str) -> Value {
        self.request_json("GET", path)
    }

    fn request_json(&self, method: &str, path: &str) -> Value {
        let addr = self.base.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let body = resp.split_once("\r\n\r\n").unwrap().1;
        // Tolerate a chunked body: the JSON object is between the first `{` and the last `}`.
        let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
        serde_json::from_str(json).unwrap()
    }

    /// The ground truth of one day of the mail delivery API.
    pub fn mail_day(&self, day: NaiveDate) -> &Value {
        &self.truth["mail_delivery"]["days"][day.format("%Y-%m-%d").to_string()]
    }

    /// The latest mail day at least `back` days ago that has `sent` records. The simulator leaves about
    /// one day in twelve empty, so a test that needs records must not pick a fixed `days_ago(n)`: which
    /// day that is changes with the date the suite runs on.
    pub fn mail_day_with_records(&self, back: u64) -> NaiveDate {
        (back..back + 30)
            .map(days_ago)
            .find(|&d| self.mail_day(d)["sent"].as_u64().is_some_and(|n| n > 0))
            .expect("a mail day with sent records within 30 days")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for `pipelines/mail.yaml` against `sim`, writing under `out`.
pub fn mail_env(sim: &Sim, out: &Path) -> Vec<(String, String)> {
    vec![
        ("MAIL_DELIVERY_URL".into(), sim.mail_url()),
        ("MAIL_DELIVERY_TOKEN".into(), "sim-mail-token".into()),
        ("ETL_OUT".into(), out.display().to_string()),
        // For the commands that do not go through `etl_command` (a pseudo-terminal, the Airflow helper).
        ("ETL_SETTLE".into(), "0s".into()),
    ]
}

pub fn etl(args: &[&str], env: &[(String, String)]) -> Output {
    let out = etl_command(args, env).output().expect("run etl");
    eprintln!(
        "--- etl {} -> {:?}\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn etl_command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(etl_bin());
    // The bundled pipelines settle for `${ETL_SETTLE:-1h}`: with the default, yesterday would still be
    // provisional in the first hour after midnight UTC, and a test expecting it final would fail by the
    // clock. The simulator's days are complete the moment they end, so the suite settles for nothing; a
    // test about settling sets its own `settle:` (or ETL_SETTLE in `env`, which comes after this).
    cmd.args(args).env("ETL_LOG", "info").env("ETL_SETTLE", "0s");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// One mail delivery record read back from Parquet, with the `dt` of the folder it was in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MailRow {
    pub dt: String,
    pub line: String,
    pub result: String,
}

/// Every `.parquet` file under `root`, sorted.
pub fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

pub fn read_batches(file: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(file).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Reads a mail delivery dataset back into canonical Log lines (the simulator's fingerprint
/// input: `date time result status txid sender recipient detail`).
pub fn read_mail(root: &Path) -> Vec<MailRow> {
    let mut rows = Vec::new();
    for file in parquet_files(root) {
        let dt = file
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("dt="))
            .unwrap_or_else(|| panic!("{} is not inside a dt= folder", file.display()))
            .to_string();
        for b in read_batches(&file) {
            let ts = b
                .column_by_name("delivered_at")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            let result = b.column_by_name("result").unwrap().as_dictionary::<Int8Type>();
            let result_values = result.values().as_string::<i32>();
            let status = b.column_by_name("status_code").unwrap().as_primitive::<UInt16Type>();
            let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
            let (txid, sender, recipient, detail) = (s("transaction_id"), s("sender"), s("recipient"), s("detail"));
            for i in 0..b.num_rows() {
                let t = DateTime::<Utc>::from_timestamp_micros(ts.value(i)).unwrap();
                let r = result_values.value(result.keys().value(i) as usize).to_string();
                rows.push(MailRow {
                    dt: dt.clone(),
                    line: format!(
                        "{} {r} {} {} {} {} {}",
                        t.format("%Y-%m-%d %H:%M:%S"),
                        status.value(i),
                        txid.value(i),
                        sender.value(i),
                        recipient.value(i),
                        detail.value(i)
                    ),
                    result: r,
                });
                assert!(!ts.is_null(i));
            }
        }
    }
    rows
}

pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Per day: rows, rows per result, order-independent fingerprint (the simulator's definition).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DaySummary {
    pub rows: u64,
    pub per_result: BTreeMap<String, u64>,
    pub fingerprint: String,
}

pub fn summarize(rows: &[MailRow]) -> BTreeMap<String, DaySummary> {
    let mut sums: BTreeMap<String, (u64, BTreeMap<String, u64>, u64)> = BTreeMap::new();
    for r in rows {
        let e = sums.entry(r.dt.clone()).or_default();
        e.0 += 1;
        *e.1.entry(r.result.clone()).or_default() += 1;
        e.2 = e.2.wrapping_add(fnv1a64(&r.line));
    }
    sums.into_iter()
        .map(|(dt, (rows, per_result, fp))| {
            (
                dt,
                DaySummary {
                    rows,
                    per_result,
                    fingerprint: format!("{fp:016x}"),
                },
            )
        })
        .collect()
}

/// The truth of `days` in the same shape as [`summarize`] (days without rows are left out,
/// since they produce no file).
pub fn truth_summary(sim: &Sim, days: &[NaiveDate]) -> BTreeMap<String, DaySummary> {
    let mut out = BTreeMap::new();
    for d in days {
        let t = sim.mail_day(*d);
        let rows = t["rows"].as_u64().unwrap_or_else(|| panic!("no truth for {d}: {t}"));
        if rows == 0 {
            continue;
        }
        let per_result = ["sent", "retry", "faild"]
            .iter()
            .filter_map(|r| t[r].as_u64().filter(|n| *n > 0).map(|n| (r.to_string(), n)))
            .collect();
        out.insert(
            d.format("%Y-%m-%d").to_string(),
            DaySummary {
                rows,
                per_result,
                fingerprint: t["fingerprint"].as_str().unwrap().to_string(),
            },
        );
    }
    out
}

/// Path, size and content hash of every file under `root` (for "changes no file").
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
                });
                let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.insert(p, (bytes.len() as u64, h, mtime));
            }
        }
    }
    out
}

/// Every data file must belong to a committed unit's manifest; nothing staged may remain.
pub fn assert_no_stray_files(dataset: &Path) {
    let mut listed = std::collections::BTreeSet::new();
    let manifests = std::fs::read_dir(dataset.join("_etl/manifests")).into_iter().flatten();
    for e in manifests {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        for f in m["files"].as_array().unwrap() {
            listed.insert(dataset.join(f["path"].as_str().unwrap()));
        }
    }
    for f in parquet_files(dataset) {
        assert!(listed.contains(&f), "{} is not part of any committed unit", f.display());
    }
    for (p, _) in snapshot(dataset) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.contains('#'), "staging file left behind: {}", p.display());
    }
}

/// A column value as canonical text: strings (plain or dictionary), integers, timestamps as
/// epoch microseconds, `-` for null.
pub fn cell_text(col: &arrow_array::ArrayRef, i: usize) -> String {
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    use arrow_schema::DataType;
    if col.is_null(i) {
        return "-".into();
    }
    match col.data_type() {
        DataType::Dictionary(key, _) if **key == DataType::Int8 => {
            let d = col.as_dictionary::<Int8Type>();
            d.values()
                .as_string::<i32>()
                .value(d.keys().value(i) as usize)
                .to_string()
        }
        DataType::Dictionary(..) => {
            let d = col.as_dictionary::<Int32Type>();
            d.values()
                .as_string::<i32>()
                .value(d.keys().value(i) as usize)
                .to_string()
        }
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Timestamp(..) => col.as_primitive::<TimestampMicrosecondType>().value(i).to_string(),
        other => panic!("unexpected column type {other}"),
    }
}

/// Per `dt` folder: rows, rows per value of `group_col`, and the wrapping FNV-1a sum of the
/// canonical text of `columns` (joined by U+001F) — the simulators' fingerprint.
pub fn fingerprint_by_day(
    root: &Path,
    columns: &[&str],
    group_col: &str,
) -> BTreeMap<String, (u64, BTreeMap<String, u64>, String)> {
    let mut acc: BTreeMap<String, (u64, BTreeMap<String, u64>, u64)> = BTreeMap::new();
    for file in parquet_files(root) {
        let dt = file
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("dt="))
            .unwrap_or_else(|| panic!("{} is not inside a dt= folder", file.display()))
            .to_string();
        let e = acc.entry(dt).or_default();
        for b in read_batches(&file) {
            let cols: Vec<&arrow_array::ArrayRef> = columns
                .iter()
                .map(|c| b.column_by_name(c).unwrap_or_else(|| panic!("no column {c}")))
                .collect();
            let group = b.column_by_name(group_col).unwrap();
            for i in 0..b.num_rows() {
                let text: Vec<String> = cols.iter().map(|c| cell_text(c, i)).collect();
                e.0 += 1;
                *e.1.entry(cell_text(group, i)).or_default() += 1;
                e.2 = e.2.wrapping_add(fnv1a64(&text.join("\u{1f}")));
            }
        }
    }
    acc.into_iter()
        .map(|(dt, (rows, groups, fp))| (dt, (rows, groups, format!("{fp:016x}"))))
        .collect()
}

/// Asserts that `a` and `b` hold the same Parquet files (by relative path) with the same decoded
/// content: the same schema and rows, in the same order. (Their bytes may differ where the
/// writer cut data pages at other batch boundaries.)
pub fn assert_same_parquet_content(a: &Path, b: &Path) {
    let files = |root: &Path| -> BTreeMap<PathBuf, Vec<RecordBatch>> {
        parquet_files(root)
            .into_iter()
            .map(|f| {
                let file = std::fs::File::open(&f).unwrap();
                // One batch per file (or per million rows), whatever the writer's row groups.
                let batches = ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .with_batch_size(1 << 20)
                    .build()
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                (f.strip_prefix(root).unwrap().to_path_buf(), batches)
            })
            .collect()
    };
    let (fa, fb) = (files(a), files(b));
    assert!(!fa.is_empty(), "no Parquet file under {}", a.display());
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (path, batches) in &fa {
        assert!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "{} is empty",
            path.display()
        );
        assert!(batches == &fb[path], "{} differs between the two runs", path.display());
    }
}
