//! The guard as a tower layer, for axum and other tower services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};

use crate::{Caller, Guard, Refusal};

/// Authenticates every request before the service it wraps sees it, and puts the [`Caller`]
/// in the request's extensions (axum: `Extension<Caller>`). A refused request gets flexauth's
/// answer (status, `WWW-Authenticate`, error envelope) and never reaches the service. Layers
/// nest: an inner layer finds the caller an outer one authenticated and only checks its own
/// scopes.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    guard: Guard,
    scopes: Arc<[String]>,
}

impl GuardLayer {
    /// Any caller that authenticates passes.
    pub fn new(guard: Guard) -> Self {
        Self { guard, scopes: Arc::new([]) }
    }

    /// Only a caller that holds every scope of `scopes` passes; others get `403
    /// insufficient_scope`.
    pub fn requiring<S: Into<String>>(guard: Guard, scopes: impl IntoIterator<Item = S>) -> Self {
        Self { guard, scopes: scopes.into_iter().map(Into::into).collect() }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService { inner, guard: self.guard.clone(), scopes: self.scopes.clone() }
    }
}

/// The service [`GuardLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
    scopes: Arc<[String]>,
}

impl<S, RequestBody, ResponseBody> tower_service::Service<Request<RequestBody>> for GuardService<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: From<String>,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        // The service that was polled ready goes into the future; its clone stays for the next
        // call (tower's usual swap).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (guard, scopes) = (self.guard.clone(), self.scopes.clone());
        Box::pin(async move {
            let caller = match request.extensions().get::<Caller>() {
                Some(caller) => Ok(caller.clone()),
                None => {
                    let authorization =
                        request.headers().get(http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
                    guard.authenticate_header(authorization).await
                }
            };
            let caller =
                caller.and_then(|caller| caller.require(scopes.iter().map(String::as_str)).map(|_| caller.clone()));
            match caller {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(refusal) => Ok(answer(&refusal)),
            }
        })
    }
}

/// flexauth's answer for `refusal`.
fn answer<B: From<String>>(refusal: &Refusal) -> Response<B> {
    let mut response = Response::new(B::from(refusal.body()));
    *response.status_mut() = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = refusal.challenge().and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    response
}
