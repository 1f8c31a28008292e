//! The baseline `bench/api.sh` measures esm against: a bare axum server that answers
//! `GET /v2/catalog` with fixed bytes from memory and `PUT /v2/service_instances/{id}`
//! with `201 {}` after reading the body. Whatever esm costs beyond these two handlers
//! is esm's own work (routing layers, auth and version checks, the store, the broker).
//!
//! `cargo run --release --example catalog_baseline -- PORT CATALOG_FILE`

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::{get, put};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(18081);
    let catalog = Bytes::from(std::fs::read(args.next().unwrap_or_else(|| "catalog.json".into()))?);
    let app = Router::new()
        .route("/v2/catalog", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], catalog) }))
        .route(
            "/v2/service_instances/{id}",
            put(|_body: Bytes| async { (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], "{}") }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
