//! Prices and volumes as written in CSV cells: plain (`173.07`, what most files hold), or
//! in a file's own spelling (`$173.07`, `1.234,56`, `80.44M`) when its layout or
//! `data.format` says so.

use super::shorten;

/// How one file writes its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NumberFormat {
    /// `b'.'` or `b','`.
    pub decimal: u8,
    /// Between groups of three digits, checked as such (`1,234.5` but not `12,34.5`).
    pub thousands: Option<char>,
    /// Dropped before or after the number (`$173.07`, `-$5`, `12,50 €`).
    pub currency: Option<String>,
    /// `K`, `M`, `B`, `T` after a number multiply it (Investing.com's `80.44M` volumes).
    pub suffixes: bool,
}

impl NumberFormat {
    pub const PLAIN: NumberFormat = NumberFormat {
        decimal: b'.',
        thousands: None,
        currency: None,
        suffixes: false,
    };
}

/// A price or volume as written in a CSV cell.
pub(super) fn parse_number(s: &str, format: &NumberFormat) -> Result<f64, String> {
    if s.is_empty() {
        return Err("empty value".to_string());
    }
    if *format == NumberFormat::PLAIN {
        return s.parse::<f64>().map_err(|_| cannot_parse(s, format));
    }
    spelled(s, format).ok_or_else(|| cannot_parse(s, format))
}

/// `s` in `format`'s spelling, rewritten as a plain number and parsed.
fn spelled(s: &str, format: &NumberFormat) -> Option<f64> {
    let mut t = s.trim();
    let mut negative = false;
    if let Some(rest) = t.strip_prefix('-') {
        negative = true;
        t = rest.trim_start();
    }
    if let Some(c) = &format.currency {
        t = t
            .strip_prefix(c.as_str())
            .or_else(|| t.strip_suffix(c.as_str()))
            .unwrap_or(t)
            .trim();
        if !negative && let Some(rest) = t.strip_prefix('-') {
            negative = true;
            t = rest.trim_start();
        }
    }
    let mut shift = 0usize;
    if format.suffixes
        && let Some(last) = t.chars().last()
    {
        shift = match last.to_ascii_uppercase() {
            'K' => 3,
            'M' => 6,
            'B' => 9,
            'T' => 12,
            _ => 0,
        };
        if shift > 0 {
            t = &t[..t.len() - 1];
        }
    }
    // Integer and fraction digits, in plain spelling.
    let (int_part, frac_part) = match t.rfind(char::from(format.decimal)) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let int_digits = ungroup(int_part, format.thousands)?;
    if !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (int_digits.is_empty() && frac_part.is_empty())
    {
        return None;
    }
    // A suffix moves the decimal point in the text, so `80.44M` is exactly 80440000.
    let mut digits = int_digits;
    let mut frac = frac_part.to_string();
    for _ in 0..shift {
        if frac.is_empty() {
            digits.push('0');
        } else {
            digits.push(frac.remove(0));
        }
    }
    let plain = format!(
        "{}{}{}{frac}",
        if negative { "-" } else { "" },
        if digits.is_empty() { "0" } else { &digits },
        if frac.is_empty() { "" } else { "." }
    );
    plain.parse::<f64>().ok()
}

/// The digits of an integer part written with `thousands` between groups of three, or
/// `None` when it is not such a number.
fn ungroup(int_part: &str, thousands: Option<char>) -> Option<String> {
    let Some(sep) = thousands.filter(|&c| int_part.contains(c)) else {
        return int_part
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| int_part.to_string());
    };
    let groups: Vec<&str> = int_part.split(sep).collect();
    let first_ok = groups
        .first()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    let rest_ok = groups[1..]
        .iter()
        .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()));
    (first_ok && rest_ok).then(|| groups.concat())
}

/// The message for a number that does not parse, with the setting that would read it.
fn cannot_parse(s: &str, format: &NumberFormat) -> String {
    let currency = ['$', '€', '£', '¥'];
    let advice = if format.currency.is_none() && (s.starts_with(currency) || s.ends_with(currency))
    {
        let symbol: String = s.chars().filter(|c| currency.contains(c)).take(1).collect();
        format!(
            ": remove the currency symbol, or set `data.format.currency: \"{symbol}\"` to read \
             prices written so"
        )
    } else if format.decimal == b'.' && s.contains(',') && s.bytes().any(|b| b.is_ascii_digit()) {
        if ungroup(s.split('.').next().unwrap_or(s), Some(',')).is_some() && s.contains('.') {
            ": remove the thousands separator (write 1234.50, not 1,234.50) and use a decimal \
             point, or set `data.format.thousands: \",\"`"
                .to_string()
        } else if !s.contains('.') && s.matches(',').count() == 1 {
            ": a decimal comma? set `data.format.decimal: \",\"` (or write 1234.50 with a \
             decimal point)"
                .to_string()
        } else {
            ": remove the thousands separator (write 1234.50, not 1,234.50) and use a decimal \
             point, or set `data.format.thousands: \",\"`"
                .to_string()
        }
    } else if format.decimal == b',' && s.contains('.') {
        ": this file's numbers are read with a decimal comma (its numbers have commas) and \
         a dot only between groups of three digits; set `data.format.decimal` and \
         `data.format.thousands` to say how it writes them"
            .to_string()
    } else {
        String::new()
    };
    format!("cannot parse '{}' as a number{advice}", shorten(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let nasdaq = NumberFormat {
            currency: Some("$".into()),
            thousands: Some(','),
            ..NumberFormat::PLAIN
        };
        assert_eq!(parse_number("$173.07", &nasdaq), Ok(173.07));
        assert_eq!(parse_number("-$5", &nasdaq), Ok(-5.0));
        assert_eq!(parse_number("$1,234.5", &nasdaq), Ok(1234.5));
        assert!(parse_number("$12,34.5", &nasdaq).is_err());
        let investing = NumberFormat {
            suffixes: true,
            thousands: Some(','),
            ..NumberFormat::PLAIN
        };
        assert_eq!(parse_number("80.44M", &investing), Ok(80_440_000.0));
        assert_eq!(parse_number("1.5K", &investing), Ok(1500.0));
        assert_eq!(parse_number("0.123456789B", &investing), Ok(123_456_789.0));
        assert_eq!(parse_number("1.2345678K", &investing), Ok(1234.5678));
        let european = NumberFormat {
            decimal: b',',
            thousands: Some('.'),
            ..NumberFormat::PLAIN
        };
        assert_eq!(parse_number("1.234,56", &european), Ok(1234.56));
        assert_eq!(parse_number("12,5", &european), Ok(12.5));
        let m = parse_number("1.5", &european).unwrap_err();
        assert!(m.contains("decimal comma"), "{m}");
        assert!(parse_number("abc", &european).is_err());
        assert!(parse_number("", &european).is_err());
        let m = parse_number("12,5", &NumberFormat::PLAIN).unwrap_err();
        assert!(m.contains("data.format.decimal"), "{m}");
        let m = parse_number("$10", &NumberFormat::PLAIN).unwrap_err();
        assert!(
            m.starts_with("cannot parse '$10' as a number: remove the currency symbol"),
            "{m}"
        );
    }
}
