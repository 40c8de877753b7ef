use super::*;
use serde_json::json;

/// Yahoo! Shopping's item search, as `config/shops/yahoo.toml` declares it.
fn yahoo() -> Spec {
    serde_json::from_value(json!({
        "request": {
            "url": "https://shopping.yahooapis.jp/ShoppingWebService/V3/itemSearch",
            "query": {"query": "{keywords}", "results": "{limit}", "start": "{start}",
                      "sort": "{sort}", "price_from": "{min_price}", "price_to": "{max_price}"},
            "headers": {"accept": "application/json"}
        },
        "records": {"pointer": "/hits", "total": "/totalResultsAvailable"},
        "fields": {
            "id": "/code", "name": "/name", "price": "/price", "currency": {"value": "JPY"},
            "url": "/url", "image": "/image/medium", "seller": "/seller/name",
            "review_count": {"pointer": "/review/count", "default": 0},
            "review_average": "/review/rate", "in_stock": {"pointer": "/inStock", "default": true}
        },
        "sort": {"relevance": "-score", "price-asc": "+price", "price-desc": "-price"},
        "paging": {"max_limit": 100, "max_page": 10},
        "errors": [
            {"status": 403, "action": "rate-limited", "message": "/Error/Message"},
            {"status": "5xx", "action": "retry", "message": "/Error/Message"},
            {"status": [400, 401], "action": "fail", "message": "/Error/Message"}
        ]
    }))
    .expect("the Yahoo spec deserializes")
}

fn hit(price: serde_json::Value) -> serde_json::Value {
    json!({"code": "store_1", "name": "Green tea", "price": price, "url": "https://s.example/1",
           "image": {"medium": "https://i.example/1.jpg"}, "seller": {"name": "Store"},
           "review": {"count": 3, "rate": 4.5}, "inStock": false})
}

fn search(page: u32, min_price: Option<u64>) -> SearchInput {
    SearchInput {
        keywords: "green tea".into(),
        limit: 500,
        page,
        sort: "price-asc".into(),
        min_price,
        max_price: None,
    }
}

#[test]
fn the_yahoo_spec_is_good_and_builds_its_request() {
    let spec = yahoo();
    assert_eq!(spec.check(Role::Searcher), Vec::new());
    let request = spec
        .search_request(&search(3, Some(100)))
        .unwrap()
        .expect("page 3 is served");
    assert_eq!(
        request.url,
        "https://shopping.yahooapis.jp/ShoppingWebService/V3/itemSearch?price_from=100&query=green+tea&results=100&sort=%2Bprice&start=201"
    );
    assert_eq!(
        request.headers,
        [("accept".to_string(), "application/json".to_string())]
    );
    let without = spec.search_request(&search(1, None)).unwrap().unwrap();
    assert!(!without.url.contains("price_from"), "{}", without.url);
    assert!(without.url.contains("start=1&") || without.url.ends_with("start=1"));
    assert_eq!(
        spec.search_request(&search(11, None)).unwrap(),
        None,
        "past max_page"
    );
    let unsorted = SearchInput {
        sort: "review-count".into(),
        ..search(1, None)
    };
    let request = spec.search_request(&unsorted).unwrap().unwrap();
    assert!(
        !request.url.contains("sort="),
        "no mapping, no parameter: {}",
        request.url
    );
}

#[test]
fn records_map_onto_the_schema_with_defaults_and_fixed_values() {
    let spec = yahoo();
    let mut bare = hit(json!(1980));
    bare.as_object_mut().unwrap().remove("review");
    bare.as_object_mut().unwrap().remove("inStock");
    let body = json!({"totalResultsAvailable": 41, "hits": [hit(json!(1980)), bare]});
    let answer = spec
        .read_answer(
            Role::Searcher,
            200,
            "application/json; charset=utf-8",
            body.to_string().as_bytes(),
        )
        .expect("good answer");
    assert_eq!(answer.total, Some(41));
    let [full, bare] = &answer.records[..] else {
        panic!("{answer:?}")
    };
    assert_eq!(full["price"], FieldValue::Whole(1980));
    assert_eq!(full["currency"], FieldValue::Text("JPY".into()));
    assert_eq!(
        full["image"],
        FieldValue::Text("https://i.example/1.jpg".into())
    );
    assert_eq!(full["review_average"], FieldValue::Number(4.5));
    assert_eq!(full["in_stock"], FieldValue::Flag(false));
    assert_eq!(bare["review_count"], FieldValue::Whole(0), "the default");
    assert_eq!(bare["in_stock"], FieldValue::Flag(true));
    assert!(!bare.contains_key("review_average"), "optional and absent");
}

#[test]
fn a_changed_shape_names_the_record_and_field() {
    let spec = yahoo();
    let read = |body: serde_json::Value| {
        spec.read_answer(
            Role::Searcher,
            200,
            "application/json",
            body.to_string().as_bytes(),
        )
        .expect_err("bad shape")
    };
    let failure = read(json!({"hits": [hit(json!(1)), hit(json!("1,980円"))]}));
    assert_eq!(failure.kind, FailureKind::BadResponse);
    assert_eq!(
        failure.message,
        "/hits/1/price (fields.price): expected a whole number, found \"1,980円\""
    );
    let mut renamed = hit(json!(1));
    let price = renamed.as_object_mut().unwrap().remove("price").unwrap();
    renamed["itemPrice"] = price;
    assert_eq!(
        read(json!({"hits": [renamed]})).message,
        "/hits/0/price (fields.price): missing"
    );
    assert_eq!(
        read(json!({"items": []})).message,
        "\"/hits\" (records.pointer): missing"
    );
    assert_eq!(
        read(json!({"hits": {}})).message,
        "\"/hits\" (records.pointer): not an array"
    );
    let html = spec
        .read_answer(
            Role::Searcher,
            200,
            "text/html",
            b"<html>maintenance</html>",
        )
        .expect_err("html");
    assert_eq!(html.kind, FailureKind::BadResponse);
    assert!(
        html.message.contains("with text/html, not JSON"),
        "{html:?}"
    );
}

#[test]
fn error_rules_decide_in_order_then_the_status_class() {
    let spec = yahoo();
    let body = br#"{"Error": {"Message": "Your Request was Forbidden"}}"#;
    let limited = spec
        .read_answer(Role::Searcher, 403, "application/json", body)
        .unwrap_err();
    assert_eq!(limited.kind, FailureKind::RateLimited);
    assert_eq!(
        limited.message,
        "the upstream answered 403: Your Request was Forbidden"
    );
    let down = spec
        .read_answer(Role::Searcher, 503, "application/json", b"{}")
        .unwrap_err();
    assert_eq!(
        (down.kind, down.message.as_str()),
        (FailureKind::Transient, "the upstream answered 503")
    );
    assert_eq!(
        spec.read_answer(Role::Searcher, 401, "application/json", body)
            .unwrap_err()
            .kind,
        FailureKind::Permanent
    );
    assert_eq!(
        spec.read_answer(Role::Searcher, 429, "text/plain", b"")
            .unwrap_err()
            .kind,
        FailureKind::RateLimited,
        "no rule: 429 is rate-limited"
    );
    let mut ignoring = yahoo();
    ignoring.errors.insert(
        0,
        ErrorRule {
            status: Some(StatusMatch::One(404)),
            body_contains: None,
            action: ErrorAction::Ignore,
            message: None,
        },
    );
    assert_eq!(
        ignoring
            .read_answer(Role::Searcher, 404, "text/html", b"")
            .unwrap(),
        Answer::default()
    );
}

#[test]
fn every_mistake_is_reported_at_its_field() {
    let mut spec = yahoo();
    spec.request.url = "https://{host}/search".into();
    spec.request.query.insert("q".into(), "{keyword}".into());
    spec.records.pointer = "hits".into();
    spec.records.next = Some("/next".into());
    spec.fields.insert(
        "colour".into(),
        FieldSource {
            pointer: Some("/colour".into()),
            ..FieldSource::default()
        },
    );
    spec.fields.remove("url");
    spec.fields.insert(
        "seller".into(),
        FieldSource {
            pointer: Some("/a~2b".into()),
            ..FieldSource::default()
        },
    );
    spec.sort.insert("cheapest".into(), "+price".into());
    spec.paging.max_limit = 0;
    spec.errors.push(ErrorRule {
        status: None,
        body_contains: None,
        action: ErrorAction::Fail,
        message: None,
    });
    let problems: Vec<(String, String)> = spec
        .check(Role::Searcher)
        .into_iter()
        .map(|p| (p.field, p.message))
        .collect();
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "request.url",
            "request.query.q",
            "request.url",
            "records.pointer",
            "records.next",
            "fields.colour",
            "fields.seller",
            "fields",
            "sort.cheapest",
            "paging.max_limit",
            "errors[3]"
        ],
        "{problems:#?}"
    );
    assert!(
        problems[1].1.contains("unknown placeholder {keyword}"),
        "{problems:?}"
    );
    assert!(
        problems[5]
            .1
            .contains("the product schema has no field \"colour\""),
        "{problems:?}"
    );
    assert!(problems[7].1.contains("needs \"url\""), "{problems:?}");
}

#[test]
fn a_poller_follows_its_cursor_and_maps_items() {
    let spec: Spec = serde_json::from_value(json!({
        "request": {"url": "https://api.example/feed", "query": {"user": "{target}", "after": "{cursor}"}},
        "records": {"pointer": "/data", "next": "/meta/next"},
        "fields": {"id": "/id", "title": "/title", "categories": "/tags", "authors": "/by"},
        "paging": {"max_pages": 3}
    }))
    .unwrap();
    assert_eq!(spec.check(Role::Poller), Vec::new());
    assert_eq!(
        spec.poll_request("u1", None).unwrap().url,
        "https://api.example/feed?user=u1"
    );
    assert_eq!(
        spec.poll_request("u1", Some("c2")).unwrap().url,
        "https://api.example/feed?after=c2&user=u1"
    );
    let body = json!({"data": [{"id": 7, "title": "t", "tags": ["a", "b"], "by": "me"}], "meta": {"next": "c2"}});
    let answer = spec
        .read_answer(
            Role::Poller,
            200,
            "application/json",
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(answer.next.as_deref(), Some("c2"));
    assert_eq!(answer.records[0]["id"], FieldValue::Text("7".into()));
    assert_eq!(
        answer.records[0]["categories"],
        FieldValue::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        answer.records[0]["authors"],
        FieldValue::List(vec!["me".into()])
    );
    let mut searcher_fields = spec.clone();
    searcher_fields.fields.insert(
        "price".into(),
        FieldSource {
            pointer: Some("/p".into()),
            ..FieldSource::default()
        },
    );
    assert!(
        searcher_fields
            .check(Role::Poller)
            .iter()
            .any(|p| p.field == "fields.price")
    );
}

#[test]
fn an_answer_with_more_records_than_the_cap_is_refused() {
    let spec = yahoo();
    let many: Vec<serde_json::Value> = (0..=MAX_RECORDS).map(|_| hit(json!(1))).collect();
    let failure = spec
        .read_answer(
            Role::Searcher,
            200,
            "application/json",
            json!({"hits": many}).to_string().as_bytes(),
        )
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::BadResponse);
    assert!(
        failure.message.contains("1001 records, more than 1000"),
        "{failure:?}"
    );
}
