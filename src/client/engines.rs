//! The engines (`/v2/et/engines`): list, show, declare, remove, cordon, uncordon and
//! drain them.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Client, ClientError, MAX_ANSWER_BYTES, NO_QUERY};
use crate::domain::engine::EngineSpec;
use crate::domain::path::segment;
#[cfg(doc)]
use crate::wire::{EngineList, EngineView};

impl Client {
    /// `GET /v2/et/engines`: an [`EngineList`] (or a `Value`).
    pub async fn engines<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        self.list("/v2/et/engines", &[]).await
    }

    /// `GET /v2/et/engines/{name}`: an [`EngineView`] (or a `Value`).
    pub async fn engine<T: DeserializeOwned>(&self, name: &str) -> Result<T, ClientError> {
        self.get(&engine_path(name), &[]).await
    }

    /// `PUT /v2/et/engines/{name}`: declares the engine, or changes its declaration;
    /// the engine, an [`EngineView`] (or a `Value`).
    pub async fn set_engine<T: DeserializeOwned>(&self, name: &str, spec: &EngineSpec) -> Result<T, ClientError> {
        Ok(self.call(Method::PUT, &engine_path(name), NO_QUERY, Some(spec), MAX_ANSWER_BYTES).await?.body)
    }

    /// `DELETE /v2/et/engines/{name}`: removes a cordoned or draining engine that holds
    /// nothing.
    pub async fn delete_engine(&self, name: &str) -> Result<(), ClientError> {
        self.call::<Value>(Method::DELETE, &engine_path(name), NO_QUERY, None::<&()>, MAX_ANSWER_BYTES)
            .await
            .map(|_| ())
    }

    /// `POST /v2/et/engines/{name}/cordon`: no new placements on it; the engine, an
    /// [`EngineView`] (or a `Value`).
    pub async fn cordon_engine<T: DeserializeOwned>(&self, name: &str) -> Result<T, ClientError> {
        self.engine_action(name, "cordon").await
    }

    /// `POST /v2/et/engines/{name}/uncordon`: placements again (and `needs_repair`
    /// cleared); the engine, an [`EngineView`] (or a `Value`).
    pub async fn uncordon_engine<T: DeserializeOwned>(&self, name: &str) -> Result<T, ClientError> {
        self.engine_action(name, "uncordon").await
    }

    /// `POST /v2/et/engines/{name}/drain`: no new placements, and what may move is to be
    /// moved; the engine, an [`EngineView`] (or a `Value`).
    pub async fn drain_engine<T: DeserializeOwned>(&self, name: &str) -> Result<T, ClientError> {
        self.engine_action(name, "drain").await
    }

    /// `POST /v2/et/engines/{name}/{action}`.
    async fn engine_action<T: DeserializeOwned>(&self, name: &str, action: &str) -> Result<T, ClientError> {
        let path = format!("{}/{action}", engine_path(name));
        Ok(self.call(Method::POST, &path, NO_QUERY, None::<&()>, MAX_ANSWER_BYTES).await?.body)
    }
}

fn engine_path(name: &str) -> String {
    format!("/v2/et/engines/{}", segment(name))
}
