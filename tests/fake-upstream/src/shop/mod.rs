//! Fake shop product-search APIs on 127.0.0.1, shaped like the real ones, for the search
//! fan-out's tests and benchmark.
//!
//! - [`ShopApi::Rakuten`]: Rakuten Ichiba Item Search, `GET /services/api/IchibaItem/Search/20220601`
//!   with `applicationId`, `keyword`, `hits` (1–30), `page` (1–100), `sort` (`standard`,
//!   `+itemPrice`, `-itemPrice`, `-reviewCount`, `-reviewAverage`), `minPrice`, `maxPrice`,
//!   `formatVersion=2` (the flat `Items` array). Errors are Rakuten's `{"error", "error_description"}`:
//!   400 `wrong_parameter`, 429 `too_many_requests`, 503 `service_unavailable`.
//! - [`ShopApi::Yahoo`]: Yahoo! Shopping `GET /ShoppingWebService/V3/itemSearch` with `appid`,
//!   `query`, `results` (1–100), `start` (1–1000), `sort` (`-score`, `+price`, `-price`,
//!   `-review_count`), `price_from`, `price_to`; `hits` with `name`, `code`, `price`, `url`,
//!   `image.medium`, `review.{count,rate}`, `seller.name`, `inStock`. Errors are
//!   `{"Error": {"Message"}}`; over the limit is 403.
//!
//! Each application id may make one request per [`ShopServerConfig::min_interval`] (1 s, as
//! the real APIs allow); an earlier one is refused (429 / 403) and counted in
//! [`ShopStats::over_limit`]. `GET /health` answers the probes, outside the limit. The catalogue
//! is deterministic in the keyword, so a test knows what to expect. Misbehaviour is switched at
//! run time ([`ShopMode`]): maintenance (503, `/health` too), HTML error pages with status 200,
//! a changed shape, slow answers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which real API the server imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShopApi {
    Rakuten,
    Yahoo,
}

impl ShopApi {
    /// The search path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Rakuten => "/services/api/IchibaItem/Search/20220601",
            Self::Yahoo => "/ShoppingWebService/V3/itemSearch",
        }
    }

    fn app_id_param(self) -> &'static str {
        match self {
            Self::Rakuten => "applicationId",
            Self::Yahoo => "appid",
        }
    }
}

/// How the shop answers now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShopMode {
    #[default]
    Normal,
    /// 503 with the API's maintenance body, `/health` included.
    Maintenance,
    /// 200 with an HTML error page (as a proxy in front of a broken API answers).
    Html200,
    /// The price field renamed (`itemPrice` → `price` at Rakuten, `price` → `itemPrice` at Yahoo).
    RenamedPrice,
    /// The price as a string (`"1,980円"`).
    PriceAsString,
}

#[derive(Clone, Debug)]
pub struct ShopServerConfig {
    pub api: ShopApi,
    /// Application ids the shop accepts; any other is refused (400 / 401).
    pub app_ids: Vec<String>,
    /// The least time between two requests of one application id.
    pub min_interval: Duration,
    /// Products per keyword before the price filter (at most 300).
    pub products_per_keyword: u32,
}

impl ShopServerConfig {
    pub fn new(api: ShopApi, app_id: &str) -> Self {
        Self {
            api,
            app_ids: vec![app_id.to_string()],
            min_interval: Duration::from_secs(1),
            products_per_keyword: 120,
        }
    }
}

/// What the shop saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShopStats {
    /// Requests on the search path (every answer).
    pub searches: u64,
    /// Search requests answered 200 with products.
    pub answered: u64,
    /// Search requests refused for coming within `min_interval` of the last one.
    pub over_limit: u64,
    /// Requests to `/health`.
    pub health: u64,
    /// Search requests answered with a maintenance 503.
    pub maintenance: u64,
    /// Search requests without a valid application id.
    pub bad_app_id: u64,
}

#[derive(Default)]
struct Counters {
    searches: AtomicU64,
    answered: AtomicU64,
    over_limit: AtomicU64,
    health: AtomicU64,
    maintenance: AtomicU64,
    bad_app_id: AtomicU64,
}

struct Shared {
    config: ShopServerConfig,
    base_url: String,
    mode: Mutex<ShopMode>,
    delay: Mutex<Duration>,
    last_request: Mutex<HashMap<String, Instant>>,
    counters: Counters,
}

/// A running fake shop; stops when dropped.
pub struct ShopServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ShopServer {
    /// Binds 127.0.0.1:0 on the current tokio runtime.
    pub async fn start(config: ShopServerConfig) -> anyhow::Result<ShopServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            base_url: format!("http://{addr}"),
            mode: Mutex::new(ShopMode::Normal),
            delay: Mutex::new(Duration::ZERO),
            last_request: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let answering = Arc::clone(&shared);
        let task = tokio::spawn(crate::accept::serve_each(listener, move |request| {
            let shared = Arc::clone(&answering);
            async move { handle(&shared, &request).await }
        }));
        Ok(ShopServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The search endpoint's URL.
    pub fn search_url(&self) -> String {
        format!("{}{}", self.shared.base_url, self.shared.config.api.path())
    }

    /// The probe endpoint's URL.
    pub fn health_url(&self) -> String {
        format!("{}/health", self.shared.base_url)
    }

    pub fn set_mode(&self, mode: ShopMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    pub fn stats(&self) -> ShopStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ShopStats {
            searches: get(&c.searches),
            answered: get(&c.answered),
            over_limit: get(&c.over_limit),
            health: get(&c.health),
            maintenance: get(&c.maintenance),
            bad_app_id: get(&c.bad_app_id),
        }
    }

    /// The products the shop holds for `keyword`, in its own (relevance) order, before any
    /// filter: what a test expects back.
    pub fn catalogue(&self, keyword: &str) -> Vec<CatalogueProduct> {
        catalogue(&self.shared.config, keyword)
    }
}

impl Drop for ShopServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One product of the fake catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogueProduct {
    pub code: String,
    pub name: String,
    pub price: u64,
    pub review_count: u32,
    /// Tenths: 0–50.
    pub review_tenths: u32,
    pub in_stock: bool,
    pub seller: String,
}

fn catalogue(config: &ShopServerConfig, keyword: &str) -> Vec<CatalogueProduct> {
    let seed = fnv(keyword.as_bytes()) ^ fnv(format!("{:?}", config.api).as_bytes());
    let shop = match config.api {
        ShopApi::Rakuten => "rakuten",
        ShopApi::Yahoo => "yahoo",
    };
    (0..config.products_per_keyword.min(300))
        .map(|index| {
            let h = splitmix(seed ^ u64::from(index));
            let seller = format!("{shop}-store-{}", h % 7);
            CatalogueProduct {
                code: format!("{}:{:x}", seller, h & 0xffff_ffff),
                name: format!("{keyword} {shop} item {index}"),
                price: 100 + (h >> 8) % 30_000,
                review_count: u32::try_from((h >> 24) % 500).unwrap_or(0),
                review_tenths: u32::try_from((h >> 40) % 51).unwrap_or(0),
                in_stock: !(h >> 50).is_multiple_of(10),
                seller,
            }
        })
        .collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

type Answer = Response<Full<Bytes>>;

async fn handle(shared: &Shared, request: &Request<Incoming>) -> Answer {
    let api = shared.config.api;
    let mode = *lock(&shared.mode);
    let delay = *lock(&shared.delay);
    if request.uri().path() == "/health" {
        bump(&shared.counters.health);
        return if mode == ShopMode::Maintenance {
            maintenance(api)
        } else {
            json_answer(StatusCode::OK, &json!({"status": "ok"}))
        };
    }
    if request.uri().path() != api.path() {
        return error(api, StatusCode::NOT_FOUND, "not_found", "not found");
    }
    bump(&shared.counters.searches);
    let params: HashMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let app_id = params.get(api.app_id_param()).cloned().unwrap_or_default();
    if !shared.config.app_ids.contains(&app_id) {
        bump(&shared.counters.bad_app_id);
        return match api {
            ShopApi::Rakuten => error(
                api,
                StatusCode::BAD_REQUEST,
                "wrong_parameter",
                "specify valid applicationId",
            ),
            ShopApi::Yahoo => error(
                api,
                StatusCode::UNAUTHORIZED,
                "",
                "Your Request was Forbidden. appid is invalid",
            ),
        };
    }
    {
        let now = Instant::now();
        let mut last = lock(&shared.last_request);
        let early = last
            .get(&app_id)
            .is_some_and(|at| now.duration_since(*at) < shared.config.min_interval);
        if early {
            bump(&shared.counters.over_limit);
            return match api {
                ShopApi::Rakuten => error(
                    api,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "number of allowed requests has been exceeded for this API. please try again soon.",
                ),
                ShopApi::Yahoo => error(
                    api,
                    StatusCode::FORBIDDEN,
                    "",
                    "Your Request was Forbidden. Rate limit exceeded",
                ),
            };
        }
        last.insert(app_id, now);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match mode {
        ShopMode::Maintenance => {
            bump(&shared.counters.maintenance);
            return maintenance(api);
        }
        ShopMode::Html200 => {
            let mut answer = Response::new(Full::new(Bytes::from_static(
                b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>\
                  Sorry, the service is temporarily unavailable.</h1></body></html>",
            )));
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return answer;
        }
        _ => {}
    }
    match search(shared, &params, mode) {
        Ok(body) => {
            bump(&shared.counters.answered);
            json_answer(StatusCode::OK, &body)
        }
        Err(message) => match api {
            ShopApi::Rakuten => error(api, StatusCode::BAD_REQUEST, "wrong_parameter", &message),
            ShopApi::Yahoo => error(api, StatusCode::BAD_REQUEST, "", &message),
        },
    }
}

fn number(params: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, String> {
    match params.get(name) {
        None => Ok(default),
        Some(value) => value
            .parse()
            .map_err(|_| format!("{name} parameter is not valid")),
    }
}

fn search(
    shared: &Shared,
    params: &HashMap<String, String>,
    mode: ShopMode,
) -> Result<Value, String> {
    let api = shared.config.api;
    let (keyword_param, size_param, max_size) = match api {
        ShopApi::Rakuten => ("keyword", "hits", 30),
        ShopApi::Yahoo => ("query", "results", 100),
    };
    let keyword = params
        .get(keyword_param)
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| format!("{keyword_param} parameter is not valid"))?;
    let size = number(
        params,
        size_param,
        if api == ShopApi::Rakuten { 30 } else { 20 },
    )?;
    if size == 0 || size > max_size {
        return Err(format!("{size_param} parameter is not valid"));
    }
    let (min_param, max_param) = match api {
        ShopApi::Rakuten => ("minPrice", "maxPrice"),
        ShopApi::Yahoo => ("price_from", "price_to"),
    };
    let min = number(params, min_param, 0)?;
    let max = number(params, max_param, u64::MAX)?;
    let mut products: Vec<CatalogueProduct> = catalogue(&shared.config, keyword)
        .into_iter()
        .filter(|p| p.price >= min && p.price <= max)
        .collect();
    let sort = params.get("sort").map_or("", String::as_str);
    match (api, sort) {
        (_, "+itemPrice" | "+price") => products.sort_by_key(|p| p.price),
        (_, "-itemPrice" | "-price") => products.sort_by_key(|p| std::cmp::Reverse(p.price)),
        (_, "-reviewCount" | "-review_count") => {
            products.sort_by_key(|p| std::cmp::Reverse(p.review_count));
        }
        (ShopApi::Rakuten, "-reviewAverage") => {
            products.sort_by_key(|p| std::cmp::Reverse(p.review_tenths));
        }
        (ShopApi::Rakuten, "" | "standard") | (ShopApi::Yahoo, "" | "-score") => {}
        _ => return Err("sort parameter is not valid".to_string()),
    }
    let total = products.len() as u64;
    let size = usize::try_from(size).unwrap_or(30);
    let start = match api {
        ShopApi::Rakuten => {
            let page = number(params, "page", 1)?;
            if !(1..=100).contains(&page) {
                return Err("page parameter is not valid".to_string());
            }
            usize::try_from(page - 1).unwrap_or(0) * size
        }
        ShopApi::Yahoo => {
            let start = number(params, "start", 1)?;
            if !(1..=1000).contains(&start) {
                return Err("start parameter is not valid".to_string());
            }
            usize::try_from(start - 1).unwrap_or(0)
        }
    };
    let page: Vec<&CatalogueProduct> = products.iter().skip(start).take(size).collect();
    let base = &shared.base_url;
    Ok(match api {
        ShopApi::Rakuten => json!({
            "count": total,
            "page": start / size + 1,
            "first": start + 1,
            "last": start + page.len(),
            "hits": page.len(),
            "carrier": 0,
            "pageCount": total.div_ceil(size as u64),
            "Items": page.iter().map(|p| rakuten_item(p, base, mode)).collect::<Vec<_>>(),
            "GenreInformation": [],
            "TagInformation": [],
        }),
        ShopApi::Yahoo => json!({
            "totalResultsAvailable": total,
            "totalResultsReturned": page.len(),
            "firstResultsPosition": start + 1,
            "request": {"query": keyword},
            "hits": page.iter().enumerate()
                .map(|(i, p)| yahoo_hit(p, start + i + 1, base, mode)).collect::<Vec<_>>(),
        }),
    })
}

fn price_value(price: u64, mode: ShopMode) -> Value {
    if mode == ShopMode::PriceAsString {
        json!(format!("{price}円"))
    } else {
        json!(price)
    }
}

fn rakuten_item(p: &CatalogueProduct, base: &str, mode: ShopMode) -> Value {
    let (shop_code, item_id) = p.code.split_once(':').unwrap_or((&p.code, ""));
    let mut item = json!({
        "itemName": p.name,
        "catchcopy": "",
        "itemCode": p.code,
        "itemPrice": price_value(p.price, mode),
        "itemCaption": format!("{} の説明", p.name),
        "itemUrl": format!("{base}/item/{shop_code}/{item_id}/"),
        "shopUrl": format!("{base}/shop/{shop_code}/"),
        "smallImageUrls": [format!("{base}/img/{item_id}.jpg?_ex=64x64")],
        "mediumImageUrls": [format!("{base}/img/{item_id}.jpg?_ex=128x128")],
        "affiliateUrl": "",
        "imageFlag": 1,
        "availability": u8::from(p.in_stock),
        "taxFlag": 0,
        "postageFlag": 0,
        "creditCardFlag": 1,
        "reviewCount": p.review_count,
        "reviewAverage": f64::from(p.review_tenths) / 10.0,
        "pointRate": 1,
        "shopName": p.seller,
        "shopCode": shop_code,
        "genreId": "100227",
        "tagIds": [],
    });
    if mode == ShopMode::RenamedPrice
        && let Some(fields) = item.as_object_mut()
        && let Some(price) = fields.remove("itemPrice")
    {
        fields.insert("price".to_string(), price);
    }
    item
}

fn yahoo_hit(p: &CatalogueProduct, index: usize, base: &str, mode: ShopMode) -> Value {
    let mut hit = json!({
        "index": index,
        "name": p.name,
        "description": format!("{} の説明", p.name),
        "headLine": "",
        "inStock": p.in_stock,
        "url": format!("{base}/store/{}", p.code.replace(':', "/")),
        "code": p.code.replace(':', "_"),
        "condition": "new",
        "imageId": p.code,
        "image": {
            "small": format!("{base}/i/{}_s.jpg", p.code.replace(':', "_")),
            "medium": format!("{base}/i/{}_m.jpg", p.code.replace(':', "_")),
        },
        "review": {"rate": f64::from(p.review_tenths) / 10.0, "count": p.review_count,
                   "url": format!("{base}/review/{}", p.code)},
        "affiliateRate": 1.0,
        "price": price_value(p.price, mode),
        "premiumPrice": p.price,
        "premiumPriceStatus": false,
        "priceLabel": {"taxable": true, "defaultPrice": p.price},
        "point": {"amount": p.price / 100, "times": 1},
        "shipping": {"code": 1, "name": "設定無し"},
        "seller": {"sellerId": p.seller, "name": p.seller, "url": format!("{base}/store/{}", p.seller),
                   "isBestSeller": false, "review": {"rate": 4.2, "count": 100}},
    });
    if mode == ShopMode::RenamedPrice
        && let Some(fields) = hit.as_object_mut()
        && let Some(price) = fields.remove("price")
    {
        fields.insert("itemPrice".to_string(), price);
    }
    hit
}

fn maintenance(api: ShopApi) -> Answer {
    match api {
        ShopApi::Rakuten => error(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "IchibaItem/Search is under maintenance",
        ),
        ShopApi::Yahoo => error(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "",
            "Service Unavailable. The service is temporarily under maintenance.",
        ),
    }
}

fn error(api: ShopApi, status: StatusCode, code: &str, description: &str) -> Answer {
    let body = match api {
        ShopApi::Rakuten => json!({"error": code, "error_description": description}),
        ShopApi::Yahoo => json!({"Error": {"Message": description}}),
    };
    json_answer(status, &body)
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    answer
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
