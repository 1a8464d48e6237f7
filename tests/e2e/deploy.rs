//! `deploy/`: the Kubernetes manifests and the Airflow DAG the README points schedulers at. No
//! cluster or Airflow is reachable here, so the tests check what the docs rely on: every
//! manifest passes the Kubernetes schema (`kubernetes-validate --strict`, installed by
//! `make test`), the exit codes the Jobs refuse to retry, every referenced key exists, the
//! pipeline each mounts passes `etl validate` with exactly the environment the manifest gives
//! the container; the DAG's planning and retry logic runs against the real binary.

use serde::Deserialize;
use serde_norway::Value;

use crate::util::*;

fn documents(file: &str) -> Vec<Value> {
    let path = repo_path(&format!("deploy/kubernetes/{file}"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Both manifests, for the resources one shares with the other (etl-config, etl-secrets).
fn all_documents() -> Vec<Value> {
    let mut docs = documents("cronjob.yaml");
    docs.extend(documents("indexed-job.yaml"));
    docs
}

fn by_kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifest"))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other).unwrap().trim().to_string(),
    }
}

#[test]
fn the_cronjob_mounts_a_valid_pipeline_and_retries_only_what_can_succeed() {
    let docs = documents("cronjob.yaml");
    let cron = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("CronJob"))
        .expect("a CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"));
    let job = &cron["spec"]["jobTemplate"]["spec"];
    let pod = &job["template"]["spec"];
    assert_eq!(
        pod["restartPolicy"].as_str(),
        Some("Never"),
        "podFailurePolicy needs Never"
    );

    let rules = job["podFailurePolicy"]["rules"]
        .as_sequence()
        .expect("podFailurePolicy rules");
    let fail = rules
        .iter()
        .find(|r| r["action"].as_str() == Some("FailJob"))
        .expect("a FailJob rule");
    assert_eq!(fail["onExitCodes"]["operator"].as_str(), Some("In"));
    let codes: Vec<u64> = fail["onExitCodes"]["values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(codes, [2, 4], "usage and permanent failures are not retried; 3 is");

    let args = validate_mounted_pipeline(&docs, pod);
    assert_eq!(args[0], "run");
}

/// Resolves the pod's first container's environment from the ConfigMaps and Secrets it names
/// (fieldRefs, which the cluster fills in, get a sample value), writes the pipeline it mounts,
/// and checks it with `etl validate`. Returns the container's args.
fn validate_mounted_pipeline(docs: &[Value], pod: &Value) -> Vec<String> {
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"].as_sequence().unwrap().iter().map(str_of).collect();
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let key = args[1]
        .strip_prefix(&format!("{mount}/"))
        .unwrap_or_else(|| panic!("{} is not under the mount {mount}", args[1]));
    let pipelines = by_kind(
        docs,
        "ConfigMap",
        pod["volumes"][0]["configMap"]["name"].as_str().unwrap(),
    );
    let pipeline = str_of(&pipelines["data"][key]);
    assert!(!pipeline.is_empty(), "the ConfigMap holds no {key}");

    let mut env = Vec::new();
    for e in container["env"].as_sequence().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let from = &e["valueFrom"];
        if from["fieldRef"].is_mapping() {
            env.push((name, "0".to_string()));
            continue;
        }
        let (kind, r, data) = if from["configMapKeyRef"].is_mapping() {
            ("ConfigMap", &from["configMapKeyRef"], "data")
        } else {
            ("Secret", &from["secretKeyRef"], "stringData")
        };
        let source = by_kind(docs, kind, r["name"].as_str().unwrap());
        let value = &source[data][r["key"].as_str().unwrap()];
        assert!(
            !value.is_null(),
            "{name}: {kind} {} has no key {}",
            r["name"].as_str().unwrap(),
            str_of(&r["key"])
        );
        env.push((name, str_of(value)));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(key);
    std::fs::write(&file, pipeline).unwrap();
    let res = etl(&["validate", file.to_str().unwrap()], &env);
    assert_eq!(res.status.code(), Some(0), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(String::from_utf8_lossy(&res.stderr).contains("parquet at s3://"));
    args
}

#[test]
fn the_indexed_job_gives_each_index_its_shard_and_retries_only_what_can_succeed() {
    let docs = all_documents();
    let job = docs.iter().find(|d| d["kind"].as_str() == Some("Job")).expect("a Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    assert_eq!(spec["podReplacementPolicy"].as_str(), Some("Failed"));
    assert!(spec["backoffLimitPerIndex"].as_u64().is_some_and(|n| n >= 1));
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n), "every shard at once");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));

    let rules = spec["podFailurePolicy"]["rules"].as_sequence().unwrap();
    let codes = |action: &str| -> Vec<u64> {
        rules
            .iter()
            .filter(|r| r["action"].as_str() == Some(action))
            .flat_map(|r| r["onExitCodes"]["values"].as_sequence().cloned().unwrap_or_default())
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        codes("FailIndex"),
        [2, 4],
        "usage and permanent failures are not retried"
    );
    assert_eq!(
        codes("Ignore"),
        [130],
        "an interrupted shard is retried without counting"
    );
    assert!(codes("FailJob").is_empty(), "one failed shard does not stop the others");

    let args = validate_mounted_pipeline(&docs, pod);
    assert_eq!(args[0], "run");
    let after = |flag: &str| {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        args[i + 1].clone()
    };
    assert_eq!(after("--shard"), format!("$(JOB_COMPLETION_INDEX)/{n}"));
    assert_eq!(
        after("--rate-share"),
        format!("1/{n}"),
        "N workers, 1/N of the budget each"
    );
    let env = pod["containers"][0]["env"].as_sequence().unwrap();
    assert!(
        env.iter().any(|e| e["name"].as_str() == Some("JOB_COMPLETION_INDEX")),
        "$(JOB_COMPLETION_INDEX) expands only from a declared variable"
    );
}

/// The path of a tool installed into the test venv next to its Python.
fn venv_tool(name: &str) -> std::path::PathBuf {
    test_python().parent().unwrap().join(name)
}

#[test]
fn every_manifest_passes_the_kubernetes_schema() {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let out = std::process::Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate (requirements-test.txt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in ["cronjob/etl-mail-delivery", "job/etl-cdn-backfill"] {
        assert!(text.contains(&format!("passed for resource {kind}")), "{text}");
    }
}

/// The Airflow DAG's logic (`deploy/airflow/etl_units.py`) against the real binary and the
/// simulator: the plan is the work list, each unit run alone loads exactly its day, a rerun
/// plan has nothing left, and a wrong token is a permanent failure (no retry).
#[test]
fn the_airflow_units_helper_plans_runs_and_classifies_failures() {
    let sim = Sim::start(&["--seed", "96", "--mail-rows-per-day", "400"]);
    let out = tempfile::tempdir().unwrap();
    let days = [days_ago(3), days_ago(2)];
    let script = r#"
import ast, json, os, sys
sys.path.insert(0, os.environ["AIRFLOW_DIR"])
import etl_units as u

pipeline, start, end = os.environ["PIPELINE"], os.environ["START"], os.environ["END"]
p = u.plan(pipeline, start, end)
todo = p.to_run()
assert todo == [f"mail_delivery-{d}" for d in os.environ["DAYS"].split(",")], todo
assert not p.budgets() and not p.lost, (p.budgets(), p.lost)
for unit in todo:
    u.run_unit(pipeline, start, end, unit)
assert u.plan(pipeline, start, end).to_run() == [], "all done"

# A fresh dataset, where the unit is not done yet, and a token the API refuses.
env = dict(os.environ, MAIL_DELIVERY_TOKEN="wrong-token", ETL_OUT=os.environ["OTHER_OUT"])
try:
    u.run_unit(pipeline, start, end, todo[0], env=env)
    raise SystemExit("a wrong token must fail")
except u.PermanentFailure as e:
    assert "exited 4" in str(e), e
try:
    u.run_unit(pipeline, start, end, "mail_delivery-2001-01-01")
    raise SystemExit("an unknown unit must fail")
except u.PermanentFailure as e:
    assert "exited 2" in str(e), e

# The DAG uses only what the helper defines, and parses.
tree = ast.parse(open(os.path.join(os.environ["AIRFLOW_DIR"], "etl_dag.py")).read())
names = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "etl_units" for a in n.names]
assert names and all(hasattr(u, n) for n in names), names
print("ok", json.dumps(todo))
"#;
    let other = tempfile::tempdir().unwrap();
    let start = format!("{}T00:00:00+00:00", days[0]);
    let end = format!("{}T00:00:00+00:00", days_ago(1));
    let day_list = days.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    let mut cmd = std::process::Command::new(test_python());
    cmd.args(["-c", script])
        .env("AIRFLOW_DIR", repo_path("deploy/airflow"))
        .env("ETL_BIN", etl_bin())
        .env("PIPELINE", repo_path("pipelines/mail.yaml"))
        .env("START", &start)
        .env("END", &end)
        .env("DAYS", &day_list)
        .env("OTHER_OUT", other.path());
    for (k, v) in mail_env(&sim, out.path()) {
        cmd.env(k, v);
    }
    let res = cmd.output().unwrap();
    assert!(
        res.status.success(),
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        summarize(&read_mail(&out.path().join("mail_delivery"))),
        truth_summary(&sim, &days),
        "the units run one by one load exactly the truth"
    );
}
