//! The kiosk web app at `/`: plain HTML, CSS and ES modules from `node/kiosk/`, embedded in the
//! binary with `include_bytes!` so a store needs nothing but the binary (no CDN, no files beside
//! it, no build step: see docs/decisions.md, "The kiosk app").
//!
//! The app talks only to the public REST API, like any other client. Its pages are sent with a
//! Content-Security-Policy that allows this origin alone, so a stray external URL fails loudly in
//! the browser tests instead of silently needing the internet at a store.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Problem;

/// One embedded file: its name under `/kiosk/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $media:expr) => {
        Asset {
            name: $name,
            media_type: $media,
            body: include_bytes!(concat!("../../kiosk/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("i18n.js", JS),
    asset!("shop.js", JS),
    asset!("staff.js", JS),
    asset!("ui.js", JS),
];

/// Only this origin: the app must work with no internet at all.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Stateless: served the same whatever the state (generic so tests need no database).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/kiosk/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

/// Total size of the embedded app (what the first screen loads, at most).
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((asset, etag)) = ASSETS.iter().zip(etags()).find(|(a, _)| a.name == name) else {
        return Problem::new(StatusCode::NOT_FOUND, "not-found", "no such file").into_response();
    };
    // `no-cache`: the browser revalidates (a cheap 304) so an upgraded node's app is picked up
    // on the next load, while a page already open keeps working across the node's restart.
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.media_type),
        )],
        asset.body,
    )
        .into_response()
}

/// A strong ETag per asset (FNV-1a of its bytes), computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header")
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_app_is_served_from_the_binary_with_its_policy_and_etag() {
        let index = get("/", None).await;
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            index.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let etag = index.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get("/", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        let js = get("/kiosk/app.js", None).await;
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(js.headers()[header::CONTENT_TYPE], JS);
        assert_ne!(js.headers()[header::ETAG].to_str().unwrap(), etag);

        for missing in ["/kiosk/nope.js", "/kiosk/..%2fCargo.toml", "/kiosk/"] {
            let r = get(missing, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
        }
    }

    #[test]
    fn the_app_is_small_and_names_no_other_origin() {
        // The budget for the first screen is 400 KiB; the whole app is less.
        assert!(total_bytes() < 400 * 1024, "{} bytes", total_bytes());
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for scheme in ["http://", "https://", "//fonts.", "//cdn"] {
                assert!(
                    !text.contains(scheme),
                    "{} refers to another origin ({scheme})",
                    asset.name
                );
            }
        }
    }
}
