//! JSON request bodies, held to what the OpenAPI document says of them: a JSON object, sent as
//! `application/json`, of at most 16 KiB.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::error::{json_error, ApiError, ErrorCode};

/// A JSON body that must be an object. serde's derived structs also take a JSON array of the
/// fields in order (`["a@example.com", "secret"]`), which no schema of this API allows, so the
/// body is read as an object first and then as the endpoint's type.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The object-only reading of a body, for `serde_json`.
struct ObjectOnly<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        T::deserialize(serde_json::Value::Object(object)).map(ObjectOnly).map_err(D::Error::custom)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<ObjectOnly<T>>::from_request(request, payload);
        Box::pin(async move { json.await.map(|json| JsonObject(json.into_inner().0)) })
    }
}

/// The JSON body of an endpoint that authorises its caller first. actix-web runs a handler's
/// extractors together and answers the first failure that comes in, so a plain extractor next
/// to the caller could refuse a bad body before the caller: an API key on a JWT-only endpoint
/// must learn `jwt_required` whatever it sent. The handler takes this instead and opens it
/// with `?` once the caller is known.
pub(crate) type JsonAfterCaller<T> = Result<JsonObject<T>, actix_web::Error>;

/// A JSON object body read from bytes, held to the same rules as [`JsonObject`] (content type,
/// syntax, an object), for the endpoints whose body is optional.
pub(crate) fn json_object<T: DeserializeOwned>(request: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let json = request
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.subtype() == "json" || mime.suffix().is_some_and(|suffix| suffix == "json"));
    if !json {
        return Err(ApiError::from(ErrorCode::UnsupportedMediaType));
    }
    any_object(body)
}

/// The optional JSON object body of `body`: none, or a JSON `null` (which an OpenAPI client
/// sends for a body the document calls optional), gives `T::default()`; anything else is held
/// to [`json_object`]'s rules.
pub(crate) fn optional_json_object<T: DeserializeOwned + Default>(
    request: &HttpRequest,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.is_empty() || body == b"null" {
        return Ok(T::default());
    }
    json_object(request, body)
}

/// A JSON object read from bytes whatever the `Content-Type`, for logout, which has always
/// read its optional body so.
pub(crate) fn any_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<ObjectOnly<T>>(body)
        .map(|object| object.0)
        .map_err(|error| json_error(actix_web::error::JsonPayloadError::Deserialize(error)))
}
