//! Cache housekeeping: `hft gc`, `hft cache verify`, `hft cache stats`.
