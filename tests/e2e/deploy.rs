//! `deploy/kubernetes/cronjob.yaml`: the manifest the README points schedulers at. No cluster
//! is reachable here, so the test checks what the docs rely on: the exit codes the Job refuses
//! to retry, every referenced key exists, and the pipeline it mounts passes `etl validate`
//! with exactly the environment the manifest gives the container.

use serde::Deserialize;
use serde_norway::Value;

use crate::util::*;

fn documents() -> Vec<Value> {
    let path = repo_path("deploy/kubernetes/cronjob.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
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
    let docs = documents();
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

    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"].as_sequence().unwrap().iter().map(str_of).collect();
    assert_eq!(args[0], "run");
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let key = args[1]
        .strip_prefix(&format!("{mount}/"))
        .unwrap_or_else(|| panic!("{} is not under the mount {mount}", args[1]));
    let pipelines = by_kind(
        &docs,
        "ConfigMap",
        pod["volumes"][0]["configMap"]["name"].as_str().unwrap(),
    );
    let pipeline = str_of(&pipelines["data"][key]);
    assert!(!pipeline.is_empty(), "the ConfigMap holds no {key}");

    // The container's environment, resolved from the ConfigMap and Secret it names.
    let mut env = Vec::new();
    for e in container["env"].as_sequence().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let from = &e["valueFrom"];
        let (kind, r, data) = if from["configMapKeyRef"].is_mapping() {
            ("ConfigMap", &from["configMapKeyRef"], "data")
        } else {
            ("Secret", &from["secretKeyRef"], "stringData")
        };
        let source = by_kind(&docs, kind, r["name"].as_str().unwrap());
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
}
