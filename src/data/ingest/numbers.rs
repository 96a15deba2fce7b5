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

/// Decimals of at most this many digits are read by [`short_decimal`].
const SHORT_DIGITS: usize = 15;

/// Powers of ten that are exact in f64, up to [`SHORT_DIGITS`].
const POW10: [f64; SHORT_DIGITS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A plain decimal (`173.07`, `-5`, `811`: an optional `-`, digits, optionally a `.` and
/// more digits) of at most 15 digits, read from its bytes without the general parser; `None`
/// for anything else, which `str::parse` then reads. The digits make an integer `m < 10^15`,
/// exact in f64 as is `10^f`, so `m / 10^f` is one correctly rounded division: the very
/// f64 `str::parse` gives (Clinger's fast path). Most cells of market data are this.
pub(super) fn short_decimal(b: &[u8]) -> Option<f64> {
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > SHORT_DIGITS + 1 {
        return None;
    }
    let (mut m, mut count, mut frac) = (0u64, 0usize, None::<usize>);
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                count += 1;
            }
            // One point, with digits on both sides (`5.` and `.5` go to the general parser).
            b'.' if frac.is_none() && i > 0 && i + 1 < digits.len() => frac = Some(i),
            _ => return None,
        }
    }
    if count > SHORT_DIGITS {
        return None;
    }
    let f = frac.map_or(0, |i| digits.len() - 1 - i);
    let v = m as f64 / POW10[f];
    Some(if negative { -v } else { v })
}

/// A price or volume as written in a CSV cell.
pub(super) fn parse_number(s: &str, format: &NumberFormat) -> Result<f64, String> {
    if s.is_empty() {
        return Err("empty value".to_string());
    }
    if *format == NumberFormat::PLAIN {
        if let Some(v) = short_decimal(s.as_bytes()) {
            return Ok(v);
        }
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
    fn short_decimals_are_the_general_parsers_bits() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "811",
            "100.0054",
            "99.9558",
            "007.50",
            "-5",
            "123456789012345",
            "0.00000000000001",
            "9.99999999999999",
            "1.7976931348623",
            "0.1",
            "0.2",
            "0.3",
            "2.675",
            "1.005",
            "-99999.99999",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every digit count and point position, with digits that round every way.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 15) as usize;
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + ((x >> (4 + 3 * i)) % 10) as u8))
                .collect();
            let point = (x >> 60) as usize % (len + 1);
            let mut s = digits.clone();
            if point > 0 && point < len {
                s.insert(point, '.');
            }
            if x & 1 == 1 {
                s.insert(0, '-');
            }
            cases.push(s);
        }
        for s in &cases {
            let want: f64 = s.parse().unwrap();
            let got = short_decimal(s.as_bytes()).unwrap_or_else(|| panic!("{s} not short"));
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
        }
        for s in [
            "",
            "-",
            ".5",
            "5.",
            "1e5",
            "+1",
            "1.2.3",
            "nan",
            "inf",
            " 1",
            "1,5",
            "--1",
            "1234567890123456",
            "0.1234567890123456",
            "-.5",
        ] {
            assert_eq!(short_decimal(s.as_bytes()), None, "{s}");
        }
    }

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
