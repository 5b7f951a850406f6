//! Serving the built web client: files from the web root, and `index.html`
//! for every other page path so the client's router handles it.

use std::path::Path;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

use crate::app::AppState;

pub(crate) fn router(web_root: Option<&Path>) -> Router<AppState> {
    match web_root {
        Some(root) => {
            let index = ServeFile::new(root.join("index.html"));
            Router::new().fallback_service(ServeDir::new(root).fallback(index))
        }
        None => Router::new(),
    }
}
