//! The `Visits` Durable Object: the widget's pool of parametric QR codes, each visit's state
//! (waiting → scanned / followed), the per-IP rate limit and the conversion funnel. One object,
//! strongly consistent: a callback arriving at one edge location is seen at once by a visitor
//! polling from another. What it does is `wxedge_core::flows::visit` (tested natively); this
//! class gives it storage, WeChat's `qrcode/create` and randomness.

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::Credentials;
use wxedge_core::flows::visit::{QrMaker, VisitsObject};
use wxedge_core::visits::{ScanAnswer, VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::platform::{client, do_answer, do_request, load_config, DoStore, Edge, EdgeLog, WebCrypto};

pub const BINDING: &str = "VISITS";

#[durable_object]
pub struct Visits {
    state: State,
    env: Env,
    object: VisitsObject<WebCrypto>,
}

impl DurableObject for Visits {
    fn new(state: State, env: Env) -> Self {
        Visits { state, env, object: VisitsObject::new(WebCrypto) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: VisitsRequest = match crate::platform::json_body(&mut req).await {
            Ok(r) => r,
            // The two sides of the protocol disagree (a deploy in progress): ours, retryable.
            Err(e) => return do_answer::<()>(Err(wxedge_core::Error::Storage(format!("request not understood: {e}")))),
        };
        let storage = self.state.storage();
        do_answer(self.object.handle(&DoStore(&storage), &WeChatQr(&self.env), &EdgeLog, request).await)
    }
}

/// Temporary codes from WeChat's `qrcode/create`.
struct WeChatQr<'a>(&'a Env);

impl QrMaker for WeChatQr<'_> {
    async fn create(&self, scene: &str, lifetime_secs: u32) -> wxedge_core::Result<String> {
        let config = load_config(self.0)?;
        let credentials = Credentials::from_config(&config);
        let edge = Edge { env: self.0 };
        let request = QrRequest::temporary(Scene::Str(scene.to_owned()), lifetime_secs)?;
        Ok(client(&edge, &credentials, 8_000).create_qr(&request).await?.url)
    }
}

/// Asks the visits object (one, named "widget").
pub async fn call(env: &Env, request: &VisitsRequest) -> wxedge_core::Result<VisitsResponse> {
    do_request(env, BINDING, "widget", request).await
}

/// The callback's question: whose visit was code `idx`?
pub async fn scan(env: &Env, idx: u32, follow: bool, now: u64) -> wxedge_core::Result<Option<ScanAnswer>> {
    match call(env, &VisitsRequest::Scan { idx, follow, now }).await? {
        VisitsResponse::Scanned { visit } => Ok(visit),
        other => Err(Error::Storage(format!("visits answered {} to a scan", other.name()))),
    }
}
