//! The Dataspace Protocol 2025-1 with real node processes: version discovery and the catalog
//! protocol as a DSP consumer sees them (a federation of two cities, one of them offering two
//! datasets), every answer checked against the specification's JSON schemas and expanded as
//! JSON-LD with its contexts (tests/reference/dsp_check.py, from ../shared/dsp/2025-1), and
//! every refusal answered with a schema-valid `CatalogError`.

use std::path::PathBuf;
use std::time::Duration;

use allmende_e2e::{AirSample, TestNode, air_city, federate, poll};
use serde_json::{Value, json};

const DSP_CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";
const DSPACE: &str = "https://w3id.org/dspace/2025/1/";

/// The DSP artifacts in ../shared, if present.
fn artifacts() -> Option<PathBuf> {
    let dir = allmende_e2e::manifest_dir().join("../../shared/dsp/2025-1");
    if dir.join("catalog/catalog-schema.json").is_file() {
        return Some(dir);
    }
    eprintln!(
        "skipping the schema checks: {} is absent (the DSP 2025-1 schemas and contexts)",
        dir.display()
    );
    None
}

/// Checks every (schema, document) with the reference checker; returns each document
/// expanded as JSON-LD (empty when the checker is unavailable).
fn check(checks: &[(&str, &Value)]) -> Vec<Value> {
    let python = allmende_e2e::python_with("jsonschema, pyld", "the schema checks");
    let (Some(dsp), Some(python)) = (artifacts(), python) else {
        return Vec::new();
    };
    use std::io::Write;
    let script = allmende_e2e::manifest_dir().join("reference/dsp_check.py");
    let request = json!({
        "dsp": dsp,
        "checks": checks.iter().map(|(s, d)| json!({"schema": s, "document": d})).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dsp_check.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dsp_check.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    for ((schema, doc), r) in checks.iter().zip(&results) {
        assert_eq!(r["errors"], json!([]), "{schema}: {doc:#}");
    }
    results.into_iter().map(|r| r["expanded"].clone()).collect()
}

/// A request to a node's DSP endpoint: status, headers and the JSON body.
fn dsp(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.request(method, format!("{}{path}", node.url));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().expect("request");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, headers, body)
}

fn catalog_request(node: &TestNode, query: &str, msg: &Value) -> (u16, Option<String>, Value) {
    let (status, headers, body) = dsp(
        node,
        reqwest::Method::POST,
        &format!("/dsp/2025-1/catalog/request{query}"),
        Some(msg.to_string()),
    );
    let link = headers
        .get("link")
        .map(|l| l.to_str().expect("ascii").to_owned());
    (status, link, body)
}

/// The `rel="next"` target of a `Link` header.
fn next(link: &Option<String>) -> Option<String> {
    link.as_deref()?.split(", ").find_map(|l| {
        let (target, rel) = l.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| target.trim_matches(['<', '>']).to_owned())
    })
}

#[test]
fn a_dsp_consumer_discovers_the_version_and_pages_through_the_catalog() {
    let (muenster, _) = air_city(
        "Stadt Münster",
        "05515",
        "127.0.0.51",
        "offer-aggregate-k5.jsonld",
    );
    let (wuerzburg, _) = air_city("Stadt Würzburg", "09663", "127.0.0.52", "offer-open.jsonld");
    muenster.import_air(&AirSample {
        slug: "air2",
        title: "Luftqualität Münster, zweite Messreihe",
        district_key: "05515",
        days: 1,
        stations: 2,
        conforms: false,
    });
    muenster.attach_policy("air2", "offer-open.jsonld");
    // Imported and with a policy, but not published: not offered.
    muenster.import_air(&AirSample {
        slug: "draft",
        title: "Entwurf",
        district_key: "05515",
        days: 1,
        stations: 1,
        conforms: false,
    });
    muenster.attach_policy("draft", "offer-open.jsonld");
    federate(&[&muenster, &wuerzburg], "regio");
    muenster.ok(&["dataset", "publish", "air"]);
    muenster.ok(&["dataset", "publish", "air2"]);
    wuerzburg.ok(&["dataset", "publish", "air"]);
    poll(
        "Würzburg's entry at Münster",
        Duration::from_secs(20),
        || (muenster.get("/api/v1/catalog?theme=ENVI")["total"] == 3).then_some(()),
        || muenster.get("/api/v1/catalog?theme=ENVI").to_string(),
    );

    // Version discovery, unauthenticated.
    let (status, _, versions) = dsp(
        &muenster,
        reqwest::Method::GET,
        "/.well-known/dspace-version",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(versions["protocolVersions"][0]["version"], "2025-1");
    assert_eq!(versions["protocolVersions"][0]["path"], "/dsp/2025-1");
    assert_eq!(versions["protocolVersions"][0]["binding"], "HTTPS");

    // The whole catalog, one dataset a page, following `Link: rel="next"`.
    let request = json!({"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"});
    let (status, link, first) = catalog_request(&muenster, "?limit=1", &request);
    assert_eq!(status, 200, "{first}");
    let mut pages = vec![first];
    let mut link = link;
    while let Some(target) = next(&link) {
        let query = target.trim_start_matches("/dsp/2025-1/catalog/request");
        let (status, l, page) = catalog_request(&muenster, query, &request);
        assert_eq!(status, 200, "{page}");
        assert!(
            l.as_deref().is_some_and(|l| l.contains("rel=\"previous\"")),
            "{l:?}"
        );
        pages.push(page);
        link = l;
        assert!(pages.len() <= 3, "the pages do not end");
    }
    assert_eq!(pages.len(), 2, "two offered datasets, one a page");
    let datasets: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["dataset"].as_array().expect("datasets"))
        .collect();
    let titles: Vec<&str> = datasets
        .iter()
        .map(|d| d["dct:title"].as_str().expect("title"))
        .collect();
    assert!(titles.contains(&"Luftqualität Stadt Münster"), "{titles:?}");
    assert!(
        titles.contains(&"Luftqualität Münster, zweite Messreihe"),
        "{titles:?}"
    );
    let did = muenster.get("/api/v1/node")["did"].clone();
    for page in &pages {
        assert_eq!(page["participantId"], did, "{page}");
        assert_eq!(
            page["service"][0]["endpointURL"],
            format!("{}/dsp/2025-1", muenster.url)
        );
    }
    // The aggregate-only offer, in DSP's ODRL profile.
    let air = datasets
        .iter()
        .find(|d| d["dct:title"] == "Luftqualität Stadt Münster")
        .expect("air");
    let offer = &air["hasPolicy"][0];
    assert_eq!(offer["@type"], "Offer");
    assert!(offer.get("target").is_none(), "{offer}");
    assert!(
        offer["@id"]
            .as_str()
            .is_some_and(|i| i.starts_with("urn:allmende:offer:")),
        "{offer}"
    );
    assert_eq!(air["distribution"][0]["format"], "HttpData-PULL");
    assert_eq!(
        air["distribution"][0]["accessService"],
        pages[0]["service"][0]["@id"]
    );
    // Würzburg as a catalog of its own, on the first page only.
    let members = pages[0]["catalog"].as_array().expect("member catalogs");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(
        members[0]["participantId"],
        wuerzburg.get("/api/v1/node")["did"]
    );
    assert_eq!(
        members[0]["service"][0]["endpointURL"],
        format!("{}/dsp/2025-1", wuerzburg.url)
    );
    assert!(pages[1].get("catalog").is_none());

    // One dataset by its id, and one that is not offered.
    let id = air["@id"].as_str().expect("id");
    let (status, _, one) = dsp(
        &muenster,
        reqwest::Method::GET,
        &format!("/dsp/2025-1/catalog/datasets/{id}"),
        None,
    );
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["@id"], id);
    assert_eq!(one["hasPolicy"], air["hasPolicy"]);
    let draft = muenster.get("/api/v1/datasets/draft")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _, missing) = dsp(
        &muenster,
        reqwest::Method::GET,
        &format!("/dsp/2025-1/catalog/datasets/urn:uuid:{draft}"),
        None,
    );
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["@type"], "CatalogError");

    // Refusals: a filter, messages that are not a CatalogRequestMessage, a body over the limit.
    let mut refusals = Vec::new();
    for (body, want) in [
        (json!({"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage", "filter": [{"x": 1}]}).to_string(), 400),
        (json!({"@context": [DSP_CONTEXT], "@type": "DatasetRequestMessage", "dataset": id}).to_string(), 400),
        (json!({"@type": "CatalogRequestMessage"}).to_string(), 400),
        ("{\"@context\": [".to_owned(), 400),
        (format!("{{\"@context\": [\"{DSP_CONTEXT}\"], \"@type\": \"CatalogRequestMessage\", \"x\": \"{}\"}}", "a".repeat(2 << 20)), 413),
    ] {
        let (status, _, error) = dsp(
            &muenster,
            reqwest::Method::POST,
            "/dsp/2025-1/catalog/request",
            Some(body.clone()),
        );
        assert_eq!(status, want, "{}: {error}", &body[..body.len().min(120)]);
        assert_eq!(error["@type"], "CatalogError", "{error}");
        refusals.push(error);
    }
    let (status, _, error) = catalog_request(&muenster, "?limit=0", &request);
    assert_eq!((status, &error["@type"]), (400, &json!("CatalogError")));

    // Every answer against the specification's schemas and contexts.
    let mut checks: Vec<(&str, &Value)> = vec![("common/protocol-version-schema.json", &versions)];
    for p in &pages {
        checks.push(("catalog/catalog-schema.json", p));
    }
    checks.push(("catalog/dataset-schema.json", &one));
    checks.push(("catalog/catalog-error-schema.json", &missing));
    for e in &refusals {
        checks.push(("catalog/catalog-error-schema.json", e));
    }
    let expanded = check(&checks);
    if let Some(catalog) = expanded.get(1) {
        // Expanded, the catalog says the same in full IRIs.
        let c = &catalog[0];
        assert_eq!(c["@type"][0], "http://www.w3.org/ns/dcat#Catalog", "{c:#}");
        assert_eq!(c[&format!("{DSPACE}participantId")][0]["@id"], did, "{c:#}");
        let ds = &c["http://www.w3.org/ns/dcat#dataset"][0];
        let policy = &ds["http://www.w3.org/ns/odrl/2/hasPolicy"][0];
        assert_eq!(
            policy["@type"][0], "http://www.w3.org/ns/odrl/2/Offer",
            "{ds:#}"
        );
        assert!(
            policy["http://www.w3.org/ns/odrl/2/permission"][0]["http://www.w3.org/ns/odrl/2/action"][0]["@id"]
                .as_str()
                .is_some_and(|a| a.starts_with("http://www.w3.org/ns/odrl/2/")),
            "{policy:#}"
        );
    }
}
