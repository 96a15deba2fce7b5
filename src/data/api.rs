//! TEMPORARY integration shim (replaced by the api branch on merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Alpaca,
    Stooq,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub provider: Provider,
    pub base_url: String,
    pub symbol: String,
    pub start: Option<chrono::NaiveDate>,
    pub end: Option<chrono::NaiveDate>,
    pub interval: String,
    pub timeout: std::time::Duration,
    pub retries: u32,
    pub backoff: std::time::Duration,
}
pub struct Snapshot {
    pub csv: Vec<u8>,
    pub rows: usize,
    pub pages: usize,
    pub url: String,
}
pub fn fetch(_req: &ApiRequest, _env: &dyn Fn(&str) -> Option<String>) -> Result<Snapshot, String> {
    Err("shim".into())
}
