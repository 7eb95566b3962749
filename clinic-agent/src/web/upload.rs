//! Files a browser uploads (studies on the import page, a letter on the new-case form),
//! streamed to temporary files that are removed when done.

use std::collections::HashMap;

use axum::extract::Multipart;
use axum::http::StatusCode;
use axum::response::Response;
use daemon::web::{error_page, Session};

/// A file received from the browser, in a temporary file removed when this is dropped.
pub(super) struct Upload {
    pub(super) name: String,
    pub(super) media_type: Option<String>,
    pub(super) path: std::path::PathBuf,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a multipart form: text fields into a map, files streamed to temporary files, so a
/// CD's worth of studies never sits in memory. The CSRF token must come before any file.
pub(super) async fn read_multipart(
    mut form: Multipart,
    session: &Session,
) -> Result<(HashMap<String, Vec<String>>, Vec<Upload>), Response> {
    use tokio::io::AsyncWriteExt;
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    let mut uploads = Vec::new();
    let mut checked = false;
    let bad = |e: axum::extract::multipart::MultipartError| {
        error_page(session.lang, StatusCode::BAD_REQUEST, &e.body_text())
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        match field.file_name().map(str::to_owned) {
            Some(file_name) if !file_name.is_empty() => {
                if !checked {
                    return Err(error_page(
                        session.lang,
                        StatusCode::FORBIDDEN,
                        session.t("err.csrf"),
                    ));
                }
                let mut random = [0u8; 8];
                let _ = getrandom::getrandom(&mut random);
                let upload = Upload {
                    name: file_name,
                    media_type: field.content_type().map(str::to_owned),
                    path: std::env::temp_dir().join(format!(
                        "tpg-upload-{}",
                        random
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    )),
                };
                let io = |e: std::io::Error| {
                    error_page(
                        session.lang,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &e.to_string(),
                    )
                };
                let mut file = tokio::fs::File::create(&upload.path).await.map_err(io)?;
                uploads.push(upload);
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    file.write_all(&chunk).await.map_err(io)?;
                }
                file.flush().await.map_err(io)?;
            }
            Some(_) => {} // an empty file input
            None => {
                let value = field.text().await.map_err(bad)?;
                if name == "csrf" {
                    session.check_csrf(Some(&value))?;
                    checked = true;
                }
                fields.entry(name).or_default().push(value);
            }
        }
    }
    if !checked {
        session.check_csrf(None)?;
    }
    Ok((fields, uploads))
}
