//! The dashboard over HTTP from a fake fleet (`common::Fake`): each endpoint's JSON checked against
//! the schema the served OpenAPI document gives for that response, the errors, the page and its
//! assets, the bounds; and, with `ROTA_BROWSER=1`, the page in headless chromium (`browser/check.mjs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::{Fake, Server, DEVICE_2_BOOTS};
use rota_dashboard::http::REQUEST_TIMEOUT;
use rota_dashboard::Source;
use serde_json::{json, Value};

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

fn get(server: &Server, path: &str) -> Answer {
    answer(agent().get(&server.url(path)).call().expect("GET answered"))
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Answer {
        status: response.status().as_u16(),
        content_type,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

fn json_of(answer: &Answer) -> Value {
    assert_eq!(answer.content_type, "application/json", "{}", answer.body);
    serde_json::from_str(&answer.body).expect("the body is JSON")
}

fn served_openapi(server: &Server) -> Value {
    let doc = get(server, "/api/openapi.json");
    assert_eq!(doc.status, 200);
    json_of(&doc)
}

/// Every object schema of the document, made closed (`additionalProperties: false`), so that a
/// field the API returns but the document does not describe fails the check too.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The JSON Schema of the `status` answer of `GET path` in the OpenAPI document, its
/// `#/components/...` references resolving within it.
fn response_validator(doc: &Value, path: &str, status: u16) -> jsonschema::Validator {
    let schema = &doc["paths"][path]["get"]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(schema.is_object(), "no schema for GET {path} {status}");
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
        "allOf": [schema.clone()],
    });
    close_objects(&mut root);
    jsonschema::validator_for(&root).expect("the document's schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_valid(doc: &Value, path: &str, status: u16, instance: &Value) {
    let errors = schema_errors(&response_validator(doc, path, status), instance);
    assert!(errors.is_empty(), "GET {path} {status}: {errors:?}");
}

fn fake_server() -> (Arc<Fake>, Server) {
    let fake = Arc::new(Fake::default());
    let server = Server::start(fake.clone());
    (fake, server)
}

#[test]
fn devices_are_the_sources_and_match_their_schema() {
    let (fake, server) = fake_server();
    let doc = served_openapi(&server);
    let answer = get(&server, "/api/devices");
    assert_eq!(answer.status, 200);
    let devices = json_of(&answer);
    assert_eq!(
        devices,
        serde_json::to_value(fake.devices().unwrap()).unwrap()
    );
    let ids: Vec<u64> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(devices[1]["rollbacks"]["count"], 1);
    assert_eq!(
        devices[1]["rollbacks"]["last"],
        "generation 2 -> 1 (app panicked)"
    );
    assert_valid(&doc, "/api/devices", 200, &devices);
}

#[test]
fn the_schema_check_fails_a_wrong_answer() {
    let (_fake, server) = fake_server();
    let doc = served_openapi(&server);
    let validator = response_validator(&doc, "/api/devices", 200);
    let mut devices = json_of(&get(&server, "/api/devices"));
    assert!(schema_errors(&validator, &devices).is_empty());

    let good = devices.clone();
    devices[0].as_object_mut().unwrap().remove("id");
    assert_eq!(schema_errors(&validator, &devices).len(), 1, "missing id");
    devices = good.clone();
    devices[0]["protocol"] = json!(3);
    assert_eq!(schema_errors(&validator, &devices).len(), 1, "protocol 3");
    devices = good.clone();
    devices[1]["rollbacks"]["count"] = json!("one");
    assert_eq!(schema_errors(&validator, &devices).len(), 1, "count text");
    devices = good;
    devices[2]["colour"] = json!("red");
    assert_eq!(
        schema_errors(&validator, &devices).len(),
        1,
        "unknown field"
    );
}

#[test]
fn a_device_history_matches_its_schema() {
    let (fake, server) = fake_server();
    let doc = served_openapi(&server);
    let answer = get(&server, "/api/devices/2");
    assert_eq!(answer.status, 200);
    let history = json_of(&answer);
    assert_eq!(
        history,
        serde_json::to_value(fake.device(2).unwrap().unwrap()).unwrap()
    );
    let boots = history["boots"].as_array().unwrap();
    assert_eq!(boots.len(), DEVICE_2_BOOTS);
    assert_eq!(boots[0]["nonce"], 10, "oldest first");
    assert_eq!(boots[4]["phases"][3]["name"], "app");
    assert_eq!(boots[4]["phases"][3]["heap_peak"], 4096 * 4 + 128 * 4);
    assert_valid(&doc, "/api/devices/{id}", 200, &history);
    // A luaOTA device: a boot without phases.
    let luaota = json_of(&get(&server, "/api/devices/1"));
    assert_eq!(luaota["boots"][0]["phases"], json!([]));
    assert_valid(&doc, "/api/devices/{id}", 200, &luaota);
}

#[test]
fn rollouts_match_their_schema() {
    let (_fake, server) = fake_server();
    let doc = served_openapi(&server);
    let answer = get(&server, "/api/rollouts");
    assert_eq!(answer.status, 200);
    let rollouts = json_of(&answer);
    assert_eq!(rollouts[0]["id"], "7");
    assert_eq!(rollouts[0]["steps"], json!([5, 25, 100]));
    assert_eq!(rollouts[0]["progress"]["confirmed"], 7);
    assert_eq!(rollouts[1]["status"], "halted: 1 rollback of 1 update");
    assert_valid(&doc, "/api/rollouts", 200, &rollouts);
}

#[test]
fn the_openapi_document_describes_the_api() {
    let (_fake, server) = fake_server();
    let doc = served_openapi(&server);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/api/devices",
        "/api/devices/{id}",
        "/api/rollouts",
        "/api/openapi.json",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    for schema in [
        "Device",
        "DeviceHistory",
        "Boot",
        "Phase",
        "Rollout",
        "Progress",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "no schema {schema}"
        );
    }
}

#[test]
fn an_unknown_device_is_a_json_404() {
    let (_fake, server) = fake_server();
    let doc = served_openapi(&server);
    let answer = get(&server, "/api/devices/99");
    assert_eq!(answer.status, 404);
    let error = json_of(&answer);
    assert_eq!(error, json!({"error": "no device 99 in the fleet"}));
    assert_valid(&doc, "/api/devices/{id}", 404, &error);
}

#[test]
fn an_id_that_is_not_a_number_is_a_json_400() {
    let (_fake, server) = fake_server();
    let doc = served_openapi(&server);
    for (id, why) in [
        ("abc", "invalid digit found in string"),
        ("-1", "invalid digit found in string"),
        (
            "18446744073709551616",
            "number too large to fit in target type",
        ),
    ] {
        let answer = get(&server, &format!("/api/devices/{id}"));
        assert_eq!(answer.status, 400, "{id}");
        let error = json_of(&answer);
        assert_eq!(
            error["error"],
            format!("device id \"{id}\" is not a number (an unsigned 64-bit integer): {why}")
        );
        assert_valid(&doc, "/api/devices/{id}", 400, &error);
    }
    // A long id is echoed by its first 40 characters only.
    let long = "x".repeat(5000);
    let error = json_of(&get(&server, &format!("/api/devices/{long}")));
    assert!(error["error"]
        .as_str()
        .unwrap()
        .starts_with(&format!("device id \"{}\" is not", "x".repeat(40))));
}

#[test]
fn other_paths_and_methods_are_json_errors() {
    let (_fake, server) = fake_server();
    let answer = get(&server, "/api/nothing");
    assert_eq!(answer.status, 404);
    assert_eq!(
        json_of(&answer),
        json!({"error": "no page or endpoint at /api/nothing"})
    );
    let post = answer_of_post(&server, "/api/devices");
    assert_eq!(post.status, 405);
    assert_eq!(
        json_of(&post),
        json!({"error": "method POST not allowed: the dashboard answers GET only"})
    );
}

fn answer_of_post(server: &Server, path: &str) -> Answer {
    answer(
        agent()
            .post(&server.url(path))
            .send("{}")
            .expect("POST answered"),
    )
}

#[test]
fn a_failing_source_is_a_json_500() {
    let server = Server::start(Arc::new(Fake {
        fail: Some("database is locked".into()),
        ..Fake::default()
    }));
    for path in ["/api/devices", "/api/devices/2", "/api/rollouts"] {
        let answer = get(&server, path);
        assert_eq!(answer.status, 500, "{path}");
        assert_eq!(
            json_of(&answer),
            json!({"error": "device state: database is locked"})
        );
    }
}

#[test]
fn the_page_and_its_assets_are_served_with_their_types() {
    let (_fake, server) = fake_server();
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/");
    for (path, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        (
            "/dashboard.js",
            "dashboard.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "favicon.svg", "image/svg+xml"),
    ] {
        let answer = get(&server, path);
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.content_type, content_type, "{path}");
        let on_disk = std::fs::read_to_string(format!("{assets}{file}")).unwrap();
        assert_eq!(answer.body, on_disk, "{path} is the embedded {file}");
    }
    let page = get(&server, "/").body;
    assert!(page.contains(r#"<script src="/dashboard.js" defer></script>"#));
    assert!(page.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
    assert!(page.contains(r#"data-testid="fleet-table""#));
}

#[test]
fn requests_beyond_the_in_flight_bound_are_refused_at_once() {
    let (fake, server) = fake_server();
    let closed = fake.gate.close();
    let url = server.url("/api/devices");
    let held: Vec<_> = (0..rota_dashboard::http::MAX_IN_FLIGHT)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || answer(agent().get(&url).call().unwrap()))
        })
        .collect();
    fake.gate
        .wait_for_waiting(rota_dashboard::http::MAX_IN_FLIGHT);
    let refused = get(&server, "/api/rollouts");
    assert_eq!(refused.status, 503);
    assert_eq!(
        json_of(&refused)["error"],
        format!(
            "busy: {} requests already in flight, try again",
            rota_dashboard::http::MAX_IN_FLIGHT
        )
    );
    drop(closed);
    for thread in held {
        assert_eq!(thread.join().unwrap().status, 200);
    }
    assert_eq!(get(&server, "/api/rollouts").status, 200);
}

#[test]
fn a_request_past_its_time_is_a_json_503() {
    let (fake, server) = fake_server();
    let closed = fake.gate.close();
    let started = std::time::Instant::now();
    let answer = get(&server, "/api/devices");
    let took = started.elapsed();
    drop(closed);
    assert_eq!(answer.status, 503);
    assert_eq!(
        json_of(&answer),
        json!({"error": format!("the request took longer than {} s", REQUEST_TIMEOUT.as_secs())})
    );
    assert!(
        took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT * 2,
        "{took:?}"
    );
    assert_eq!(get(&server, "/api/devices").status, 200);
}

/// A raw HTTP/1.1 exchange on one connection, so the test controls when connections open and close.
fn raw_get(stream: &mut TcpStream, path: &str) -> String {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn connections_beyond_the_bound_wait_until_one_closes() {
    let (_fake, server) = fake_server();
    let max = rota_dashboard::http::MAX_CONNECTIONS;
    let mut open: Vec<TcpStream> = (0..max)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Each of those is accepted (answers on it), so the server holds `max` connections.
    let mut first = open.remove(0);
    assert!(raw_get(&mut first, "/api/rollouts").starts_with("HTTP/1.1 200"));
    drop(first);
    open.push(TcpStream::connect(server.addr).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = TcpStream::connect(server.addr).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        waiting,
        "GET /api/rollouts HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut byte = [0u8; 1];
    let err = waiting
        .read(&mut byte)
        .expect_err("not answered while the bound is reached");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    drop(open.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    waiting.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Runs `browser/check.mjs` against `server` with `args`; `None` unless `ROTA_BROWSER=1`.
fn browser_check(server: &Server, args: &[&str]) -> Option<std::process::Output> {
    if std::env::var_os("ROTA_BROWSER").is_none_or(|v| v != "1") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the browser check: make test sets ROTA_BROWSER=1 after make browser-setup"
        );
        eprintln!("the browser check runs with ROTA_BROWSER=1 (after make browser-setup)");
        return None;
    }
    let browser = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
    let output = std::process::Command::new("node")
        .current_dir(browser)
        .args(["check.mjs", "--url", &server.url("")])
        .args(args)
        .output()
        .expect("node runs (make browser-setup)");
    Some(output)
}

/// The page in a real browser: `browser/check.mjs` drives Debian's headless chromium against the
/// dashboard served from the fake fleet, and reports the page's weight and first paint.
#[test]
fn the_page_in_headless_chromium() {
    let (_fake, server) = fake_server();
    let boots = DEVICE_2_BOOTS.to_string();
    let screenshot = std::env::var("ROTA_SCREENSHOT").ok();
    let mut args = vec![
        "--devices",
        "1,2,3",
        "--device",
        "2",
        "--boots",
        &boots,
        "--rollout",
        "7",
    ];
    if let Some(file) = &screenshot {
        args.extend(["--screenshot", file]);
    }
    let Some(output) = browser_check(&server, &args) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check.mjs failed: {stdout}{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!("browser check: {report}");
    assert_eq!(report["devices"], 3);
    // Four phases, heap peak and stack peak each.
    assert_eq!(report["plot_series"], 8);
    let resources = report["page_resources"].as_object().unwrap();
    let total: u64 = resources.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(report["page_bytes"].as_u64().unwrap(), total);
    assert!(total > (include_str!("../assets/dashboard.js").len() as u64));
    assert!(report["first_contentful_paint_ms"].as_f64().unwrap() > 0.0);
}

/// The browser check fails, naming each thing missing, when the page does not show what it is
/// told to expect.
#[test]
fn the_browser_check_names_what_is_missing() {
    let (_fake, server) = fake_server();
    let args = [
        "--devices",
        "1,2,9",
        "--device",
        "2",
        "--boots",
        "4",
        "--rollout",
        "99",
    ];
    let Some(output) = browser_check(&server, &args) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "device 9 is not in the fleet table",
        r#"plot series "app heap peak" has 5 points, not 4"#,
        r#"plot series "init stack peak" has 5 points, not 4"#,
        "the boots table has 5 rows, not 4",
        "rollout 99 is not in /api/rollouts",
    ] {
        assert!(stderr.contains(problem), "{problem:?} not in {stderr}");
    }
    assert!(!stderr.contains("device 1 "), "{stderr}");
}
